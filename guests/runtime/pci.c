/* PCI configuration mechanism #1 (0xCF8/0xCFC), bus 0 enumeration, BAR sizing. */
#include "rt.h"

#define PCI_ADDR 0xCF8
#define PCI_DATA 0xCFC

static uint32_t cfg_addr(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t off)
{
    return 0x80000000u | ((uint32_t)bus << 16) | ((uint32_t)(dev & 31) << 11) |
           ((uint32_t)(fn & 7) << 8) | (off & 0xFC);
}

uint32_t pci_read32(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t off)
{
    outl(PCI_ADDR, cfg_addr(bus, dev, fn, off));
    return inl(PCI_DATA);
}

uint16_t pci_read16(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t off)
{
    outl(PCI_ADDR, cfg_addr(bus, dev, fn, off));
    return inw(PCI_DATA + (off & 2));
}

uint8_t pci_read8(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t off)
{
    outl(PCI_ADDR, cfg_addr(bus, dev, fn, off));
    return inb(PCI_DATA + (off & 3));
}

void pci_write32(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t off, uint32_t v)
{
    outl(PCI_ADDR, cfg_addr(bus, dev, fn, off));
    outl(PCI_DATA, v);
}

void pci_write16(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t off, uint16_t v)
{
    outl(PCI_ADDR, cfg_addr(bus, dev, fn, off));
    outw(PCI_DATA + (off & 2), v);
}

void pci_write8(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t off, uint8_t v)
{
    outl(PCI_ADDR, cfg_addr(bus, dev, fn, off));
    outb(PCI_DATA + (off & 3), v);
}

bool pci_probe(uint8_t bus, uint8_t dev, uint8_t fn, struct pci_dev *d)
{
    uint32_t id = pci_read32(bus, dev, fn, 0x00);
    if ((id & 0xFFFF) == 0xFFFF || (id & 0xFFFF) == 0)
        return false;
    uint32_t cls = pci_read32(bus, dev, fn, 0x08);
    uint32_t irq = pci_read32(bus, dev, fn, 0x3C);
    *d = (struct pci_dev){
        .bus = bus,
        .dev = dev,
        .fn = fn,
        .vendor = (uint16_t)id,
        .device = (uint16_t)(id >> 16),
        .revision = (uint8_t)cls,
        .prog_if = (uint8_t)(cls >> 8),
        .subclass = (uint8_t)(cls >> 16),
        .class_code = (uint8_t)(cls >> 24),
        .header_type = pci_read8(bus, dev, fn, 0x0E) & 0x7F,
        .irq_line = (uint8_t)irq,
        .irq_pin = (uint8_t)(irq >> 8),
    };
    return true;
}

int pci_scan(void (*cb)(const struct pci_dev *d, void *ctx), void *ctx)
{
    int n = 0;
    for (uint8_t dev = 0; dev < 32; dev++) {
        struct pci_dev d;
        if (!pci_probe(0, dev, 0, &d))
            continue;
        bool multi = pci_read8(0, dev, 0, 0x0E) & 0x80;
        for (uint8_t fn = 0; fn < (multi ? 8 : 1); fn++) {
            if (fn && !pci_probe(0, dev, fn, &d))
                continue;
            n++;
            if (cb)
                cb(&d, ctx);
        }
    }
    return n;
}

struct find_ctx {
    uint16_t vendor, device;
    bool found;
    struct pci_dev d;
};

static void find_cb(const struct pci_dev *d, void *p)
{
    struct find_ctx *c = p;
    if (!c->found && d->vendor == c->vendor && d->device == c->device) {
        c->found = true;
        c->d = *d;
    }
}

bool pci_find(uint16_t vendor, uint16_t device, struct pci_dev *out)
{
    struct find_ctx c = {.vendor = vendor, .device = device};
    pci_scan(find_cb, &c);
    if (c.found && out)
        *out = c.d;
    return c.found;
}

int pci_bar_count(const struct pci_dev *d)
{
    switch (d->header_type) {
    case 0: return 6;
    case 1: return 2;
    default: return 0;
    }
}

int pci_bar(const struct pci_dev *d, int i, struct pci_bar *b)
{
    uint8_t off = (uint8_t)(PCI_BAR0 + 4 * i);
    *b = (struct pci_bar){0};
    if (i < 0 || i >= pci_bar_count(d))
        return 1;

    uint16_t cmd = pci_read16(d->bus, d->dev, d->fn, PCI_COMMAND);
    pci_write16(d->bus, d->dev, d->fn, PCI_COMMAND, cmd & ~(PCI_CMD_IO | PCI_CMD_MEM));

    uint32_t orig = pci_read32(d->bus, d->dev, d->fn, off);
    pci_write32(d->bus, d->dev, d->fn, off, 0xFFFFFFFF);
    uint32_t mask = pci_read32(d->bus, d->dev, d->fn, off);
    pci_write32(d->bus, d->dev, d->fn, off, orig);

    int slots = 1;
    uint32_t orig_hi = 0, mask_hi = 0;
    bool is64 = !(orig & 1) && ((orig >> 1) & 3) == 2 && i + 1 < pci_bar_count(d);
    if (is64) {
        orig_hi = pci_read32(d->bus, d->dev, d->fn, off + 4);
        pci_write32(d->bus, d->dev, d->fn, off + 4, 0xFFFFFFFF);
        mask_hi = pci_read32(d->bus, d->dev, d->fn, off + 4);
        pci_write32(d->bus, d->dev, d->fn, off + 4, orig_hi);
        slots = 2;
    }
    pci_write16(d->bus, d->dev, d->fn, PCI_COMMAND, cmd);

    if (orig & 1) { /* I/O */
        uint32_t m = mask & 0xFFFFFFFC;
        if (!m)
            return 1;
        m |= 0xFFFF0000; /* 16-bit I/O decoders return 0 above bit 15 */
        b->type = PCI_BAR_IO;
        b->addr = orig & 0xFFFFFFFC;
        b->size = (uint32_t)(~m + 1);
    } else if (is64) {
        uint64_t m = ((uint64_t)mask_hi << 32) | (mask & 0xFFFFFFF0);
        if (!m)
            return slots;
        b->type = PCI_BAR_MEM64;
        b->addr = ((uint64_t)orig_hi << 32) | (orig & 0xFFFFFFF0);
        b->size = ~m + 1;
        b->prefetchable = orig & 8;
    } else {
        uint32_t m = mask & 0xFFFFFFF0;
        if (!m)
            return 1;
        b->type = PCI_BAR_MEM32;
        b->addr = orig & 0xFFFFFFF0;
        b->size = (uint32_t)(~m + 1);
        b->prefetchable = orig & 8;
    }
    return slots;
}

void pci_enable(const struct pci_dev *d, uint16_t cmd_bits)
{
    uint16_t cmd = pci_read16(d->bus, d->dev, d->fn, PCI_COMMAND);
    cmd |= cmd_bits;
    cmd &= ~PCI_CMD_INTX_DISABLE;
    pci_write16(d->bus, d->dev, d->fn, PCI_COMMAND, cmd);
}
