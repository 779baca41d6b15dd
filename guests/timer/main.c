/*
 * timer: PIT ch0 at 100 Hz (IRQ0 via the 8259) and the LAPIC timer at 100 Hz
 * (periodic, divide 16, count 625000 = 10 ms at a 1 GHz APIC bus clock, vector
 * 0x40), counted across exactly two RTC seconds.
 */
#include "rt.h"

#define LAPIC_TIMER_VECTOR 0x40
#define HZ 100

static volatile uint32_t pit_ticks, lapic_ticks;

static void pit_irq(struct int_frame *f)
{
    (void)f;
    pit_ticks++;
    pic_eoi(0);
}

static void lapic_irq(struct int_frame *f)
{
    (void)f;
    lapic_ticks++;
    lapic_eoi();
}

/* Idle until the RTC seconds value changes; returns the new value. */
static int wait_rtc_edge(int from)
{
    for (;;) {
        wait_irq();
        int s = rtc_seconds();
        if (s >= 0 && s != from)
            return s;
    }
}

int main(void)
{
    cli();
    pic_init();
    set_int_handler(PIC_VECTOR(0), pit_irq);
    set_int_handler(LAPIC_TIMER_VECTOR, lapic_irq);
    lapic_enable();
    pit_init_periodic(HZ);
    pic_unmask(0);
    lapic_timer_periodic(LAPIC_TIMER_VECTOR, 16, 625000);
    printf("timer: PIT %u Hz on IRQ0, LAPIC periodic div 16 count 625000 on vector 0x%x\n", HZ,
           LAPIC_TIMER_VECTOR);

    int s;
    while ((s = rtc_seconds()) < 0)
        ;
    s = wait_rtc_edge(s); /* align to a seconds edge */
    uint32_t p0 = pit_ticks, l0 = lapic_ticks;
    s = wait_rtc_edge(s);
    s = wait_rtc_edge(s);
    uint32_t p = pit_ticks - p0, l = lapic_ticks - l0;

    lapic_timer_stop();
    pic_mask(0);
    pit_stop();

    printf("pit: %u ticks in 2 s\n", p);
    printf("lapic: %u ticks in 2 s\n", l);
    bool ok = p >= 160 && p <= 240 && l >= 160 && l <= 240;
    if (!ok)
        fail(2, "tick counts outside 160..240\n");
    return 0;
}
