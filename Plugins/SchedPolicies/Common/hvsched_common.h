/*
 * hvsched_common.h — small helpers shared by the scheduler-policy plugins in
 * Plugins/SchedPolicies (header-only; every function is static). Depends on hvplugin.h
 * alone, like the plugins themselves.
 *
 * Topology as a policy sees it (see hvplugin.h, scheduler section): pCPUs are the pool's
 * slots 0..pcpu_count-1, the `pcpu` argument of pick_next and bit i of
 * hv_sched_params.affinity. The host tells a policy which slots share a core through
 * set_topology (1.3, hvs_topology_siblings); before that, or from a host without it,
 * slots 2k and 2k+1 are the two hyperthreads of one core (hvs_sibling).
 */
#ifndef HVSCHED_COMMON_H
#define HVSCHED_COMMON_H

#include "hvplugin.h"
#include <stddef.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HVS_HT_ANY      0u
#define HVS_HT_INTERNAL 1u
#define HVS_HT_NONE     2u

/* Every slice a policy returns is at least this (the host accepts 10 us..1 s). Small, so
 * that a pick just before a grid point does not run far past it. */
#define HVS_MIN_SLICE_NS 20000ull

/* v1 size of hv_sched_params: the fields this file reads. */
#define HVS_PARAMS_V1_SIZE ((uint32_t)(offsetof(hv_sched_params, affinity) + sizeof(uint64_t)))
/* v1 size of hv_sched_pick. */
#define HVS_PICK_V1_SIZE ((uint32_t)(offsetof(hv_sched_pick, slice_ns) + sizeof(uint64_t)))

/* Validated copy of hv_sched_params. */
typedef struct hvs_params {
    uint32_t shares;
    uint32_t min_pct;
    uint32_t max_pct;
    uint32_t htsharing;
    uint64_t affinity;
} hvs_params;

/* Checks `in` against the ABI's ranges: shares > 0, min 0..100, max 1..100,
 * min <= max, htsharing 0..2. Returns HV_OK or HV_EINVAL. */
static inline int hvs_params_read(const hv_sched_params *in, hvs_params *out) {
    if (!in || in->struct_size < HVS_PARAMS_V1_SIZE) return HV_EINVAL;
    if (in->shares == 0 || in->min_pct > 100 || in->max_pct < 1 || in->max_pct > 100) return HV_EINVAL;
    if (in->min_pct > in->max_pct || in->htsharing > HVS_HT_NONE) return HV_EINVAL;
    out->shares = in->shares;
    out->min_pct = in->min_pct;
    out->max_pct = in->max_pct;
    out->htsharing = in->htsharing;
    out->affinity = in->affinity;
    return HV_OK;
}

/* Whether affinity `mask` (0 = any) allows pool slot `pcpu`. */
static inline int hvs_allowed(uint64_t mask, uint32_t pcpu) {
    if (mask == 0) return 1;
    return pcpu < 64 && ((mask >> pcpu) & 1u);
}

/* The hyperthread sibling of slot `pcpu`, or -1. */
static inline int32_t hvs_sibling(uint32_t pcpu, uint32_t count) {
    uint32_t s = pcpu ^ 1u;
    return s < count ? (int32_t)s : -1;
}

/* Fills sib[i] (i < n) with the hyperthread sibling of slot i from the host's topology:
 * the lowest other slot on the same core, or -1. Entries the topology does not cover
 * keep their value; a malformed topology changes nothing. */
static inline void hvs_topology_siblings(const hv_sched_topology *t, int32_t *sib, uint32_t n) {
    if (!t || t->struct_size < sizeof(hv_sched_topology) || !t->pcpus) return;
    if (t->pcpu_size < offsetof(hv_sched_pcpu, smt_siblings) + sizeof(uint64_t)) return;
    const unsigned char *base = (const unsigned char *)t->pcpus;
    for (uint32_t i = 0; i < n && i < t->pcpu_count && i < 64; i++) {
        const hv_sched_pcpu *c = (const hv_sched_pcpu *)(const void *)(base + (size_t)i * t->pcpu_size);
        uint64_t m = c->smt_siblings & ~(1ull << i);
        if (n < 64) m &= (1ull << n) - 1;
        sib[i] = m ? (int32_t)__builtin_ctzll(m) : -1;
    }
}

/* A slice that ends on the next multiple of `quantum` after `now` (every pCPU of the
 * pool is then asked again at the same instants), at least HVS_MIN_SLICE_NS. */
static inline uint64_t hvs_grid_slice(uint64_t now, uint64_t quantum) {
    uint64_t end = (now / quantum + 1) * quantum;
    uint64_t s = end - now;
    return s < HVS_MIN_SLICE_NS ? HVS_MIN_SLICE_NS : s;
}

/* Writes a pick, honouring the host's struct_size. */
static inline void hvs_set_pick(hv_sched_pick *out, int32_t vcpu, uint64_t slice) {
    if (!out || out->struct_size < HVS_PICK_V1_SIZE) return;
    out->vcpu = vcpu;
    out->slice_ns = slice;
}

/* Virtual time: `ran` nanoseconds at `shares` cost ran * HVS_VT_SCALE / shares units.
 * The remainder is carried so that no time is lost to rounding. */
#define HVS_VT_SCALE 65536ull
static inline void hvs_vt_advance(uint64_t *vt, uint64_t *rem, uint64_t ran, uint32_t shares) {
    uint64_t num = ran * HVS_VT_SCALE + *rem;
    *vt += num / shares;
    *rem = num % shares;
}

/* Virtual-time length of `ns` nanoseconds for a vCPU with `shares`. */
static inline uint64_t hvs_vt_span(uint64_t ns, uint32_t shares) {
    return ns * HVS_VT_SCALE / shares;
}

/* Appends to buf (NUL-terminated, never overflowing). */
static inline void hvs_appendf(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static inline void hvs_appendf(char *buf, size_t len, const char *fmt, ...) {
    if (!buf || len == 0) return;
    size_t used = 0;
    while (used < len && buf[used]) used++;
    if (used >= len - 1) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + used, len - used, fmt, ap);
    va_end(ap);
}

/* The plugin boilerplate every scheduler-policy plugin shares: a factory offering the
 * descriptors in `list` (an array of const hv_sched_policy_desc *), and the entry point
 * hv_plugin_entry_v1 naming the plugin `id_` / `name_`. Use once, at file scope. */
#define HVS_PLUGIN(list, id_, name_)                                                    \
    static const hv_sched_factory hvs_factory = {                                       \
        .struct_size = sizeof(hv_sched_factory),                                        \
        .abi_version = HV_ABI_VERSION,                                                  \
        .policy_count = (uint32_t)(sizeof(list) / sizeof((list)[0])),                   \
        .policies = list,                                                               \
    };                                                                                  \
    static const void *hvs_get_factory(const char *id) {                                \
        return id && strcmp(id, HV_FACTORY_SCHED_POLICY) == 0 ? &hvs_factory : NULL;    \
    }                                                                                   \
    static const char *const hvs_factory_ids[] = { HV_FACTORY_SCHED_POLICY, NULL };     \
    static const hv_plugin_entry hvs_entry = {                                          \
        .struct_size = sizeof(hv_plugin_entry),                                         \
        .abi_version = HV_ABI_VERSION,                                                  \
        .id = id_,                                                                      \
        .name = name_,                                                                  \
        .version = "1.0.0",                                                             \
        .vendor = "hvhost",                                                             \
        .get_factory = hvs_get_factory,                                                 \
        .factory_ids = hvs_factory_ids,                                                 \
    };                                                                                  \
    const hv_plugin_entry *hv_plugin_entry_v1(void) { return &hvs_entry; }

#endif /* HVSCHED_COMMON_H */
