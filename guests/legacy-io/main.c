/*
 * legacy-io: a guest's view of the ABI 1.1 device extensions, driven against the
 * devext probe plugin (Tests/HVPluginHostTests/Fixtures/devext_probe.c, PCI 1234:11e2):
 * fixed ports (a 4-port claim at 0xE00, VGA's 0x3C0-0x3DF), the legacy memory
 * window 0xA0000-0xBFFFF (not RAM: every access reaches the device), RAM right above
 * it, and the function's expansion ROM (sized, enabled and read through register 0x30).
 * It also calls the VMkernel's VMware backdoor (GETVERSION), which needs no device.
 * Without the probe device (e.g. under QEMU) it exits 3.
 */
#include "rt.h"

#define PROBE_VENDOR 0x1234
#define PROBE_DEVICE 0x11e2
#define PCI_ROM      0x30

static void expect(bool ok, uint8_t code, const char *what, uint64_t got)
{
    if (!ok)
        fail(code, "legacy-io: %s: got 0x%llx\n", what, (unsigned long long)got);
}

/* A VMware backdoor call: IN from port 0x5658 with the magic in EAX, the command in ECX. */
static void backdoor(uint32_t cmd, uint32_t *eax, uint32_t *ebx, uint32_t *ecx)
{
    uint32_t edx;
    __asm__ volatile("inl %%dx, %%eax"
                     : "=a"(*eax), "=b"(*ebx), "=c"(*ecx), "=d"(edx)
                     : "a"(0x564D5868u), "b"(~0u), "c"(cmd), "d"(0x5658u));
}

int main(void)
{
    uint32_t version, magic, product;
    backdoor(10, &version, &magic, &product);
    expect(magic == 0x564D5868, 11, "backdoor GETVERSION magic in EBX", magic);
    printf("legacy-io: backdoor version %u, magic 0x%x, product %u\n", version, magic, product);

    struct pci_dev d;
    if (!pci_find(PROBE_VENDOR, PROBE_DEVICE, &d))
        fail(3, "legacy-io: probe device %04x:%04x not found\n", PROBE_VENDOR, PROBE_DEVICE);
    struct pci_bar bar;
    pci_bar(&d, 0, &bar);
    pci_enable(&d, PCI_CMD_MEM);

    /* Ports: the probe answers with the port number, the 4-port claim with a constant. */
    uint32_t wide = inl(0x0E00);
    expect(wide == 0xC0DE5EED, 4, "4-port claim at 0xe00", wide);
    uint16_t crtc = inw(0x3D4);
    expect(crtc == 0x3D4, 5, "port 0x3d4", crtc);
    outb(0x3DF, 0x7F);
    expect(mmio_read64(bar.addr + 0x200) == 0x3DF && mmio_read64(bar.addr + 0x210) == 0x7F, 6,
           "write to port 0x3df not seen", mmio_read64(bar.addr + 0x200));
    printf("legacy-io: port 0xe00 reads 0x%x, port 0x3d4 reads 0x%x\n", wide, crtc);

    /* The memory window is the device's, not RAM. */
    uint32_t w = mmio_read32(0xA0010);
    expect(w == 0xA0010, 7, "window read at 0xa0010", w);
    mmio_write32(0xBFFF0, 0xBEEF);
    uint64_t at = mmio_read64(bar.addr + 0x200), value = mmio_read64(bar.addr + 0x210);
    expect(at == 0xBFFF0 && value == 0xBEEF && mmio_read64(bar.addr + 0x218) == 3, 8, "window write", at);
    printf("legacy-io: window reads 0x%x at 0xa0010, write 0x%llx seen at 0x%llx\n", w,
           (unsigned long long)value, (unsigned long long)at);

    /* RAM resumes right above the window. */
    volatile uint32_t *ram = (volatile uint32_t *)0xC0000;
    *ram = 0x12345678;
    expect(*ram == 0x12345678, 9, "RAM at 0xc0000", *ram);
    printf("legacy-io: RAM at 0xc0000 ok\n");

    /* The expansion ROM: placed by firmware, disabled; size it, enable it, read it. */
    uint32_t rom = pci_read32(d.bus, d.dev, d.fn, PCI_ROM);
    expect((rom & 1) == 0 && (rom & ~0x7FFu) != 0, 10, "ROM register after firmware", rom);
    pci_write32(d.bus, d.dev, d.fn, PCI_ROM, 0xFFFFF800);
    uint32_t size = ~(pci_read32(d.bus, d.dev, d.fn, PCI_ROM) & ~0x7FFu) + 1;
    pci_write32(d.bus, d.dev, d.fn, PCI_ROM, rom | 1);
    uint64_t base = rom & ~0x7FFu;
    uint16_t signature = mmio_read16(base);
    uint8_t b4 = mmio_read8(base + 4);
    pci_write32(d.bus, d.dev, d.fn, PCI_ROM, rom);
    expect(size == 4096 && signature == 0xAA55 && b4 == 29, 11, "ROM contents", signature);
    printf("legacy-io: ROM of %u bytes at 0x%llx, signature 0x%x\n", size, (unsigned long long)base, signature);

    printf("legacy-io: ok\n");
    return 0;
}
