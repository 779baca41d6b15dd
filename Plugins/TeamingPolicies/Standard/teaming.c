/*
 * teaming.c — ESX's four NIC-teaming policies, in plain C99 against hvplugin.h.
 *
 *   failover  every frame on the up uplink with the lowest order (explicit failover order)
 *   portid    route by originating virtual port id: port id modulo the up uplinks (ESX's
 *             default; a VM stays on one uplink, VMs spread over the team)
 *   machash   source MAC hash modulo the up uplinks
 *   iphash    source XOR destination IP (IPv4, or IPv6 when the host's hv_frame_info
 *             carries it) modulo the up uplinks; non-IP frames hash like machash. Needs a
 *             far switch that treats the team as one link (a Linux bond, an EtherChannel).
 *
 * The up uplinks are kept sorted by order, so every policy answers the same way for the
 * same team state; a frame goes nowhere (-1) only when no uplink is up.
 */
#include <stdlib.h>
#include <string.h>
#include "hvplugin.h"
#include "include/hvteaming_standard.h"

#define TEAM_MAX 32

typedef enum { POLICY_FAILOVER, POLICY_PORTID, POLICY_MACHASH, POLICY_IPHASH } policy_kind;

typedef struct { uint32_t id, order; int up; } member;

struct hv_teaming_policy {
    policy_kind kind;
    member m[TEAM_MAX];
    uint32_t n;
    uint32_t up_ids[TEAM_MAX];   /* ids of the up members, by order */
    uint32_t nup;
};

static void refresh(hv_teaming_policy *p) {
    p->nup = 0;
    /* insertion by order among the up members (teams are small) */
    for (uint32_t i = 0; i < p->n; i++) {
        if (!p->m[i].up) continue;
        uint32_t at = p->nup++;
        while (at > 0) {
            const member *prev = NULL;
            for (uint32_t j = 0; j < p->n; j++) if (p->m[j].id == p->up_ids[at - 1]) prev = &p->m[j];
            if (prev->order <= p->m[i].order) break;
            p->up_ids[at] = p->up_ids[at - 1];
            at--;
        }
        p->up_ids[at] = p->m[i].id;
    }
}

static int init_kind(hv_teaming_policy **out, policy_kind kind) {
    hv_teaming_policy *p = calloc(1, sizeof *p);
    if (!p) return HV_ENOMEM;
    p->kind = kind;
    *out = p;
    return HV_OK;
}
static int init_failover(hv_teaming_policy **out) { return init_kind(out, POLICY_FAILOVER); }
static int init_portid(hv_teaming_policy **out) { return init_kind(out, POLICY_PORTID); }
static int init_machash(hv_teaming_policy **out) { return init_kind(out, POLICY_MACHASH); }
static int init_iphash(hv_teaming_policy **out) { return init_kind(out, POLICY_IPHASH); }

static void team_deinit(hv_teaming_policy *p) { free(p); }

static int team_uplink_add(hv_teaming_policy *p, uint32_t uplink, uint32_t order) {
    if (p->n == TEAM_MAX) return HV_ENOSPC;
    for (uint32_t i = 0; i < p->n; i++) if (p->m[i].id == uplink) return HV_EEXIST;
    p->m[p->n++] = (member){ uplink, order, 0 };
    return HV_OK;
}

static void team_uplink_remove(hv_teaming_policy *p, uint32_t uplink) {
    for (uint32_t i = 0; i < p->n; i++) {
        if (p->m[i].id != uplink) continue;
        p->m[i] = p->m[--p->n];
        refresh(p);
        return;
    }
}

static void team_link_changed(hv_teaming_policy *p, uint32_t uplink, int up) {
    for (uint32_t i = 0; i < p->n; i++) if (p->m[i].id == uplink) p->m[i].up = up != 0;
    refresh(p);
}

static uint32_t mac_hash(const uint8_t mac[6]) {
    uint32_t h = 2166136261u;   /* FNV-1a */
    for (int i = 0; i < 6; i++) h = (h ^ mac[i]) * 16777619u;
    return h;
}

static uint32_t ip_hash(const hv_frame_info *f) {
    if (f->ethertype == 0x0800 && (f->src_ip || f->dst_ip)) return f->src_ip ^ f->dst_ip;
    if (f->struct_size >= offsetof(hv_frame_info, dst_ip6) + 16 && f->ethertype == 0x86DD) {
        uint32_t h = 0;
        for (int i = 0; i < 16; i += 4) {
            uint32_t a, b;
            memcpy(&a, f->src_ip6 + i, 4);
            memcpy(&b, f->dst_ip6 + i, 4);
            h ^= a ^ b;
        }
        return h;
    }
    return mac_hash(f->src_mac);
}

static int32_t team_select(hv_teaming_policy *p, const hv_frame_info *f) {
    if (p->nup == 0) return -1;
    switch (p->kind) {
    case POLICY_FAILOVER: return (int32_t)p->up_ids[0];
    case POLICY_PORTID:   return (int32_t)p->up_ids[f->source_port % p->nup];
    case POLICY_MACHASH:  return (int32_t)p->up_ids[mac_hash(f->src_mac) % p->nup];
    case POLICY_IPHASH:   return (int32_t)p->up_ids[ip_hash(f) % p->nup];
    }
    return -1;
}

static int team_should_failback(hv_teaming_policy *p, uint32_t uplink) {
    (void)p; (void)uplink;
    return 1;
}

#define TEAM_OPS(init_fn)                                   \
    {                                                       \
        .struct_size = sizeof(hv_teaming_ops),              \
        .init = init_fn,                                    \
        .deinit = team_deinit,                              \
        .uplink_add = team_uplink_add,                      \
        .uplink_remove = team_uplink_remove,                \
        .link_changed = team_link_changed,                  \
        .select_uplink = team_select,                       \
        .should_failback = team_should_failback,            \
    }

static const hv_teaming_ops failover_ops = TEAM_OPS(init_failover);
static const hv_teaming_ops portid_ops = TEAM_OPS(init_portid);
static const hv_teaming_ops machash_ops = TEAM_OPS(init_machash);
static const hv_teaming_ops iphash_ops = TEAM_OPS(init_iphash);

static const hv_teaming_policy_desc failover_desc = {
    sizeof(hv_teaming_policy_desc), 0, "failover", "explicit failover order: the first up uplink carries everything", &failover_ops };
static const hv_teaming_policy_desc portid_desc = {
    sizeof(hv_teaming_policy_desc), 0, "portid", "route by originating virtual port id (ESX default)", &portid_ops };
static const hv_teaming_policy_desc machash_desc = {
    sizeof(hv_teaming_policy_desc), 0, "machash", "route by source MAC hash", &machash_ops };
static const hv_teaming_policy_desc iphash_desc = {
    sizeof(hv_teaming_policy_desc), 0, "iphash", "route by IP hash (IPv4/IPv6 source xor destination); needs a bonded far switch", &iphash_ops };

static const hv_teaming_policy_desc *const team_list[] = { &failover_desc, &portid_desc, &machash_desc, &iphash_desc };

static const hv_teaming_factory team_factory = {
    .struct_size = sizeof(hv_teaming_factory),
    .abi_version = HV_ABI_VERSION,
    .policy_count = sizeof(team_list) / sizeof(team_list[0]),
    .policies = team_list,
};

static const void *team_get_factory(const char *id) {
    return id && strcmp(id, HV_FACTORY_TEAMING) == 0 ? &team_factory : NULL;
}

static const char *const team_factory_ids[] = { HV_FACTORY_TEAMING, NULL };

static const hv_plugin_entry team_entry = {
    .struct_size = sizeof(hv_plugin_entry),
    .abi_version = HV_ABI_VERSION,
    .id = "org.hvhost.teaming.standard",
    .name = "Standard NIC-teaming policies",
    .version = "1.0.0",
    .vendor = "hvhost",
    .get_factory = team_get_factory,
    .factory_ids = team_factory_ids,
};

const hv_plugin_entry *hv_plugin_entry_v1(void) { return &team_entry; }
