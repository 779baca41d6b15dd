/* A hostile probe device: each write of N to BAR0 offset 0x00 makes one host-service call
 * with bad arguments (case N below); BAR0 offset 0x08 reads its result. The host must
 * answer every one with an error (HV_EFAULT for guest ranges, HV_EINVAL for handles) and
 * never trap. The hv_host of the last destroyed instance is kept as a stale handle. */
#include <hvplugin.h>
#include <stdint.h>
#include <stdlib.h>

struct hv_device {
    const hv_host_services *s;
    hv_host *h;
    int64_t result;
};

static hv_host *stale_host;

static int64_t run_case(hv_device *d, uint64_t n) {
    const hv_host_services *s = d->s;
    uint8_t buf[32] = { 0 };
    uint64_t forged[4] = { 0 };
    hv_host *bogus = (hv_host *)(void *)forged;
    switch (n) {
    case 1: return s->mem_read(d->h, 0, buf, SIZE_MAX);
    case 2: return s->mem_read(d->h, 0, buf, (size_t)1 << 63);
    case 3: return s->mem_read(d->h, UINT64_MAX - 7, buf, 16);
    case 4: return s->mem_write(d->h, 0, buf, SIZE_MAX);
    case 5: return s->mem_write(d->h, 0x1000, buf, (size_t)1 << 63);
    case 6: return s->mem_write(d->h, UINT64_MAX, buf, 2);
    case 7: return s->mem_read(bogus, 0, buf, 4);
    case 8: return stale_host ? s->mem_read(stale_host, 0, buf, 4) : 1;
    case 9: return s->mem_write((hv_host *)(uintptr_t)1, 0, buf, 4);
    case 10: return s->config_get(bogus, "anything") == NULL ? 0 : 1;
    case 11: return s->net_send((hv_net_port *)(void *)d->h, buf, 14);
    case 12: return s->mem_map(d->h, 0, SIZE_MAX, 1) == NULL ? 0 : 1;
    case 13: return s->mem_map(d->h, UINT64_MAX - 4095, 8192, 0) == NULL ? 0 : 1;
    case 14: { hv_disk_info info = { sizeof info, 0, 0, 0, 0 }; return s->disk_info((hv_disk *)(void *)forged, &info); }
    case 15: s->timer_arm(d->h, (hv_timer *)(void *)forged, 0); return 0;
    case 16: return s->mem_read(d->h, 0, buf, 4);   /* the control: a valid call succeeds */
    default: return 99;
    }
}

static uint64_t rd(hv_device *d, uint32_t bar, uint64_t off, uint32_t size) {
    (void)bar; (void)size;
    return off == 0x08 ? (uint64_t)d->result : 0;
}

static void wr(hv_device *d, uint32_t bar, uint64_t off, uint32_t size, uint64_t v) {
    (void)bar; (void)size;
    if (off == 0x00) d->result = run_case(d, v);
}

static int create(const hv_host_services *s, hv_host *h, hv_device **out) {
    hv_device *d = calloc(1, sizeof *d);
    if (!d) return HV_ENOMEM;
    d->s = s;
    d->h = h;
    hv_pci_identity id = { sizeof id, 0x1234, 0x0bad, 0, 0, 0xff0000, 1, 0, { 0, 0 } };
    hv_bar_desc bar = { sizeof bar, 0, HV_BAR_MMIO32, 0, 4096, rd, wr };
    int rc = s->pci_set_identity(h, &id);
    if (rc == HV_OK) rc = s->pci_add_bar(h, &bar);
    if (rc < 0) { free(d); return rc; }
    *out = d;
    return HV_OK;
}

static void destroy(hv_device *d) {
    stale_host = d->h;
    free(d);
}

static const hv_device_ops ops = { .struct_size = sizeof(hv_device_ops), .destroy = destroy };
static const hv_device_model model = {
    .struct_size = sizeof(hv_device_model), .kind = HV_DEVICE_KIND_OTHER, .name = "hostileprobe",
    .description = "calls host services with bad arguments", .create = create, .ops = &ops,
};
static const hv_device_model *const models[] = { &model };
static const hv_device_factory factory = { sizeof(hv_device_factory), HV_ABI_VERSION, 1, 0, models };
static const void *get_factory(const char *id) {
    const char *want = HV_FACTORY_DEVICE;
    for (int i = 0; want[i] || id[i]; i++) if (want[i] != id[i]) return NULL;
    return &factory;
}
static const char *const ids[] = { HV_FACTORY_DEVICE, NULL };
static const hv_plugin_entry entry = {
    .struct_size = sizeof(hv_plugin_entry), .abi_version = HV_ABI_VERSION,
    .id = "org.test.hostileprobe", .name = "Hostile Probe", .version = "1.0",
    .get_factory = get_factory, .factory_ids = ids,
};
const hv_plugin_entry *hv_plugin_entry_v1(void) { return &entry; }
