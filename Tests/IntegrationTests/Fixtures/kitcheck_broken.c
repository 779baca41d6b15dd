/* A device model ("broken") and a scheduler policy ("broken-policy") that each break one
 * rule of `hvhost plugin-check`, chosen at compile time (PluginKitTests builds one library
 * per rule):
 *   BREAK_CREATE     create fails
 *   BREAK_DECL       a key whose default is not of its type (refused when loading)
 *   BREAK_RESET      reset leaves register 0 as the guest wrote it
 *   BREAK_STATE      load_state ignores a saved field
 *   BREAK_LEAK       every instance leaks a file descriptor
 *   BREAK_CRASH      a guest write of 0x42 to register 3 dereferences NULL
 *   BREAK_HANG       reading register 2 spins forever once register 1 holds 0x55
 *   BREAK_POLICY     the policy's pick names a vCPU that is not in the pool
 * Without a BREAK_* it is a conforming pair. */
#include "hvplugin.h"
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct hv_device { const hv_host_services *hs; hv_host *host; uint32_t reg[4]; int fd; };

static uint64_t bar_read(hv_device *d, uint32_t bar, uint64_t off, uint32_t size) {
    (void)bar; (void)size;
    uint32_t i = (uint32_t)(off / 4) & 3;
#ifdef BREAK_HANG
    if (i == 2) { volatile uint32_t *r = d->reg; while (r[1] == 0x55) { } }
#endif
    return d->reg[i];
}

static void bar_write(hv_device *d, uint32_t bar, uint64_t off, uint32_t size, uint64_t v) {
    (void)bar; (void)size;
    uint32_t i = (uint32_t)(off / 4) & 3;
#ifdef BREAK_CRASH
    if (i == 3 && (v & 0xff) == 0x42) { volatile int *p = NULL; *p = 1; }
#endif
    d->reg[i] = (uint32_t)v;
}

static int create(const hv_host_services *hs, hv_host *host, hv_device **out) {
#ifdef BREAK_CREATE
    (void)hs; (void)host; (void)out; (void)bar_read; (void)bar_write;
    return HV_EINVAL;
#else
    hv_device *d = calloc(1, sizeof *d);
    if (!d) return HV_ENOMEM;
    d->hs = hs; d->host = host; d->fd = -1;
    hv_pci_identity id = { sizeof id, 0x1b36, 0x00ff, 0, 0, 0xff0000, 0, 0, {0, 0} };
    hv_bar_desc bar = { sizeof bar, 0, HV_BAR_MMIO32, 0, 16, bar_read, bar_write };
    int r = hs->pci_set_identity(host, &id);
    if (r >= 0) r = hs->pci_add_bar(host, &bar);
    if (r < 0) { free(d); return r; }
#ifdef BREAK_LEAK
    d->fd = open("/dev/null", O_RDONLY);
#endif
    *out = d;
    return HV_OK;
#endif
}

static void reset(hv_device *d) {
#ifdef BREAK_RESET
    memset(&d->reg[1], 0, sizeof d->reg - sizeof d->reg[0]);
#else
    memset(d->reg, 0, sizeof d->reg);
#endif
}

static int save_state(hv_device *d, hv_state_writer *w) {
    int r = 0;
    for (int i = 0; i < 4 && r >= 0; i++) {
        char name[8] = { 'r', 'e', 'g', (char)('0' + i), 0 };
        r = d->hs->state_put(w, name, HV_STATE_U32, &d->reg[i], 4);
    }
    return r;
}

static int load_state(hv_device *d, hv_state_reader *r, uint32_t version) {
    (void)version;
#ifdef BREAK_STATE
    int n = 3;
#else
    int n = 4;
#endif
    for (int i = 0; i < n; i++) {
        char name[8] = { 'r', 'e', 'g', (char)('0' + i), 0 };
        int rc = d->hs->state_get(r, name, HV_STATE_U32, &d->reg[i], 4);
        if (rc < 0) return rc;
    }
    return HV_OK;
}

static void destroy(hv_device *d) {
#ifndef BREAK_LEAK
    if (d->fd >= 0) close(d->fd);
#endif
    free(d);
}

static const hv_config_key keys[] = {
#ifdef BREAK_DECL
    { sizeof(hv_config_key), HV_KEY_UINT, "depth", 1, 64, NULL, "deep", "queue depth" },
#else
    { sizeof(hv_config_key), HV_KEY_UINT, "depth", 1, 64, NULL, "8", "queue depth" },
#endif
};

static const hv_device_ops ops = { sizeof ops, NULL, reset, NULL, NULL, save_state, load_state, destroy };
static const hv_device_model model = {
    sizeof model, HV_DEVICE_KIND_OTHER, "broken", "breaks one plugin-check rule", 0, 1, create, &ops,
    1, 0, keys, NULL,
};
static const hv_device_model *const models[] = { &model };
static const hv_device_factory dfactory = { sizeof dfactory, HV_ABI_VERSION, 1, 0, models };

/* The policy: round robin over an array, with BREAK_POLICY a pick of vCPU 4242. */
struct hv_sched_policy { int32_t v[64]; int run[64]; uint32_t n, next; };
static int p_init(hv_sched_policy **o, uint32_t n) { (void)n; *o = calloc(1, sizeof **o); return *o ? HV_OK : HV_ENOMEM; }
static void p_deinit(hv_sched_policy *p) { free(p); }
static int p_add(hv_sched_policy *p, int32_t id, int32_t vm, const hv_sched_params *x) {
    (void)vm; (void)x; if (p->n == 64) return HV_ENOSPC; p->v[p->n] = id; p->run[p->n++] = 0; return HV_OK;
}
static void p_remove(hv_sched_policy *p, int32_t id) {
    for (uint32_t i = 0; i < p->n; i++) if (p->v[i] == id) { p->v[i] = p->v[--p->n]; p->run[i] = p->run[p->n]; return; }
}
static void p_set(hv_sched_policy *p, int32_t id, int on) { for (uint32_t i = 0; i < p->n; i++) if (p->v[i] == id) p->run[i] = on; }
static void p_wake(hv_sched_policy *p, int32_t id, uint64_t t) { (void)t; p_set(p, id, 1); }
static void p_block(hv_sched_policy *p, int32_t id, uint64_t t) { (void)t; p_set(p, id, 0); }
static void p_pick(hv_sched_policy *p, uint32_t pcpu, uint64_t t, hv_sched_pick *out) {
    (void)pcpu; (void)t;
    out->vcpu = -1; out->slice_ns = 0;
#ifdef BREAK_POLICY
    out->vcpu = 4242; out->slice_ns = 1000000; return;
#endif
    (void)p;
}
static void p_account(hv_sched_policy *p, int32_t id, uint64_t ns) { (void)p; (void)id; (void)ns; }
static int p_params(hv_sched_policy *p, int32_t id, const hv_sched_params *x) { (void)p; (void)id; (void)x; return HV_OK; }
static const hv_sched_ops sops = {
    sizeof sops, p_init, p_deinit, p_add, p_remove, p_wake, p_block, NULL, p_pick, p_account, p_params, NULL, NULL,
};
static const hv_sched_policy_desc pdesc = { sizeof pdesc, 0, "broken-policy", "idles, or breaks the pick rule", &sops, 0, 0, NULL, NULL };
static const hv_sched_policy_desc *const policies[] = { &pdesc };
static const hv_sched_factory sfactory = { sizeof sfactory, HV_ABI_VERSION, 1, 0, policies };

static const void *get_factory(const char *id) {
    if (strcmp(id, HV_FACTORY_DEVICE) == 0) return &dfactory;
    if (strcmp(id, HV_FACTORY_SCHED_POLICY) == 0) return &sfactory;
    return NULL;
}
static const char *const ids[] = { HV_FACTORY_DEVICE, HV_FACTORY_SCHED_POLICY, NULL };
static const hv_plugin_entry entry = {
    sizeof entry, HV_ABI_VERSION, "org.hvproject.test.kitcheck", "kitcheck", "1.0", NULL, NULL, NULL,
    get_factory, ids, NULL,
};
__attribute__((visibility("default"))) const hv_plugin_entry *hv_plugin_entry_v1(void) { return &entry; }
