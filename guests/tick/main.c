/*
 * tick: a mostly idle guest for wake-up latency experiments. It halts between LAPIC
 * timer interrupts (periodic, 100 Hz: divide 16, count 625000 at a 1 GHz APIC bus
 * clock) and does almost nothing per tick, so its vCPU blocks and wakes 100 times a
 * second. Prints `tick: <n>` every 100 ticks.
 *
 * Command line: `ticks=N` - stop after N ticks and print `tick: done <n>` (exit 0);
 * 0 or no argument: run forever.
 */
#include "rt.h"

#define LAPIC_TIMER_VECTOR 0x40

static volatile uint32_t ticks;

static void lapic_irq(struct int_frame *f)
{
    (void)f;
    ticks++;
    lapic_eoi();
}

int main(void)
{
    uint64_t limit = cmdline_u64("ticks", 0);
    cli();
    set_int_handler(LAPIC_TIMER_VECTOR, lapic_irq);
    lapic_enable();
    lapic_timer_periodic(LAPIC_TIMER_VECTOR, 16, 625000);
    printf("tick: LAPIC periodic 100 Hz on vector 0x%x\n", LAPIC_TIMER_VECTOR);
    uint32_t seen = 0;
    for (;;) {
        wait_irq();
        uint32_t t = ticks;
        if (t / 100 != seen / 100)
            printf("tick: %u\n", t);
        seen = t;
        if (limit && t >= limit) {
            lapic_timer_stop();
            printf("tick: done %u\n", t);
            return 0;
        }
    }
}
