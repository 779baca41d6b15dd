/* A PCI device that saves an empty state: it can be suspended and migrated, and a
 * host without this plugin must refuse to receive a VM that has it. */
#include "hvplugin.h"

static int anchor;

static int create(const hv_host_services *s, hv_host *h, hv_device **out) {
    hv_pci_identity id = { sizeof id, 0x1234, 0x5e56, 0, 0, 0xff0000, 1, 0, {0, 0} };
    int rc = s->pci_set_identity(h, &id);
    if (rc < 0) return rc;
    *out = (hv_device *)(void *)&anchor;
    return HV_OK;
}

static void destroy(hv_device *d) { (void)d; }
static int save_state(hv_device *d, hv_state_writer *w) { (void)d; (void)w; return HV_OK; }
static int load_state(hv_device *d, hv_state_reader *r, uint32_t version) { (void)d; (void)r; (void)version; return HV_OK; }

static const hv_device_ops ops = { .struct_size = sizeof(hv_device_ops), .destroy = destroy,
                                  .save_state = save_state, .load_state = load_state };
static const hv_device_model model = {
    .struct_size = sizeof(hv_device_model), .kind = HV_DEVICE_KIND_OTHER, .name = "stateful",
    .description = "saves an empty state", .create = create, .ops = &ops, .state_version = 1,
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
    .id = "org.test.stateful", .name = "Stateful Device", .version = "1.0",
    .get_factory = get_factory, .factory_ids = ids,
};
const hv_plugin_entry *hv_plugin_entry_v1(void) { return &entry; }
