/* bench: workloads for bench/ that hvhost and QEMU run side by side.
 * Command line: "pio=N" does N port reads of the COM1 scratch register (a user-space
 * device on both VMMs); "idle=S" prints "bench: idle" and waits S RTC seconds with
 * the CPU halted. Prints "bench: done" and exits 0. */
#include "rt.h"

static volatile uint64_t ticks;
static void on_tick(struct int_frame *f) { (void)f; ticks++; pic_eoi(0); }

int main(void)
{
    uint64_t pio = cmdline_u64("pio", 0), idle = cmdline_u64("idle", 0);
    uint8_t sink = 0;
    for (uint64_t i = 0; i < pio; i++)
        sink ^= inb(0x3FF);
    if (idle) {
        printf("bench: idle\n");
        set_int_handler(0x20, on_tick);
        pit_init_periodic(100);
        pic_unmask(0);
        int last = rtc_seconds(), elapsed = 0;
        while (elapsed < (int)idle) {
            wait_irq();
            int now = rtc_seconds();
            if (now != last) { elapsed++; last = now; }
        }
    }
    printf("bench: done (pio %lu, idle %lu, %u)\n", pio, idle, sink);
    return 0;
}
