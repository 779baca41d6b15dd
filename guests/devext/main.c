/*
 * devext: drives the PCI extensions probe device (1234:11e2, the test fixture
 * Tests/HVPluginHostTests/Fixtures/pci_ext_probe.c; it has no QEMU twin, so under QEMU this
 * guest reports the device missing). Phases, chosen on the command line:
 *   rambar=1      write a pattern into the RAM BAR (BAR2); the device checks it through
 *                 its host pointer and the dirty query; then move the BAR
 *   doorbells=N   ring the MMIO doorbell N times from ring 3, each answered by the
 *                 device in the RAM BAR; then the I/O doorbell and a datamatch miss
 *   msix=1        MSI-X through the LAPIC: a doorbell-triggered vector, vector mask and
 *                 function mask with the pending bit delivered on unmask
 */
#include "rt.h"

#define PROBE_VENDOR 0x1234
#define PROBE_DEVICE 0x11e2
#define MSIX_VECTOR 0x50
#define HZ 100

static struct pci_dev dev;
static uint64_t regs, ram;
static uint16_t io;
static volatile uint32_t msix_count, ticks;

static uint64_t reg(uint32_t off) { return mmio_read64(regs + off); }
static void set_reg(uint32_t off, uint64_t v) { mmio_write64(regs + off, v); }

static void check_ram(uint64_t mask, uint64_t want_dirty, int want_count, uint8_t code)
{
    set_reg(0x10, mask);
    if (reg(0x10) != 1)
        fail(code, "devext: the device did not see the pattern for mask 0x%lx\n", mask);
    if (reg(0x18) != want_dirty || (int64_t)reg(0x20) != want_count)
        fail(code, "devext: dirty 0x%lx (%ld pages), expected 0x%lx (%d)\n", reg(0x18),
             (int64_t)reg(0x20), want_dirty, want_count);
    if (mmio_read32(ram + 0xF800) != (uint32_t)~mask)
        fail(code, "devext: the device's answer in the RAM BAR is 0x%x\n", mmio_read32(ram + 0xF800));
}

static void write_pattern(unsigned page) { mmio_write32(ram + page * 4096 + 0x10, 0xCAFE0000u | page); }

static void rambar(void)
{
    /* Sizing the BARs turned memory decoding off: the host counts every page dirty then. */
    check_ram(0, 0xFFFF, 16, 10);
    printf("devext: rambar dirty 0xffff after BAR sizing\n");
    write_pattern(0);
    write_pattern(3);
    write_pattern(9);
    check_ram(0x209, 0x209, 3, 10);
    printf("devext: rambar pattern seen by the device, dirty 0x209 (3 pages)\n");
    write_pattern(5);
    check_ram(0x20, 0x20, 1, 11);
    printf("devext: rambar dirty since the last query 0x20\n");

    uint64_t old = ram, moved = 0xE8000000ull;
    uint16_t cmd = pci_read16(0, dev.dev, 0, PCI_COMMAND);
    pci_write16(0, dev.dev, 0, PCI_COMMAND, cmd & ~PCI_CMD_MEM);
    pci_write32(0, dev.dev, 0, PCI_BAR0 + 8, (uint32_t)moved);
    pci_write16(0, dev.dev, 0, PCI_COMMAND, cmd);
    ram = moved;
    if (mmio_read32(ram + 3 * 4096 + 0x10) != 0xCAFE0003u)
        fail(12, "devext: after the move the RAM BAR reads 0x%x\n", mmio_read32(ram + 3 * 4096 + 0x10));
    if (mmio_read32(old + 0x10) != 0xFFFFFFFFu)
        fail(12, "devext: the old RAM BAR address still reads 0x%x\n", mmio_read32(old + 0x10));
    check_ram(0, 0xFFFF, 16, 13);
    printf("devext: rambar moved to 0x%lx, contents kept, dirty 0xffff after the move\n", ram);

    /* Over our own RAM: the host cannot map it there, and the guest only hurts itself. */
    pci_write16(0, dev.dev, 0, PCI_COMMAND, cmd & ~PCI_CMD_MEM);
    pci_write32(0, dev.dev, 0, PCI_BAR0 + 8, 0x2000000u);
    pci_write16(0, dev.dev, 0, PCI_COMMAND, cmd);
    mmio_write32(0x2000000u + 0x10, 0x12345678);
    pci_write16(0, dev.dev, 0, PCI_COMMAND, cmd & ~PCI_CMD_MEM);
    pci_write32(0, dev.dev, 0, PCI_BAR0 + 8, (uint32_t)moved);
    pci_write16(0, dev.dev, 0, PCI_COMMAND, cmd);
    if (mmio_read32(ram + 3 * 4096 + 0x10) != 0xCAFE0003u || mmio_read32(ram + 0x10) != 0xCAFE0000u)
        fail(14, "devext: the RAM BAR lost its contents after a stay over guest RAM\n");
    printf("devext: rambar placed over guest RAM and back, contents kept\n");
    printf("devext: rambar ok\n");
}

static uint64_t doorbell_count;

/* Ring 3: each request in the RAM BAR is answered there by the device's ring callback. */
static uint64_t ring_loop(void)
{
    volatile uint32_t *request = (volatile uint32_t *)(ram + 0xE000);
    volatile uint32_t *answer = (volatile uint32_t *)(ram + 0xE004);
    for (uint32_t i = 1; i <= doorbell_count; i++) {
        *request = i;
        mmio_write32(regs + 0x100, 0);
        for (uint64_t spins = 0; *answer != 2 * i + 1; spins++)
            if (spins > 2000000000ull)
                return i;
    }
    return 0;
}

static void doorbells(void)
{
    uint64_t stuck = run_user(ring_loop, user_stack_top);
    if (stuck)
        fail(20, "devext: doorbell %lu was not answered\n", stuck);
    if (reg(0x40) != doorbell_count)
        fail(20, "devext: the device counted %lu rings, expected %lu\n", reg(0x40), doorbell_count);
    printf("devext: %lu doorbells answered\n", doorbell_count);

    volatile uint32_t *pio_answer = (volatile uint32_t *)(ram + 0xE008);
    for (uint32_t i = 1; i <= 8; i++) {
        outw(io, 1);
        for (uint64_t spins = 0; *pio_answer != i; spins++)
            if (spins > 200000000ull)
                fail(21, "devext: I/O doorbell %u was not answered (0x%x)\n", i, *pio_answer);
    }
    printf("devext: 8 I/O doorbells answered\n");

    mmio_write32(regs + 0x108, 0x1234);
    if (reg(0x58) != 1 || reg(0x48) != 0)
        fail(22, "devext: a datamatch miss: %lu handler writes, %lu rings\n", reg(0x58), reg(0x48));
    printf("devext: a write of another value reached the register's handler\n");
}

static void on_msix(struct int_frame *f)
{
    (void)f;
    msix_count++;
    lapic_eoi();
}

static void tick(struct int_frame *f)
{
    (void)f;
    ticks++;
    pic_eoi(0);
}

static bool wait_msix(uint32_t want)
{
    uint32_t t0 = ticks;
    while (msix_count < want && ticks - t0 < HZ)
        wait_irq();
    return msix_count >= want;
}

static void idle_ticks(uint32_t n)
{
    uint32_t t0 = ticks;
    while (ticks - t0 < n)
        wait_irq();
}

static uint8_t find_capability(uint8_t id)
{
    uint8_t p = pci_read8(0, dev.dev, 0, 0x34);
    for (int hops = 0; p && hops < 48; hops++, p = pci_read8(0, dev.dev, 0, p + 1))
        if (pci_read8(0, dev.dev, 0, p) == id)
            return p;
    return 0;
}

static void msix(void)
{
    uint8_t cap = find_capability(0x11);
    if (!cap)
        fail(30, "devext: no MSI-X capability\n");
    uint32_t table = pci_read32(0, dev.dev, 0, cap + 4), pba = pci_read32(0, dev.dev, 0, cap + 8);
    unsigned vectors = (pci_read16(0, dev.dev, 0, cap + 2) & 0x7FF) + 1;
    if ((table & 7) != 0 || (pba & 7) != 0 || vectors != 8)
        fail(30, "devext: MSI-X table 0x%x PBA 0x%x vectors %u\n", table, pba, vectors);
    uint64_t entry = regs + (table & ~7u) + 16, pending = regs + (pba & ~7u);
    printf("devext: msix %u vectors, table 0x%x, pba 0x%x in bar0\n", vectors, table & ~7u, pba & ~7u);

    pic_init();
    lapic_enable();
    set_int_handler(PIC_VECTOR(0), tick);
    set_int_handler(MSIX_VECTOR, on_msix);
    pit_init_periodic(HZ);
    pic_unmask(0);

    mmio_write32(entry, (uint32_t)LAPIC_BASE);            /* destination APIC 0 */
    mmio_write32(entry + 4, 0);
    mmio_write32(entry + 8, MSIX_VECTOR);
    mmio_write32(entry + 12, 0);                          /* unmask */
    pci_write16(0, dev.dev, 0, cap + 2, 0x8000);           /* enable */

    mmio_write32(regs + 0x108, 0xD00D);                   /* doorbell B: the device sends vector 1 */
    if (!wait_msix(1) || reg(0x68) != 1)
        fail(31, "devext: doorbell B: %u interrupts, path %lu\n", msix_count, reg(0x68));
    printf("devext: doorbell rang, MSI-X vector 1 arrived as 0x%x\n", MSIX_VECTOR);

    mmio_write32(entry + 12, 1);                          /* mask vector 1 */
    set_reg(0x28, 1);
    idle_ticks(3);
    if ((int64_t)reg(0x28) != -11 || !(mmio_read64(pending) & 2) || msix_count != 1)
        fail(32, "devext: masked: notify %ld, pba 0x%lx, %u interrupts\n", (int64_t)reg(0x28),
             mmio_read64(pending), msix_count);
    mmio_write32(entry + 12, 0);
    if (!wait_msix(2) || (mmio_read64(pending) & 2))
        fail(32, "devext: unmask did not deliver the pending vector\n");
    printf("devext: masked vector pending, delivered on unmask\n");

    pci_write16(0, dev.dev, 0, cap + 2, 0xC000);           /* function mask */
    set_reg(0x28, 1);
    idle_ticks(3);
    if ((int64_t)reg(0x28) != -11 || msix_count != 2)
        fail(33, "devext: function mask: notify %ld, %u interrupts\n", (int64_t)reg(0x28), msix_count);
    pci_write16(0, dev.dev, 0, cap + 2, 0x8000);
    if (!wait_msix(3))
        fail(33, "devext: clearing the function mask did not deliver the pending vector\n");
    printf("devext: function mask held the vector, delivered when cleared\n");
    pic_mask(0);
    pit_stop();
    printf("devext: msix ok\n");
}

int main(void)
{
    cli();
    if (!pci_find(PROBE_VENDOR, PROBE_DEVICE, &dev))
        fail(3, "devext: probe device %04x:%04x not found\n", PROBE_VENDOR, PROBE_DEVICE);
    struct pci_bar b0, b1, b2;
    pci_bar(&dev, 0, &b0);
    pci_bar(&dev, 1, &b1);
    pci_bar(&dev, 2, &b2);
    if (b0.type != PCI_BAR_MEM32 || b1.type != PCI_BAR_IO || b2.type != PCI_BAR_MEM32 || b2.size != 0x10000)
        fail(4, "devext: unexpected BARs\n");
    regs = b0.addr;
    io = (uint16_t)b1.addr;
    ram = b2.addr;
    pci_enable(&dev, PCI_CMD_IO | PCI_CMD_MEM | PCI_CMD_MASTER);
    printf("devext: bar0 0x%lx bar1 0x%x bar2 0x%lx (ram, prefetchable %d)\n", regs, io, ram,
           b2.prefetchable);
    if (reg(0x00) != 7)
        fail(4, "devext: the device's declarations failed (status %lu)\n", reg(0x00));

    if (cmdline_u64("rambar", 1))
        rambar();
    doorbell_count = cmdline_u64("doorbells", 100);
    if (doorbell_count)
        doorbells();
    if (cmdline_u64("msix", 1))
        msix();
    printf("devext: ok\n");
    return 0;
}
