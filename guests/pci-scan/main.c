/* pci-scan: enumerate bus 0, size every BAR, require a host bridge at 00:00.0. */
#include "rt.h"

static void show(const struct pci_dev *d, void *ctx)
{
    (void)ctx;
    char line[512];
    int n = snprintf(line, sizeof line, "pci %02x:%02x.%u %04x:%04x class %02x%02x",
                     d->bus, d->dev, d->fn, d->vendor, d->device, d->class_code, d->subclass);
    int count = pci_bar_count(d);
    for (int i = 0; i < count;) {
        struct pci_bar b;
        int slots = pci_bar(d, i, &b);
        if (b.type != PCI_BAR_NONE && n < (int)sizeof line)
            n += snprintf(line + n, sizeof line - n, " bar%d=0x%lx (%s, size 0x%lx)", i, b.addr,
                          b.type == PCI_BAR_IO ? "io" : b.type == PCI_BAR_MEM32 ? "mem32" : "mem64",
                          b.size);
        i += slots;
    }
    printf("%s irq %u pin %u\n", line, d->irq_line, d->irq_pin);
}

int main(void)
{
    struct pci_dev host;
    if (!pci_probe(0, 0, 0, &host))
        fail(2, "no device at 00:00.0\n");
    if (host.class_code != 0x06 || host.subclass != 0x00)
        fail(2, "00:00.0 is class %02x%02x, not a host bridge (0600)\n", host.class_code,
             host.subclass);
    int n = pci_scan(show, NULL);
    printf("pci: %d functions\n", n);
    return 0;
}
