/*
 * burn: a CPU-burning guest for scheduler experiments.
 *
 * The work loop runs in ring 3 (native speed on every host, including PVM where
 * guest kernel mode is emulated). It does fixed units of integer work (UNIT_ITERS
 * steps of a 64-bit LCG per unit) and keeps a monotonically increasing unit count
 * in `burn_units` (a global: a host that knows the ELF symbol can also read it from
 * guest memory).
 *
 * Every CHECK_UNITS units it samples the CMOS RTC seconds register; whenever the
 * second changes it prints `burn: <units>`. The host timestamps serial lines as it
 * reads them, so comparing units between VMs over a wall-time window only needs
 * these short once-a-second lines.
 *
 * Sampling cost: ring-3 port I/O traps to the guest kernel on PVM, so the RTC
 * index register (0x70) is written once and each sample is a single `inb 0x71`
 * (the CMOS index stays latched; nothing else touches 0x70 while we run). The
 * value is only compared for change, so BCD vs. binary does not matter.
 *
 * Command line: `seconds=S` - stop at the S-th RTC second change (S-1..S seconds
 * of run time), print `burn: rate <u> units/s` (units between the first and last
 * change divided by S-1, if S >= 2) and `burn: done <units>`, exit 0.
 * `seconds=0` or no argument: run forever.
 * Optional `check=K` overrides CHECK_UNITS (RTC samples every K units).
 */
#include "rt.h"

#define UNIT_ITERS  1000000u /* LCG steps per unit */
#define CHECK_UNITS 4u       /* units between RTC samples (~a few ms natively) */

volatile uint64_t burn_units;   /* the monotonically increasing unit count */
volatile uint64_t burn_state;   /* LCG state (keeps the work observable) */

static uint64_t seconds, check_units;

/* One unit of work: UNIT_ITERS dependent LCG steps (Knuth's MMIX constants). */
static inline uint64_t unit(uint64_t x)
{
    for (uint32_t i = 0; i < UNIT_ITERS; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        __asm__ volatile("" : "+r"(x)); /* no strength reduction / closed form */
    }
    return x;
}

static inline uint8_t rtc_sample(void) { return inb(0x71); }

static uint64_t burn_user(void)
{
    uint64_t x = burn_state, units = 0, first_edge_units = 0;
    uint64_t edges = 0;
    uint8_t last = rtc_sample();
    for (;;) {
        for (uint64_t k = 0; k < check_units; k++)
            x = unit(x);
        units += check_units;
        burn_units = units;
        burn_state = x;
        uint8_t now = rtc_sample();
        if (now == last)
            continue;
        last = now;
        edges++;
        printf("burn: %lu\n", units);
        if (edges == 1)
            first_edge_units = units;
        if (seconds && edges >= seconds) {
            if (edges >= 2)
                printf("burn: rate %lu units/s\n", (units - first_edge_units) / (edges - 1));
            return units;
        }
    }
}

int main(void)
{
    seconds = cmdline_u64("seconds", 0);
    check_units = cmdline_u64("check", CHECK_UNITS);
    if (check_units == 0)
        check_units = 1;
    burn_state = 0x853c49e6748fea9bull;
    printf("burn: seconds=%lu unit=%u LCG steps, RTC check every %lu units\n", seconds,
           UNIT_ITERS, check_units);
    /* Select the RTC seconds register once; ring 3 then only reads 0x71. Wait out
     * an update in progress so the first sample is sane. */
    while (cmos_read(0x0A) & 0x80)
        pause();
    outb(0x70, 0x00);
    uint64_t units = run_user(burn_user, user_stack_top);
    printf("burn: done %lu\n", units);
    if (user_pio_emulated || user_int80_via_ud)
        printf("burn: host quirks: %lu ring-3 port I/O emulated, %lu int $0x80 via #UD\n",
               user_pio_emulated, user_int80_via_ud);
    return 0;
}
