/*
 * console-input: the input echo (input_echo.c) on its own, without a display: keys,
 * PS/2 packets and VMware absolute pointer packets printed on COM1 (`vmmouse=0` leaves
 * the absolute pointer off). Esc ends the guest with exit 1; `once=1` ends it right after
 * the bring-up (check-qemu: QEMU's i8042 and vmmouse accept the same sequence).
 */
#include "rt.h"
#include "input_echo.h"

int main(void)
{
    input_echo_init(cmdline_u64("vmmouse", 1) != 0);
    if (cmdline_u64("once", 0)) return 1;
    for (;;) {
        cli();
        if (!input_echo_pending()) wait_irq();
        sti();
        if (input_echo_poll()) {
            printf("console-input: done\n");
            return 1;
        }
    }
}
