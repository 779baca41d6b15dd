/* A probe device (1234:11e2) for the ABI 1.1 PCI extensions "hv.ram-bar/1", "hv.msix/1"
 * and "hv.doorbell/1", driven by unit tests through the real loader and by the devext
 * guest. An ordinary (locked) model: doorbell callbacks run under the device lock.
 *
 * BAR0 MMIO 4 KiB (8-byte registers), MSI-X table (8 vectors) at 0x800, PBA at 0xC00:
 *   0x000 R  bit 0/1/2: ram-bar / msix / doorbell extension found and every declaration
 *            in create() succeeded
 *   0x008 R  the RAM BAR's host address
 *   0x010 W  check mask M: every page p in M must hold 0xCAFE0000 | p at offset 0x10
 *            (read through the host pointer); then the dirty query; then the device
 *            writes ~M at RAM offset 0xF800. R: 1 when the pattern was there
 *   0x018 R  word 0 of that dirty bitmap      0x020 R  ram_bar_dirty's result
 *   0x028 W  msix_notify(value); R: its result
 *   0x030 W  interrupt (value = vector) by MSI-X, else MSI, else INTx; R: 1/2/3 = path
 *   0x038 W  irq_set_level(value)
 *   0x040/0x048/0x050 R  rings of doorbell A / B / P (sums of counts)
 *   0x058 R  writes that reached the BAR0 handler at 0x100..0x10f or the BAR1 handler
 *   0x060 R  doorbell callbacks run
 *   0x068 R  the path of the last doorbell-B interrupt (as 0x030)
 *   0x080.. R  results of declarations that must be refused (see refusals(); made only
 *            when the device's config says probeRefusals = "TRUE")
 *   0x0e0 W  ram_bar_add after create(); R: its result
 *   0x100 doorbell A: 4 bytes, any value. Answers the request at RAM 0xE000 with
 *         request * 2 + 1 at RAM 0xE004.
 *   0x108 doorbell B: 4 bytes, value 0xD00D. Sends vector 1 as 0x030 does.
 * BAR1 I/O 32 bytes: doorbell P at 0 (2 bytes, any value): writes its ring total at
 *   RAM 0xE008. Reads 0x1234.
 * BAR2 RAM 64 KiB. */
#include <hvplugin.h>
#include <stdlib.h>
#include <string.h>

#define RAM_SIZE (64u * 1024u)

struct hv_device {
    const hv_host_services *s;
    hv_host *h;
    const hv_ram_bar_ext *ram_ext;
    const hv_msix_ext *msix_ext;
    const hv_doorbell_ext *bell_ext;
    volatile uint8_t *ram;
    uint64_t status, check_ok, dirty0, dirty_rc, notify_rc, path, rings_a, rings_b, rings_p,
        passed_writes, callbacks, b_path, late_rc;
    int64_t refused[12];
};

static uint32_t load32(volatile uint8_t *p) { return *(volatile uint32_t *)p; }
static void store32(volatile uint8_t *p, uint32_t v) { *(volatile uint32_t *)p = v; }

static uint64_t interrupt(hv_device *d, uint32_t vector) {
    if (d->msix_ext && d->msix_ext->msix_notify(d->h, vector) != HV_ENOENT) return 1;
    if (d->s->msi_notify(d->h, 0) != HV_ENOENT) return 2;
    d->s->irq_set_level(d->h, 1);
    return 3;
}

static void ring_a(hv_device *d, void *opaque, uint64_t count) {
    (void)opaque;
    d->rings_a += count;
    d->callbacks++;
    uint32_t request = load32(d->ram + 0xE000);
    store32(d->ram + 0xE004, request * 2 + 1);
}

static void ring_b(hv_device *d, void *opaque, uint64_t count) {
    (void)opaque;
    d->rings_b += count;
    d->callbacks++;
    d->b_path = interrupt(d, 1);
}

static void ring_p(hv_device *d, void *opaque, uint64_t count) {
    (void)opaque;
    d->rings_p += count;
    d->callbacks++;
    store32(d->ram + 0xE008, (uint32_t)d->rings_p);
}

static void check(hv_device *d, uint64_t mask) {
    int ok = 1;
    for (uint32_t p = 0; p < RAM_SIZE / HV_RAM_BAR_PAGE_SIZE; p++)
        if ((mask >> p) & 1) ok &= load32(d->ram + p * HV_RAM_BAR_PAGE_SIZE + 0x10) == (0xCAFE0000u | p);
    d->check_ok = (uint64_t)ok;
    uint64_t bitmap[1] = { 0 };
    d->dirty_rc = (uint64_t)(int64_t)d->ram_ext->ram_bar_dirty(d->h, 2, bitmap, 1);
    d->dirty0 = bitmap[0];
    store32(d->ram + 0xF800, (uint32_t)~mask);
}

static uint64_t rd0(hv_device *d, uint32_t bar, uint64_t off, uint32_t size) {
    (void)bar; (void)size;
    switch (off) {
    case 0x000: return d->status;
    case 0x008: return (uint64_t)(uintptr_t)d->ram;
    case 0x010: return d->check_ok;
    case 0x018: return d->dirty0;
    case 0x020: return d->dirty_rc;
    case 0x028: return d->notify_rc;
    case 0x030: return d->path;
    case 0x040: return d->rings_a;
    case 0x048: return d->rings_b;
    case 0x050: return d->rings_p;
    case 0x058: return d->passed_writes;
    case 0x060: return d->callbacks;
    case 0x068: return d->b_path;
    case 0x0e0: return d->late_rc;
    default:
        if (off >= 0x080 && off < 0x080 + 8 * 12 && off % 8 == 0) return (uint64_t)d->refused[(off - 0x080) / 8];
        return 0;
    }
}

static void wr0(hv_device *d, uint32_t bar, uint64_t off, uint32_t size, uint64_t v) {
    (void)bar; (void)size;
    if (off >= 0x100 && off < 0x110) { d->passed_writes++; return; }
    switch (off) {
    case 0x010: check(d, v); break;
    case 0x028: d->notify_rc = (uint64_t)(int64_t)d->msix_ext->msix_notify(d->h, (uint32_t)v); break;
    case 0x030: d->path = interrupt(d, (uint32_t)v); break;
    case 0x038: d->s->irq_set_level(d->h, (int)v); break;
    case 0x0e0: {
        hv_ram_bar_desc late = { sizeof late, 4, HV_BAR_MMIO32, 0, 4096 };
        void *p = NULL;
        d->late_rc = (uint64_t)(int64_t)d->ram_ext->ram_bar_add(d->h, &late, &p);
        break;
    }
    }
}

static uint64_t rd1(hv_device *d, uint32_t bar, uint64_t off, uint32_t size) {
    (void)d; (void)bar; (void)off; (void)size;
    return 0x1234;
}

static void wr1(hv_device *d, uint32_t bar, uint64_t off, uint32_t size, uint64_t v) {
    (void)bar; (void)off; (void)size; (void)v;
    d->passed_writes++;
}

static hv_doorbell_desc bell(uint32_t bar, uint64_t off, uint32_t size, uint32_t flags, uint64_t match,
                             hv_doorbell_fn fn) {
    hv_doorbell_desc b = { sizeof b, bar, off, size, flags, match, fn, NULL };
    return b;
}

/* Declarations that must fail, in register order from 0x080. */
static void refusals(hv_device *d) {
    void *p = NULL;
    hv_ram_bar_desc odd = { sizeof odd, 3, HV_BAR_MMIO32, 0, 1000 };
    hv_ram_bar_desc taken = { sizeof taken, 0, HV_BAR_MMIO32, 0, 4096 };
    hv_msix_desc on_ram = { sizeof on_ram, 4, 2, 0, 0x800, 0 };
    hv_msix_desc too_many = { sizeof too_many, 2049, 0, 0, 0, 0 };
    hv_msix_desc overlap = { sizeof overlap, 8, 0, 0x800, 0x840, 0 };
    hv_msix_desc again = { sizeof again, 8, 0, 0x400, 0x600, 0 };
    hv_doorbell_desc outside = bell(0, 4096, 4, 0, 0, ring_a);
    hv_doorbell_desc dup = bell(0, 0x100, 4, 0, 0, ring_a);
    hv_doorbell_desc in_table = bell(0, 0x810, 4, 0, 0, ring_a);
    hv_doorbell_desc wide_io = bell(1, 8, 8, 0, 0, ring_p);
    uint64_t bitmap[1];
    d->refused[0] = d->ram_ext->ram_bar_add(d->h, &odd, &p);
    d->refused[1] = d->ram_ext->ram_bar_add(d->h, &taken, &p);
    d->refused[2] = d->msix_ext->msix_add(d->h, &on_ram);
    d->refused[3] = d->msix_ext->msix_add(d->h, &too_many);
    d->refused[4] = d->msix_ext->msix_add(d->h, &overlap);
    d->refused[5] = d->bell_ext->doorbell_add(d->h, &outside);
    d->refused[6] = d->bell_ext->doorbell_add(d->h, &dup);
    d->refused[7] = d->bell_ext->doorbell_add(d->h, &in_table);
    d->refused[8] = d->bell_ext->doorbell_add(d->h, &wide_io);
    d->refused[9] = d->ram_ext->ram_bar_dirty(d->h, 2, bitmap, 0);
    d->refused[10] = d->ram_ext->ram_bar_dirty(d->h, 0, bitmap, 1);
    d->refused[11] = d->msix_ext->msix_add(d->h, &again);
}

static int create(const hv_host_services *s, hv_host *h, hv_device **out) {
    hv_device *d = calloc(1, sizeof *d);
    if (!d) return HV_ENOMEM;
    d->s = s;
    d->h = h;
    d->ram_ext = s->get_extension(h, HV_EXT_RAM_BAR);
    d->msix_ext = s->get_extension(h, HV_EXT_MSIX);
    d->bell_ext = s->get_extension(h, HV_EXT_DOORBELL);
    if (!d->ram_ext || !d->msix_ext || !d->bell_ext) { free(d); return HV_ENOTSUP; }
    hv_pci_identity id = { sizeof id, 0x1234, 0x11e2, 0, 0, 0xff0000, 1, 1, {0, 0} };
    hv_bar_desc regs = { sizeof regs, 0, HV_BAR_MMIO32, 0, 4096, rd0, wr0 };
    hv_bar_desc ports = { sizeof ports, 1, HV_BAR_IO, 0, 32, rd1, wr1 };
    hv_ram_bar_desc ram = { sizeof ram, 2, HV_BAR_MMIO32, HV_BAR_PREFETCHABLE, RAM_SIZE };
    hv_msix_desc msix = { sizeof msix, 8, 0, 0x800, 0xC00, 0 };
    hv_doorbell_desc a = bell(0, 0x100, 4, 0, 0, ring_a);
    hv_doorbell_desc b = bell(0, 0x108, 4, HV_DOORBELL_DATAMATCH, 0xD00D, ring_b);
    hv_doorbell_desc p = bell(1, 0, 2, 0, 0, ring_p);
    void *mem = NULL;
    int rc = s->pci_set_identity(h, &id);
    if (rc == 0) rc = s->pci_add_bar(h, &regs);
    if (rc == 0) rc = s->pci_add_bar(h, &ports);
    if (rc == 0) rc = s->pci_add_msi(h, 1);
    if (rc == 0 && (rc = d->ram_ext->ram_bar_add(h, &ram, &mem)) == 0) d->status |= 1;
    if (rc == 0 && (rc = d->msix_ext->msix_add(h, &msix)) == 0) d->status |= 2;
    if (rc == 0) rc = d->bell_ext->doorbell_add(h, &a);
    if (rc == 0) rc = d->bell_ext->doorbell_add(h, &b);
    if (rc == 0 && (rc = d->bell_ext->doorbell_add(h, &p)) == 0) d->status |= 4;
    if (rc) { free(d); return rc; }
    d->ram = mem;
    const char *refuse = s->config_get(h, "probeRefusals");
    if (refuse && strcmp(refuse, "TRUE") == 0) refusals(d);
    *out = d;
    return HV_OK;
}

static void destroy(hv_device *d) { free(d); }

static const hv_device_ops ops = { .struct_size = sizeof(hv_device_ops), .destroy = destroy };
static const hv_device_model model = {
    .struct_size = sizeof(hv_device_model), .kind = HV_DEVICE_KIND_OTHER, .name = "pciextprobe",
    .description = "ABI 1.1 PCI extensions probe", .create = create, .ops = &ops,
};
static const hv_device_model *const models[] = { &model };
static const hv_device_factory factory = { sizeof factory, HV_ABI_VERSION, 1, 0, models };

static const void *get_factory(const char *id) { return strcmp(id, HV_FACTORY_DEVICE) == 0 ? &factory : NULL; }

static const char *const ids[] = { HV_FACTORY_DEVICE, NULL };
static const hv_plugin_entry entry = {
    .struct_size = sizeof(hv_plugin_entry), .abi_version = HV_ABI_VERSION, .id = "org.test.pciextprobe",
    .name = "PCI extension probe", .version = "1.0", .get_factory = get_factory, .factory_ids = ids,
};

const hv_plugin_entry *hv_plugin_entry_v1(void) { return &entry; }
