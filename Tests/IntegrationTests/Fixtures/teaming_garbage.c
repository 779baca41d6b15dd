/* A teaming policy that answers uplink 7 of a two-uplink team: the host must replace it
 * with its built-in failover policy and say why. */
#include <stdlib.h>
#include <string.h>
#include "hvplugin.h"

struct hv_teaming_policy { int unused; };

static int g_init(hv_teaming_policy **out) { *out = calloc(1, sizeof **out); return *out ? HV_OK : HV_ENOMEM; }
static void g_deinit(hv_teaming_policy *p) { free(p); }
static int g_add(hv_teaming_policy *p, uint32_t u, uint32_t o) { (void)p; (void)u; (void)o; return HV_OK; }
static void g_remove(hv_teaming_policy *p, uint32_t u) { (void)p; (void)u; }
static void g_link(hv_teaming_policy *p, uint32_t u, int up) { (void)p; (void)u; (void)up; }
static int32_t g_select(hv_teaming_policy *p, const hv_frame_info *f) { (void)p; (void)f; return 7; }

static const hv_teaming_ops g_ops = {
    .struct_size = sizeof(hv_teaming_ops), .init = g_init, .deinit = g_deinit, .uplink_add = g_add,
    .uplink_remove = g_remove, .link_changed = g_link, .select_uplink = g_select,
};
static const hv_teaming_policy_desc g_desc = { sizeof(hv_teaming_policy_desc), 0, "garbage", "answers uplink 7", &g_ops };
static const hv_teaming_policy_desc *const g_list[] = { &g_desc };
static const hv_teaming_factory g_factory = {
    .struct_size = sizeof(hv_teaming_factory), .abi_version = HV_ABI_VERSION, .policy_count = 1, .policies = g_list,
};
static const void *g_get(const char *id) { return id && strcmp(id, HV_FACTORY_TEAMING) == 0 ? &g_factory : NULL; }
static const char *const g_ids[] = { HV_FACTORY_TEAMING, NULL };
static const hv_plugin_entry g_entry = {
    .struct_size = sizeof(hv_plugin_entry), .abi_version = HV_ABI_VERSION, .id = "test.teaming.garbage",
    .name = "garbage teaming", .version = "1.0.0", .get_factory = g_get, .factory_ids = g_ids,
};
const hv_plugin_entry *hv_plugin_entry_v1(void) { return &g_entry; }
