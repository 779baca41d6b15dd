/*
 * smp: a 2-CPU guest. The BSP finds the second logical CPU (CPUID.1 EBX[23:16]
 * and its own local APIC ID), copies the real-mode trampoline (trampoline.S) to
 * the highest free RAM page below 640 KiB and starts the AP with the Intel MP
 * INIT / 10 ms / SIPI / (SIPI) sequence. The AP switches to long mode on the
 * runtime's page tables and GDT, loads the runtime IDT, enables its LAPIC and
 * prints `smp: AP <apic id> online`. Then:
 *   - AP and BSP each add AP_INCS / BSP_INCS to a shared counter concurrently
 *     (AP: `lock incl`, BSP: `lock xaddl`), so the total checks atomicity;
 *   - the BSP sends IPI_COUNT fixed IPIs (vector 0x50, physical destination =
 *     the AP's APIC ID) through the ICR, one at a time, each acknowledged by the
 *     AP's handler count before the next is sent.
 * Prints `smp: 2 CPUs, ipi ok, counter <n>` and exits 0.
 *
 * Timeouts use PIT ticks (100 Hz via the 8259, BSP only). All of this is kernel
 * mode, which the PVM host emulates (~2 M instr/s): the loops are short.
 *
 * Exit codes: 2 only one CPU (CPUID says 1 and nothing answers INIT/SIPI), 3 no usable trampoline page, 4 ICR
 * stuck busy, 5 AP did not start, 6 AP did not come online, 7 AP APIC ID
 * mismatch, 8 counter work timed out, 9 IPI not acknowledged, 10 wrong counter,
 * 11 AP did not finish.
 */
#include "rt.h"

#define IPI_VECTOR 0x50
#define IPI_COUNT  16
#define AP_INCS    20000u
#define BSP_INCS   20000u
#define HZ         100

#define LAPIC_ICR_LO 0x300
#define LAPIC_ICR_HI 0x310
#define ICR_BUSY     (1u << 12)
#define ICR_INIT     0x500u
#define ICR_STARTUP  0x600u
#define ICR_LEVEL    (1u << 15)
#define ICR_ASSERT   (1u << 14)

/* trampoline.S */
extern char ap_tramp_start[], ap_tramp_end[], ap_tramp_flag[];
uint64_t ap_stack_ptr; /* read by the AP's 64-bit entry */
static uint8_t ap_stack[16384] __attribute__((section(".bss.noinit.smp_ap_stack"), aligned(16)));

static volatile uint32_t pit_ticks;
static volatile uint32_t ap_online, ap_apic_id, ap_incs_done, ap_finished;
static volatile uint32_t ap_ipis;
static volatile uint32_t counter;
static volatile uint32_t print_lock;

static void lock_print(void)
{
    while (__atomic_exchange_n(&print_lock, 1, __ATOMIC_ACQUIRE))
        pause();
}
static void unlock_print(void) { __atomic_store_n(&print_lock, 0, __ATOMIC_RELEASE); }

static void pit_irq(struct int_frame *f)
{
    (void)f;
    pit_ticks++;
    pic_eoi(0);
}

static void ipi_irq(struct int_frame *f)
{
    (void)f;
    ap_ipis++;
    lapic_eoi();
}

/* ------------------------------------------------------------------ AP */
void ap_main(void)
{
    idt_load_default();
    lapic_enable();
    /* Only the BSP takes 8259 interrupts (virtual wire): mask LINT0/LINT1 here. */
    lapic_write(LAPIC_LVT_LINT0, 0x10700);
    lapic_write(LAPIC_LVT_LINT1, 0x10400);
    uint32_t id = lapic_read(LAPIC_ID) >> 24;
    ap_apic_id = id;
    lock_print();
    printf("smp: AP %u online\n", id);
    unlock_print();
    __atomic_store_n(&ap_online, 1, __ATOMIC_RELEASE);

    for (uint32_t i = 0; i < AP_INCS; i++)
        __asm__ volatile("lock incl %0" : "+m"(counter)::"memory");
    __atomic_store_n(&ap_incs_done, 1, __ATOMIC_RELEASE);

    /* Idle until every IPI has arrived (IF=0 between checks). */
    while (ap_ipis < IPI_COUNT)
        wait_irq();
    __atomic_store_n(&ap_finished, 1, __ATOMIC_RELEASE);
    for (;;)
        __asm__ volatile("cli; hlt");
}

/* ----------------------------------------------------------------- BSP */
/* Spin (IF=1, so PIT ticks count) until *flag >= want or `ticks` PIT ticks pass. */
static bool wait_flag(volatile uint32_t *flag, uint32_t want, uint32_t ticks)
{
    uint32_t t0 = pit_ticks;
    bool ok;
    sti();
    for (;;) {
        if (*flag >= want) { ok = true; break; }
        if (pit_ticks - t0 >= ticks) { ok = *flag >= want; break; }
        pause();
    }
    cli();
    return ok;
}

static void wait_ticks(uint32_t ticks)
{
    uint32_t t0 = pit_ticks;
    while (pit_ticks - t0 < ticks)
        wait_irq();
}

static void icr_send(uint32_t dest, uint32_t lo)
{
    lapic_write(LAPIC_ICR_HI, dest << 24);
    lapic_write(LAPIC_ICR_LO, lo);
    for (int i = 0; lapic_read(LAPIC_ICR_LO) & ICR_BUSY; i++)
        if (i > 10000)
            fail(4, "ICR delivery status stuck busy (icr 0x%x)\n", lo);
}

static bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return a < b + blen && b < a + alen;
}

/* Highest 4 KiB RAM page below 640 KiB (a SIPI vector needs < 1 MiB) that holds
 * none of the start-info structures. 0 if none. */
static uint64_t pick_trampoline_page(void)
{
    if (!start_info || start_info->version < 1 || !start_info->memmap_paddr)
        return 0;
    const struct hvm_memmap_entry *e = (const void *)start_info->memmap_paddr;
    uint64_t best = 0;
    for (uint32_t i = 0; i < start_info->memmap_entries; i++) {
        if (e[i].type != 1)
            continue;
        uint64_t lo = (e[i].addr + 0xFFF) & ~0xFFFull, hi = e[i].addr + e[i].size;
        if (hi > 0xA0000)
            hi = 0xA0000;
        for (uint64_t p = (hi & ~0xFFFull); p >= lo + 0x1000 && p >= 0x2000; p -= 0x1000) {
            uint64_t page = p - 0x1000;
            const char *cl = cmdline();
            if (overlaps(page, 0x1000, (uint64_t)start_info, sizeof(*start_info)) ||
                overlaps(page, 0x1000, start_info->memmap_paddr,
                         start_info->memmap_entries * sizeof(*e)) ||
                overlaps(page, 0x1000, (uint64_t)cl, strlen(cl) + 1))
                continue;
            if (page > best)
                best = page;
            break;
        }
    }
    return best;
}

int main(void)
{
    cli();
    set_int_handler(PIC_VECTOR(0), pit_irq);
    set_int_handler(IPI_VECTOR, ipi_irq);
    lapic_enable();
    pit_init_periodic(HZ);
    pic_unmask(0);

    uint32_t a, b, c, d;
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(1), "c"(0));
    uint32_t logical = (d & (1u << 28)) ? (b >> 16) & 0xFF : 1;
    if (logical == 0) /* HTT set but no count (seen with QEMU -cpu max -smp 1) */
        logical = 1;
    uint32_t bsp_id = lapic_read(LAPIC_ID) >> 24;
    printf("smp: BSP apic id %u (cpuid initial id %u), %u logical CPUs (CPUID.1 EBX[23:16])\n",
           bsp_id, b >> 24, logical);
    /* The AP is the first other APIC ID in 0..logical-1. CPUID.1 counts logical CPUs
     * per package: with one CPU per socket (e.g. QEMU -smp 2,sockets=2) it says 1, so
     * probe the next APIC ID anyway and only give up when nothing answers. */
    uint32_t ap_id = bsp_id == 0 ? 1 : 0;
    if (logical < 2)
        printf("smp: CPUID reports 1 logical CPU per package; probing APIC ID %u anyway\n",
               ap_id);

    uint64_t page = pick_trampoline_page();
    if (!page)
        fail(3, "no RAM page below 640 KiB for the AP trampoline\n");
    size_t len = (size_t)(ap_tramp_end - ap_tramp_start);
    volatile uint8_t *flag = (volatile uint8_t *)(page + (uint64_t)(ap_tramp_flag - ap_tramp_start));
    memcpy((void *)page, ap_tramp_start, len);
    *flag = 0;
    ap_stack_ptr = (uint64_t)(ap_stack + sizeof(ap_stack));
    uint8_t vector = (uint8_t)(page >> 12);
    printf("smp: trampoline %zu bytes at 0x%lx, SIPI vector 0x%x, AP apic id %u\n", len, page,
           vector, ap_id);

    /* INIT (assert, then level de-assert for old APICs), 10 ms, SIPI, SIPI if needed. */
    icr_send(ap_id, ICR_INIT | ICR_LEVEL | ICR_ASSERT);
    icr_send(ap_id, ICR_INIT | ICR_LEVEL);
    wait_ticks(2); /* >= 10 ms */
    int sipis = 1;
    icr_send(ap_id, ICR_STARTUP | vector);
    uint32_t t0 = pit_ticks;
    sti();
    while (!*flag && pit_ticks - t0 < 2)
        pause();
    cli();
    if (!*flag) {
        sipis = 2;
        icr_send(ap_id, ICR_STARTUP | vector);
        t0 = pit_ticks;
        sti();
        while (!*flag && pit_ticks - t0 < 100)
            pause();
        cli();
    }
    if (!*flag && logical < 2)
        fail(2, "only one CPU: CPUID.1 reports 1 logical CPU and APIC ID %u did not answer "
                "INIT/SIPI (run with numvcpus = 2 / -smp 2)\n", ap_id);
    if (!*flag)
        fail(5, "AP %u did not start after %d SIPIs (vector 0x%x)\n", ap_id, sipis, vector);
    uint32_t t_start = pit_ticks;
    if (!wait_flag(&ap_online, 1, 3 * HZ))
        fail(6, "AP started (real mode) but did not reach ap_main within 3 s\n");
    lock_print();
    printf("smp: AP started after %d SIPI(s), online %u ticks later\n", sipis,
           pit_ticks - t_start);
    unlock_print();
    if (ap_apic_id != ap_id)
        fail(7, "AP reports apic id %u, expected %u\n", ap_apic_id, ap_id);

    /* Concurrent atomic increments. The values xadd returns show whether the AP's
     * increments interleaved with ours. */
    uint32_t first = 0, last = 0;
    for (uint32_t i = 0; i < BSP_INCS; i++) {
        uint32_t old = 1;
        __asm__ volatile("lock xaddl %0, %1" : "+r"(old), "+m"(counter)::"memory");
        if (i == 0)
            first = old;
        last = old;
    }
    if (!wait_flag(&ap_incs_done, 1, 5 * HZ))
        fail(8, "AP did not finish its %u increments within 5 s (counter %u)\n", AP_INCS,
             counter);

    /* Fixed IPIs, one at a time. */
    t0 = pit_ticks;
    for (uint32_t i = 0; i < IPI_COUNT; i++) {
        icr_send(ap_id, IPI_VECTOR); /* fixed, physical, edge, no shorthand */
        if (!wait_flag(&ap_ipis, i + 1, HZ))
            fail(9, "IPI %u to AP %u (vector 0x%x) not handled within 1 s (AP count %u)\n",
                 i + 1, ap_id, IPI_VECTOR, ap_ipis);
    }
    uint32_t ipi_ticks = pit_ticks - t0;
    if (!wait_flag(&ap_finished, 1, HZ))
        fail(11, "AP did not finish\n");

    uint32_t n = counter;
    printf("smp: BSP xadd saw %u..%u: %u AP increments interleaved with the BSP's\n", first,
           last, last - first - (BSP_INCS - 1));
    printf("smp: %u IPIs to vector 0x%x handled by the AP in %u ticks\n", (unsigned)IPI_COUNT,
           IPI_VECTOR, ipi_ticks);
    if (n != AP_INCS + BSP_INCS)
        fail(10, "counter %u, expected %u\n", n, AP_INCS + BSP_INCS);
    pic_mask(0);
    pit_stop();
    printf("smp: 2 CPUs, ipi ok, counter %u\n", n);
    return 0;
}
