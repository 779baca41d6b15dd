/* Built against a future ABI major version: the host must refuse it by name. */
#include "hvplugin.h"

static const void *get_factory(const char *id) { (void)id; return 0; }
static const char *const ids[] = { HV_FACTORY_DEVICE, 0 };
static const hv_plugin_entry entry = {
    .struct_size = sizeof(hv_plugin_entry), .abi_version = (2u << 16),
    .id = "org.test.future", .name = "From the future", .version = "9.0",
    .get_factory = get_factory, .factory_ids = ids,
};
const hv_plugin_entry *hv_plugin_entry_v1(void) { return &entry; }
