/*
 * edu: driver for QEMU's educational PCI device (1234:11e8), register map from
 * QEMU docs/specs/edu.rst: ID, liveness, factorial (polled and with an
 * interrupt) and INTx raise/ack through the 8259. DMA is not exercised.
 */
#include "rt.h"

#define EDU_VENDOR 0x1234
#define EDU_DEVICE 0x11e8

#define EDU_ID        0x00
#define EDU_LIVENESS  0x04
#define EDU_FACTORIAL 0x08
#define EDU_STATUS    0x20
#define EDU_ST_COMPUTING 0x01
#define EDU_ST_IRQFACT   0x80
#define EDU_IRQ_STATUS 0x24
#define EDU_IRQ_RAISE  0x60
#define EDU_IRQ_ACK    0x64

#define HZ 100

static uint64_t mmio;
static unsigned irq;
static volatile uint32_t irq_count, last_status, ticks;

static uint32_t rd(uint32_t off) { return mmio_read32(mmio + off); }
static void wr(uint32_t off, uint32_t v) { mmio_write32(mmio + off, v); }

static void edu_irq(struct int_frame *f)
{
    (void)f;
    uint32_t st = rd(EDU_IRQ_STATUS);
    wr(EDU_IRQ_ACK, st);
    last_status = st;
    irq_count++;
    pic_eoi(irq);
}

static void tick(struct int_frame *f)
{
    (void)f;
    ticks++;
    pic_eoi(0);
}

/* Idle until irq_count reaches `want` or `timeout_ticks` PIT ticks pass. */
static bool wait_irqs(uint32_t want, uint32_t timeout_ticks)
{
    uint32_t t0 = ticks;
    while (irq_count < want && ticks - t0 < timeout_ticks)
        wait_irq();
    return irq_count >= want;
}

static void idle_ticks(uint32_t n)
{
    uint32_t t0 = ticks;
    while (ticks - t0 < n)
        wait_irq();
}

static uint32_t factorial(uint32_t n)
{
    uint32_t r = 1;
    while (n > 1)
        r *= n--;
    return r;
}

int main(void)
{
    cli();
    struct pci_dev d;
    if (!pci_find(EDU_VENDOR, EDU_DEVICE, &d))
        fail(3, "edu device %04x:%04x not found\n", EDU_VENDOR, EDU_DEVICE);
    printf("edu: found at %02x:%02x.%u irq %u pin %u\n", d.bus, d.dev, d.fn, d.irq_line,
           d.irq_pin);

    struct pci_bar bar;
    pci_bar(&d, 0, &bar);
    if (bar.type != PCI_BAR_MEM32 && bar.type != PCI_BAR_MEM64)
        fail(4, "edu BAR0 is not a memory BAR\n");
    if (!bar.addr || bar.addr + bar.size > 0x100000000ull)
        fail(4, "edu BAR0 unassigned or above 4 GiB (0x%lx)\n", bar.addr);
    mmio = bar.addr;
    printf("edu: bar0 0x%lx size 0x%lx\n", bar.addr, bar.size);
    pci_enable(&d, PCI_CMD_MEM | PCI_CMD_MASTER);

    /* identification: 0xRRrr00ed */
    uint32_t id = rd(EDU_ID);
    if ((id & 0xFFFF) != 0x00ED)
        fail(5, "edu id 0x%08x: low half is not 0x00ed\n", id);
    printf("edu: id 0x%08x version %u.%u\n", id, id >> 24, (id >> 16) & 0xFF);

    /* liveness: reads back ~x */
    static const uint32_t probes[] = {0x12345678, 0, 0xA5A5A5A5};
    for (unsigned i = 0; i < sizeof probes / sizeof probes[0]; i++) {
        wr(EDU_LIVENESS, probes[i]);
        uint32_t v = rd(EDU_LIVENESS);
        if (v != ~probes[i])
            fail(6, "edu liveness: wrote 0x%08x read 0x%08x\n", probes[i], v);
    }
    printf("edu: liveness ok\n");

    /* factorial, polled */
    wr(EDU_STATUS, 0);
    wr(EDU_FACTORIAL, 10);
    uint32_t spins = 0;
    while (rd(EDU_STATUS) & EDU_ST_COMPUTING)
        if (++spins > 1000000)
            fail(7, "edu factorial: still computing\n");
    uint32_t f = rd(EDU_FACTORIAL);
    if (f != factorial(10))
        fail(7, "edu factorial(10) = %u, expected %u\n", f, factorial(10));
    printf("edu: factorial(10) = %u (polled)\n", f);

    /* interrupts: INTx through the 8259, PIT as a watchdog */
    irq = d.irq_line;
    if (d.irq_pin == 0 || irq == 0 || irq == 2 || irq >= 16)
        fail(8, "edu has no usable INTx line (line %u pin %u)\n", irq, d.irq_pin);
    pic_init();
    set_int_handler(PIC_VECTOR(0), tick);
    set_int_handler((uint8_t)PIC_VECTOR(irq), edu_irq);
    pit_init_periodic(HZ);
    pic_unmask(0);
    pic_unmask(irq);
    if (rd(EDU_IRQ_STATUS) != 0)
        fail(9, "edu irq status not clear at start: 0x%x\n", rd(EDU_IRQ_STATUS));

    static const uint32_t values[] = {0x1234, 0x5678, 0x9abc};
    for (unsigned i = 0; i < 3; i++) {
        wr(EDU_IRQ_RAISE, values[i]);
        if (!wait_irqs(i + 1, HZ))
            fail(9, "edu raise 0x%x: no interrupt within 1 s\n", values[i]);
        if (last_status != values[i])
            fail(9, "edu raise 0x%x: handler saw status 0x%x\n", values[i], last_status);
        idle_ticks(5); /* a stuck line would storm here */
        if (irq_count != i + 1)
            fail(10, "edu raise 0x%x: %u handler calls, expected %u\n", values[i], irq_count,
                 i + 1);
        uint32_t st = rd(EDU_IRQ_STATUS);
        if (st != 0)
            fail(10, "edu raise 0x%x: status 0x%x after ack\n", values[i], st);
        printf("edu: irq %u: raise 0x%x -> status 0x%x, acked, calls %u\n", irq, values[i],
               last_status, irq_count);
    }

    /* factorial with completion interrupt (status 0x1) */
    wr(EDU_STATUS, EDU_ST_IRQFACT);
    wr(EDU_FACTORIAL, 5);
    if (!wait_irqs(4, HZ))
        fail(11, "edu factorial interrupt did not arrive\n");
    if (last_status != 0x1)
        fail(11, "edu factorial interrupt status 0x%x, expected 0x1\n", last_status);
    f = rd(EDU_FACTORIAL);
    if (f != factorial(5))
        fail(11, "edu factorial(5) = %u\n", f);
    idle_ticks(5);
    if (irq_count != 4)
        fail(11, "edu factorial interrupt: %u handler calls, expected 4\n", irq_count);
    wr(EDU_STATUS, 0);
    printf("edu: factorial(5) = %u (interrupt, status 0x%x)\n", f, last_status);

    pic_mask(irq);
    pic_mask(0);
    pit_stop();
    printf("edu: ok\n");
    return 0;
}
