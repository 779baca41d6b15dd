/* A device whose BAR1 collides with the upper half of its 64-bit BAR0: the host must
 * refuse the BAR, and the VM that uses this model must not power on. */
#include "hvplugin.h"

static uint64_t bar_read(hv_device *d, uint32_t bar, uint64_t off, uint32_t size) {
    (void)d; (void)bar; (void)off; (void)size;
    return 0;
}

static int create(const hv_host_services *s, hv_host *h, hv_device **out) {
    hv_pci_identity id = { sizeof id, 0x1234, 0x0bad, 0, 0, 0xff0000, 1, 1, {0, 0} };
    int rc = s->pci_set_identity(h, &id);
    if (rc < 0) return rc;
    hv_bar_desc bar0 = { sizeof bar0, 0, HV_BAR_MMIO64, 0, 0x1000, bar_read, 0 };
    rc = s->pci_add_bar(h, &bar0);
    if (rc < 0) return rc;
    hv_bar_desc bar1 = { sizeof bar1, 1, HV_BAR_IO, 0, 0x20, bar_read, 0 };
    rc = s->pci_add_bar(h, &bar1);
    if (rc < 0) return rc;
    *out = (hv_device *)(void *)&create;
    return HV_OK;
}

static void destroy(hv_device *d) { (void)d; }

static const hv_device_ops ops = { .struct_size = sizeof(hv_device_ops), .destroy = destroy };
static const hv_device_model model = {
    .struct_size = sizeof(hv_device_model), .kind = HV_DEVICE_KIND_OTHER, .name = "overlap",
    .description = "declares overlapping BARs", .create = create, .ops = &ops,
};
static const hv_device_model *const models[] = { &model };
static const hv_device_factory factory = {
    sizeof(hv_device_factory), HV_ABI_VERSION, 1, 0, models,
};
static const void *get_factory(const char *id) {
    const char *want = HV_FACTORY_DEVICE;
    for (int i = 0; want[i] || id[i]; i++) if (want[i] != id[i]) return 0;
    return &factory;
}
static const char *const ids[] = { HV_FACTORY_DEVICE, 0 };
static const hv_plugin_entry entry = {
    .struct_size = sizeof(hv_plugin_entry), .abi_version = HV_ABI_VERSION,
    .id = "org.test.overlap", .name = "Overlapping BARs", .version = "1.0",
    .get_factory = get_factory, .factory_ids = ids,
};
const hv_plugin_entry *hv_plugin_entry_v1(void) { return &entry; }
