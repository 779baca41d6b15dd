/*
 * roundrobin.c — the baseline policy ("roundrobin"), in plain C99 against hvplugin.h.
 *
 * One FIFO run queue per pool. A vCPU enters at the tail when it wakes and when its
 * slice ends (pick_next for its pCPU) or it yields; a pCPU takes the first vCPU in the
 * queue that its affinity allows there, for a fixed 10 ms slice. Shares, min, max and
 * htsharing are ignored; affinity is honoured (a vCPU is never picked for a pCPU
 * outside its mask). With nothing to run, the pCPU idles until the next wake (or, as a
 * safety net, 10 ms).
 */
#include "hvplugin.h"
#include "../Common/hvsched_common.h"
#include "include/hvsched_roundrobin.h"

#define RR_SLICE_NS 10000000ull   /* default of the live tunable slice_ms */

typedef struct rr_vcpu {
    int32_t id;
    int32_t vm;
    uint64_t affinity;
    int runnable;
    int32_t on_pcpu;
    int queued;
    uint64_t seq;           /* queue position: smaller = nearer the head */
    uint64_t total;
} rr_vcpu;

struct hv_sched_policy {
    uint32_t npcpu;
    uint64_t slice_ns;      /* tunable slice_ms */
    rr_vcpu *v;
    uint32_t nv, cap;
    int32_t *cur;
    uint64_t next_seq;
    uint64_t picks, idle_picks;
};

static rr_vcpu *rr_find(hv_sched_policy *p, int32_t id) {
    for (uint32_t i = 0; i < p->nv; i++)
        if (p->v[i].id == id) return &p->v[i];
    return NULL;
}

static void rr_enqueue(hv_sched_policy *p, rr_vcpu *v) {
    v->queued = 1;
    v->seq = p->next_seq++;
}

static void rr_release(hv_sched_policy *p, rr_vcpu *v) {
    if (v->on_pcpu >= 0 && (uint32_t)v->on_pcpu < p->npcpu && p->cur[v->on_pcpu] == v->id)
        p->cur[v->on_pcpu] = -1;
    v->on_pcpu = -1;
}

static int rr_init(hv_sched_policy **out, uint32_t pcpu_count) {
    if (!out || pcpu_count == 0 || pcpu_count > 4096) return HV_EINVAL;
    hv_sched_policy *p = calloc(1, sizeof *p);
    if (!p) return HV_ENOMEM;
    p->npcpu = pcpu_count;
    p->slice_ns = RR_SLICE_NS;
    p->cur = malloc(sizeof(int32_t) * pcpu_count);
    if (!p->cur) { free(p); return HV_ENOMEM; }
    for (uint32_t i = 0; i < pcpu_count; i++) p->cur[i] = -1;
    *out = p;
    return HV_OK;
}

static void rr_deinit(hv_sched_policy *p) {
    if (!p) return;
    free(p->v); free(p->cur); free(p);
}

static int rr_vcpu_add(hv_sched_policy *p, int32_t vcpu, int32_t vm, const hv_sched_params *params) {
    hvs_params prm;
    int rc = hvs_params_read(params, &prm);
    if (rc < 0) return rc;
    if (vcpu < 0) return HV_EINVAL;
    if (rr_find(p, vcpu)) return HV_EEXIST;
    if (p->nv == p->cap) {
        uint32_t cap = p->cap ? p->cap * 2 : 16;
        rr_vcpu *nv = realloc(p->v, sizeof(rr_vcpu) * cap);
        if (!nv) return HV_ENOMEM;
        p->v = nv;
        p->cap = cap;
    }
    rr_vcpu *v = &p->v[p->nv++];
    memset(v, 0, sizeof *v);
    v->id = vcpu;
    v->vm = vm;
    v->affinity = prm.affinity;
    v->on_pcpu = -1;
    return HV_OK;
}

static void rr_vcpu_remove(hv_sched_policy *p, int32_t vcpu) {
    rr_vcpu *v = rr_find(p, vcpu);
    if (!v) return;
    rr_release(p, v);
    *v = p->v[--p->nv];
}

static void rr_wake(hv_sched_policy *p, int32_t vcpu, uint64_t now) {
    (void)now;
    rr_vcpu *v = rr_find(p, vcpu);
    if (!v || v->runnable) return;
    v->runnable = 1;
    if (v->on_pcpu < 0) rr_enqueue(p, v);
}

static void rr_block(hv_sched_policy *p, int32_t vcpu, uint64_t now) {
    (void)now;
    rr_vcpu *v = rr_find(p, vcpu);
    if (!v) return;
    v->runnable = 0;
    v->queued = 0;
    rr_release(p, v);
}

static void rr_yield(hv_sched_policy *p, int32_t vcpu, uint64_t now) {
    (void)now;
    rr_vcpu *v = rr_find(p, vcpu);
    if (!v) return;
    rr_release(p, v);
    if (v->runnable) rr_enqueue(p, v);
}

static void rr_pick_next(hv_sched_policy *p, uint32_t pcpu, uint64_t now, hv_sched_pick *out) {
    (void)now;
    hvs_set_pick(out, -1, 0);
    if (pcpu >= p->npcpu) return;
    p->picks++;
    if (p->cur[pcpu] >= 0) {
        rr_vcpu *old = rr_find(p, p->cur[pcpu]);
        p->cur[pcpu] = -1;
        if (old && old->on_pcpu == (int32_t)pcpu) {
            old->on_pcpu = -1;
            if (old->runnable) rr_enqueue(p, old);
        }
    }
    rr_vcpu *pick = NULL;
    for (uint32_t i = 0; i < p->nv; i++) {
        rr_vcpu *c = &p->v[i];
        if (!c->queued || !c->runnable || c->on_pcpu >= 0 || !hvs_allowed(c->affinity, pcpu)) continue;
        if (!pick || c->seq < pick->seq) pick = c;
    }
    if (!pick) {
        p->idle_picks++;
        hvs_set_pick(out, -1, 0);      /* ask again on the next wake */
        return;
    }
    pick->queued = 0;
    pick->on_pcpu = (int32_t)pcpu;
    p->cur[pcpu] = pick->id;
    hvs_set_pick(out, pick->id, p->slice_ns);
}

static void rr_account(hv_sched_policy *p, int32_t vcpu, uint64_t ran_ns) {
    rr_vcpu *v = rr_find(p, vcpu);
    if (v) v->total += ran_ns;
}

static int rr_set_params(hv_sched_policy *p, int32_t vcpu, const hv_sched_params *params) {
    hvs_params prm;
    int rc = hvs_params_read(params, &prm);
    if (rc < 0) return rc;
    rr_vcpu *v = rr_find(p, vcpu);
    if (!v) return HV_ENOENT;
    v->affinity = prm.affinity;
    return HV_OK;
}

static void rr_dump(hv_sched_policy *p, char *buf, size_t len) {
    if (!buf || len == 0) return;
    buf[0] = 0;
    uint32_t queued = 0;
    for (uint32_t i = 0; i < p->nv; i++) queued += p->v[i].queued != 0;
    hvs_appendf(buf, len, "roundrobin: %u vCPUs, %u queued, slice %llu ms, picks %llu (idle %llu)",
                p->nv, queued, (unsigned long long)(p->slice_ns / 1000000ull), (unsigned long long)p->picks,
                (unsigned long long)p->idle_picks);
}

/* [sched] Tunable: the slice every pick gets from now on. */
static int32_t rr_set_slice(hv_sched_policy *p, uint32_t ms) {
    if (ms < 1 || ms > 1000) return HV_EINVAL;
    p->slice_ns = (uint64_t)ms * 1000000ull;
    return HV_OK;
}

/* [sched] The run queue in order, then the running vCPUs. */
static void rr_state(hv_sched_policy *p, char *buf, size_t len) {
    if (!buf || len == 0) return;
    rr_dump(p, buf, len);
    for (uint32_t i = 0; i < p->nv; i++)
        hvs_appendf(buf, len, "\nvcpu %d %s pcpu %d total %llu", p->v[i].id,
                    p->v[i].on_pcpu >= 0 ? "running" : p->v[i].queued ? "queued" : "blocked", p->v[i].on_pcpu,
                    (unsigned long long)p->v[i].total);
}

static const hv_config_key rr_keys[] = {
    { sizeof(hv_config_key), HV_KEY_UINT, "slice_ms", 1, 1000, NULL, "10", "the slice of every pick, in ms" },
};
static const uint32_t rr_arg_u32[] = { HV_ARG_U32 };
static const uint32_t rr_arg_text[] = { HV_ARG_TEXT_OUT };
static const hv_command rr_commands[] = {
    { sizeof(hv_command), HV_COMMAND_TUNABLE, "slice_ms", "set the slice", (void (*)(void))rr_set_slice,
      HV_ARG_I32, 1, rr_arg_u32, NULL },
    { sizeof(hv_command), 0, "state", "the summary and every vCPU's state", (void (*)(void))rr_state,
      HV_ARG_VOID, 1, rr_arg_text, NULL },
};

static const hv_sched_ops rr_ops = {
    .struct_size = sizeof(hv_sched_ops),
    .init = rr_init,
    .deinit = rr_deinit,
    .vcpu_add = rr_vcpu_add,
    .vcpu_remove = rr_vcpu_remove,
    .wake = rr_wake,
    .block = rr_block,
    .yield = rr_yield,
    .pick_next = rr_pick_next,
    .account = rr_account,
    .set_params = rr_set_params,
    .dump = rr_dump,
};

static const hv_sched_policy_desc rr_desc = {
    .struct_size = sizeof(hv_sched_policy_desc),
    .name = "roundrobin",
    .description = "FIFO run queue per pool, one slice for all (10 ms, tunable), affinity only (baseline)",
    .ops = &rr_ops,
    .key_count = 1,
    .command_count = 2,
    .keys = rr_keys,
    .commands = rr_commands,
};

static const hv_sched_policy_desc *const rr_list[] = { &rr_desc };

HVS_PLUGIN(rr_list, "org.hvhost.sched.roundrobin", "Round-robin scheduler")
