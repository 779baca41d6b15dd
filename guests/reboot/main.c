/* reboot: asks the platform for a reset through the i8042 (command 0xFE to port 0x64),
 * as Linux's `reboot=k` does. A VMM that reboots runs this guest again; QEMU with
 * -no-reboot exits instead. */
#include "rt.h"

int main(void)
{
    printf("reboot: requesting reset\n");
    while (inb(0x64) & 0x02)        /* input buffer full: wait until the controller is ready */
        pause();
    outb(0x64, 0xFE);
    for (;;)
        hlt();
}
