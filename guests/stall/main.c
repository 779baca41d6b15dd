/* stall: reads BAR 0 of the blocking-bar test device (1234:57a1) once, from ring 0:
 * the host's device call watchdog is what is tested (IntegrationTests
 * DeviceCallWatchdogTests). Prints the value read and exits 0; exit 3 without the device. */
#include "rt.h"

int main(void)
{
    struct pci_dev d;
    struct pci_bar b;
    if (!pci_find(0x1234, 0x57a1, &d))
        fail(3, "stall: no blocking-bar device\n");
    pci_bar(&d, 0, &b);
    if (b.type != PCI_BAR_IO)
        fail(4, "stall: BAR 0 is not I/O\n");
    pci_enable(&d, PCI_CMD_IO);
    printf("stall: reading BAR0 at 0x%x\n", (unsigned)b.addr);
    uint32_t v = inl((uint16_t)b.addr);
    printf("stall: read 0x%x\n", (unsigned)v);
    return 0;
}
