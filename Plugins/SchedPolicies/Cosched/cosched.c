/*
 * cosched.c — co-scheduling of 2-vCPU VMs, two policies in one plugin, plain C99
 * against hvplugin.h:
 *
 *   cosched-strict   ESX 2.x: the skew between a VM's two vCPUs is tracked; when it
 *                    reaches the threshold the whole VM is co-stopped, and it only runs
 *                    again when both vCPUs are co-started together on two pCPUs.
 *   cosched-relaxed  ESX 3.x style: only the leading vCPU is held back once it is a
 *                    threshold ahead; the lagging one runs alone until it catches up.
 *
 * Skew. For a VM with vCPUs a and b, `lead` grows while a runs and b is runnable but
 * not running, and shrinks in the opposite case (nanoseconds of the pool clock, from
 * the `now` of every op). A vCPU that halts is not lagging: when either vCPU blocks the
 * skew is forgotten. Strict mode also forgets it whenever both run (a co-start).
 * Threshold: 5 ms. A vCPU of a 2-vCPU VM never gets a slice longer than what keeps the
 * skew within the threshold, so the skew stays <= threshold without preemption.
 *
 * Order. Among eligible vCPUs, the one with the least virtual time by shares goes
 * first (stride scheduling, as in propshare; shares only — min, max and htsharing are
 * ignored by this policy). Slices end on a pool-wide 5 ms grid. At the first pick of
 * each grid interval the policy plans every pCPU whose slice is over: it takes
 * vCPUs in virtual-time order, a co-stopped VM only if both its vCPUs fit on two pCPUs
 * (co-start), and assigns pCPUs (a vCPU still running on a re-decided pCPU keeps it;
 * then the most constrained by affinity first, preferring the last pCPU). The other
 * pCPUs read their part of the plan when they ask; picks between grid points (after a
 * vCPU blocks) choose greedily under the same rules but never co-start.
 *
 * Affinity is honoured everywhere. VMs with more than two vCPUs are refused
 * (vcpu_add returns HV_ENOTSUP): ESX 2.x co-scheduled 2-way vSMP only.
 */
#include "hvplugin.h"
#include "../Common/hvsched_common.h"
#include "include/hvsched_cosched.h"

#define CS_QUANTUM_NS 5000000ll    /* slice grid */
#define CS_SKEW_NS    5000000ll    /* skew threshold: default of the live tunable skew_us */
#define CS_DUE_NS      500000ull   /* a pCPU whose slice ends this soon is re-planned */
#define CS_MIN        ((int64_t)HVS_MIN_SLICE_NS)

typedef struct cs_vcpu {
    int32_t id;
    int32_t vm;
    uint32_t shares;
    uint64_t affinity;
    int runnable;
    int32_t on_pcpu;
    int32_t last_pcpu;
    uint64_t vt, vt_rem;
    uint64_t total;
} cs_vcpu;

typedef struct cs_group {          /* one VM */
    int32_t vm;
    int32_t member[2];             /* vCPU ids; member[1] = -1 for a 1-vCPU VM */
    int64_t lead;                  /* progress of member[0] minus member[1], ns */
    int costopped;                 /* strict: waiting for a co-start */
    uint64_t costops, costarts, holds;
    int64_t max_skew;
} cs_group;

struct hv_sched_policy {
    int strict;
    int64_t skew_ns;        /* tunable skew_us */
    uint32_t npcpu;
    cs_vcpu *v;
    uint32_t nv, vcap;
    cs_group *g;
    uint32_t ng, gcap;
    int32_t *cur;
    uint64_t *slice_end;
    uint64_t last_now;
    uint64_t gvt;
    /* The plan of the current grid interval. */
    uint64_t plan_epoch;
    int32_t *plan_vcpu;            /* per pCPU, -1 idle */
    uint8_t *plan_co;              /* per pCPU: the planned vCPU's sibling runs alongside */
    uint8_t *plan_open;            /* per pCPU: planned and not yet asked */
    uint8_t *plan_forced;          /* per pCPU: a co-start partner, not chosen by vt */
    /* Scratch for planning. */
    int32_t *order, *sel, *assign;
    uint8_t *freep;
    uint32_t scratch_cap;
    uint64_t picks, idle_picks, plans;
};

/* ------------------------------------------------------------------------ */

static cs_vcpu *cs_find(hv_sched_policy *p, int32_t id) {
    if (id < 0) return NULL;
    for (uint32_t i = 0; i < p->nv; i++)
        if (p->v[i].id == id) return &p->v[i];
    return NULL;
}

static cs_group *cs_group_of(hv_sched_policy *p, int32_t vm) {
    for (uint32_t i = 0; i < p->ng; i++)
        if (p->g[i].vm == vm) return &p->g[i];
    return NULL;
}

static cs_vcpu *cs_sibling(hv_sched_policy *p, const cs_vcpu *v, cs_group **gout) {
    cs_group *g = cs_group_of(p, v->vm);
    if (gout) *gout = g;
    if (!g || g->member[1] < 0) return NULL;
    return cs_find(p, g->member[0] == v->id ? g->member[1] : g->member[0]);
}

/* v's signed lead over its sibling. */
static int64_t cs_lead_of(const cs_group *g, const cs_vcpu *v) {
    return g->member[0] == v->id ? g->lead : -g->lead;
}

static int64_t cs_abs(int64_t x) { return x < 0 ? -x : x; }

/* Running and not at the end of its slice: the host asks pCPUs one after the other at a
 * grid point, so a vCPU whose slice is over still looks "running" until its own pCPU is
 * asked. It must not count as running alongside its sibling. */
static int cs_running_on(hv_sched_policy *p, const cs_vcpu *v) {
    return v->on_pcpu >= 0 && p->slice_end[v->on_pcpu] > p->last_now;
}

/* Whether a's and b's vCPUs can run at the same time: two distinct pCPUs their affinity
 * allows. Strict co-scheduling needs it; a VM without it is co-scheduled the relaxed way
 * (otherwise it could never be co-started). */
static int cs_gang_possible(hv_sched_policy *p, const cs_vcpu *a, const cs_vcpu *b) {
    for (uint32_t c = 0; c < p->npcpu; c++) {
        if (!hvs_allowed(a->affinity, c)) continue;
        for (uint32_t d = 0; d < p->npcpu; d++)
            if (d != c && hvs_allowed(b->affinity, d)) return 1;
    }
    return 0;
}

/* Strict rules for this VM (strict policy and a co-start is possible). */
static int cs_strict_for(hv_sched_policy *p, cs_group *g) {
    if (!p->strict || !g || g->member[1] < 0) return 0;
    cs_vcpu *a = cs_find(p, g->member[0]), *b = cs_find(p, g->member[1]);
    return a && b && cs_gang_possible(p, a, b);
}

/* Forget or settle the skew after a state change. */
static void cs_normalize(hv_sched_policy *p, cs_group *g) {
    if (!g || g->member[1] < 0) return;
    cs_vcpu *a = cs_find(p, g->member[0]), *b = cs_find(p, g->member[1]);
    if (!a || !b || !a->runnable || !b->runnable) {
        g->lead = 0;
        g->costopped = 0;
        return;
    }
    if (cs_running_on(p, a) && cs_running_on(p, b)) {
        if (g->costopped) { g->costopped = 0; g->costarts++; }
        if (cs_strict_for(p, g)) g->lead = 0;
    }
}

/* Accrue skew from last_now to now with the states as they were. */
static void cs_advance(hv_sched_policy *p, uint64_t now) {
    if (now <= p->last_now) return;
    int64_t dt = (int64_t)(now - p->last_now);
    p->last_now = now;
    for (uint32_t i = 0; i < p->ng; i++) {
        cs_group *g = &p->g[i];
        if (g->member[1] < 0) continue;
        cs_vcpu *a = cs_find(p, g->member[0]), *b = cs_find(p, g->member[1]);
        if (!a || !b || !a->runnable || !b->runnable) continue;
        int ra = a->on_pcpu >= 0, rb = b->on_pcpu >= 0;
        if (ra && !rb) g->lead += dt;
        else if (rb && !ra) g->lead -= dt;
        if (cs_abs(g->lead) > g->max_skew) g->max_skew = cs_abs(g->lead);
        if (!g->costopped && !(ra && rb) && cs_abs(g->lead) + CS_MIN > p->skew_ns && cs_strict_for(p, g)) {
            g->costopped = 1;
            g->costops++;
        }
    }
}

/*
 * The longest slice v may get, given what its sibling does (`sib_coruns`: the sibling
 * runs during v's slice, i.e. it is running or planned for this grid interval; both
 * slices then end on the same grid point):
 *  - no sibling, or sibling blocked (skew forgotten)        -> the threshold
 *  - sibling co-runs: strict (skew reset)                   -> the threshold
 *                     relaxed (skew frozen)                 -> threshold - lead, or the
 *                                                              whole grid interval for a
 *                                                              leader already at it
 *  - sibling runnable and waiting                           -> threshold - lead
 * A slice never ends later than the grid point, so co-running siblings stop together;
 * a sibling that blocks first makes the skew forgotten. Returns < CS_MIN when v must
 * not run now (strict: its VM is co-stopped; either mode: it leads by the threshold).
 */
static int64_t cs_cap(hv_sched_policy *p, const cs_vcpu *v, int sib_coruns) {
    cs_group *g;
    cs_vcpu *s = cs_sibling(p, v, &g);
    if (!s || !s->runnable) return p->skew_ns;
    int64_t lead = cs_lead_of(g, v);
    if (cs_strict_for(p, g)) {
        if (sib_coruns) return p->skew_ns;
        return g->costopped ? -1 : p->skew_ns - lead;
    }
    if (sib_coruns) return lead + CS_MIN > p->skew_ns ? INT64_MAX : p->skew_ns - lead;
    return p->skew_ns - lead;
}

static void cs_release_pcpu(hv_sched_policy *p, cs_vcpu *v) {
    if (v->on_pcpu >= 0 && (uint32_t)v->on_pcpu < p->npcpu && p->cur[v->on_pcpu] == v->id)
        p->cur[v->on_pcpu] = -1;
    v->on_pcpu = -1;
}

static int cs_vt_before(const cs_vcpu *a, const cs_vcpu *b) {
    if (a->vt != b->vt) return a->vt < b->vt;
    return a->id < b->id;
}

/* ------------------------------------------------------------------------ */
/* Planning at a grid point                                                  */

static int cs_scratch(hv_sched_policy *p) {
    if (p->scratch_cap >= p->nv) return 1;
    uint32_t cap = p->nv * 2;
    int32_t *o = realloc(p->order, sizeof(int32_t) * cap);
    if (!o) return 0;
    p->order = o;
    int32_t *s = realloc(p->sel, sizeof(int32_t) * cap);
    if (!s) return 0;
    p->sel = s;
    p->scratch_cap = cap;
    return 1;
}

/* Assigns pCPUs to the vCPU indices sel[0..n) over the free pCPUs: vCPUs running on a
 * free (re-decided) pCPU keep it, then the most constrained first, preferring the last
 * pCPU. Fills p->assign[pcpu] with vCPU indices (-1 none). Returns 1 if all fit. */
static int cs_assign(hv_sched_policy *p, const int32_t *sel, uint32_t n) {
    for (uint32_t c = 0; c < p->npcpu; c++) p->assign[c] = -1;
    uint8_t done[256];
    uint8_t *placed = n <= sizeof done ? done : calloc(n, 1);
    if (!placed) return 0;
    memset(placed, 0, n);
    int ok = 1;
    for (uint32_t i = 0; i < n; i++) {
        cs_vcpu *v = &p->v[sel[i]];
        if (v->on_pcpu >= 0) {
            if (!p->freep[v->on_pcpu] || p->assign[v->on_pcpu] >= 0) { ok = 0; goto out; }
            p->assign[v->on_pcpu] = sel[i];
            placed[i] = 1;
        }
    }
    for (;;) {
        int best = -1;
        uint32_t best_n = UINT32_MAX;
        for (uint32_t i = 0; i < n; i++) {
            if (placed[i]) continue;
            uint32_t cnt = 0;
            for (uint32_t c = 0; c < p->npcpu; c++)
                cnt += p->freep[c] && p->assign[c] < 0 && hvs_allowed(p->v[sel[i]].affinity, c);
            if (cnt < best_n) { best_n = cnt; best = (int)i; }
        }
        if (best < 0) break;
        if (best_n == 0) { ok = 0; goto out; }
        cs_vcpu *v = &p->v[sel[best]];
        int32_t where = -1;
        if (v->last_pcpu >= 0 && (uint32_t)v->last_pcpu < p->npcpu && p->freep[v->last_pcpu]
            && p->assign[v->last_pcpu] < 0 && hvs_allowed(v->affinity, (uint32_t)v->last_pcpu))
            where = v->last_pcpu;
        for (uint32_t c = 0; where < 0 && c < p->npcpu; c++)
            if (p->freep[c] && p->assign[c] < 0 && hvs_allowed(v->affinity, c)) where = (int32_t)c;
        p->assign[where] = sel[best];
        placed[best] = 1;
    }
out:
    if (placed != done) free(placed);
    return ok;
}

static void cs_plan(hv_sched_policy *p, uint64_t now, uint64_t epoch) {
    p->plan_epoch = epoch;
    p->plans++;
    for (uint32_t c = 0; c < p->npcpu; c++) {
        p->freep[c] = p->slice_end[c] <= now + CS_DUE_NS;
        p->plan_vcpu[c] = -1;
        p->plan_co[c] = 0;
        p->plan_open[c] = p->freep[c];
        p->plan_forced[c] = 0;
    }
    if (!cs_scratch(p)) return;
    /* Candidates in virtual-time order (insertion sort: pools are small). */
    uint32_t n = 0;
    for (uint32_t i = 0; i < p->nv; i++) {
        cs_vcpu *v = &p->v[i];
        if (!v->runnable) continue;
        if (v->on_pcpu >= 0 && !p->freep[v->on_pcpu]) continue;     /* keeps running */
        uint32_t j = n++;
        while (j > 0 && cs_vt_before(v, &p->v[p->order[j - 1]])) { p->order[j] = p->order[j - 1]; j--; }
        p->order[j] = (int32_t)i;
    }
    uint32_t slots = 0;
    for (uint32_t c = 0; c < p->npcpu; c++) slots += p->freep[c];
    uint32_t ns = 0;
    uint8_t flags[512];             /* per order index: 1 selected, 2 deferred, 3 skipped,
                                       4 selected as a co-start partner */
    uint8_t *st = n <= sizeof flags ? flags : calloc(n, 1);
    if (!st) return;
    memset(st, 0, n);
    for (int pass = 0; pass < 2; pass++) {
        for (uint32_t k = 0; k < n && ns < slots; k++) {
            if (st[k] == 1 || st[k] >= 3 || (pass == 0 && st[k] == 2)) continue;
            cs_vcpu *v = &p->v[p->order[k]];
            cs_group *g;
            cs_vcpu *s = cs_sibling(p, v, &g);
            uint32_t sk = UINT32_MAX;
            if (s) for (uint32_t q = 0; q < n; q++) if (&p->v[p->order[q]] == s) sk = q;
            int sib_waiting = s && s->runnable && sk != UINT32_MAX;    /* could be co-planned */
            /* The sibling runs through this interval: planned, or on a pCPU not re-decided. */
            int sib_co = (sk != UINT32_MAX && (st[sk] == 1 || st[sk] == 4)) ||
                         (s && s->runnable && s->on_pcpu >= 0 && !p->freep[s->on_pcpu]);
            int gang = 0;
            if (s && s->runnable && cs_strict_for(p, g) &&
                (g->costopped || (!sib_co && cs_lead_of(g, v) + CS_MIN > p->skew_ns))) {
                if (!g->costopped) { g->costopped = 1; g->costops++; }
                gang = 1;
            }
            if (gang) {
                if (!sib_waiting || ns + 2 > slots) { st[k] = 3; if (sk != UINT32_MAX) st[sk] = 3; continue; }
                p->sel[ns] = p->order[k];
                p->sel[ns + 1] = p->order[sk];
                if (cs_assign(p, p->sel, ns + 2)) { st[k] = 1; st[sk] = 4; ns += 2; }
                else { st[k] = 3; st[sk] = 3; }
                continue;
            }
            if (cs_cap(p, v, sib_co) < CS_MIN) {
                /* Relaxed: the leader waits unless its sibling is co-planned. */
                st[k] = (pass == 0 && sib_waiting) ? 2 : 3;
                continue;
            }
            p->sel[ns] = p->order[k];
            if (cs_assign(p, p->sel, ns + 1)) { st[k] = 1; ns++; }
            else st[k] = 3;
        }
    }
    int32_t forced[64];
    uint32_t nforced = 0;
    for (uint32_t k = 0; k < n && nforced < 64; k++) if (st[k] == 4) forced[nforced++] = p->order[k];
    if (st != flags) free(st);
    if (ns == 0 || !cs_assign(p, p->sel, ns)) return;
    for (uint32_t c = 0; c < p->npcpu; c++) {
        if (p->assign[c] < 0) continue;
        cs_vcpu *v = &p->v[p->assign[c]];
        cs_vcpu *s = cs_sibling(p, v, NULL);
        int sib_co = s && s->runnable && s->on_pcpu >= 0 && !p->freep[s->on_pcpu];
        for (uint32_t d = 0; s && d < p->npcpu; d++) sib_co |= p->assign[d] >= 0 && &p->v[p->assign[d]] == s;
        p->plan_vcpu[c] = v->id;
        p->plan_co[c] = (uint8_t)sib_co;
        for (uint32_t f = 0; f < nforced; f++) p->plan_forced[c] |= forced[f] == p->assign[c];
    }
}

/* ------------------------------------------------------------------------ */

static int cs_init_common(hv_sched_policy **out, uint32_t pcpu_count, int strict) {
    if (!out || pcpu_count == 0 || pcpu_count > 4096) return HV_EINVAL;
    hv_sched_policy *p = calloc(1, sizeof *p);
    if (!p) return HV_ENOMEM;
    p->strict = strict;
    p->skew_ns = CS_SKEW_NS;
    p->npcpu = pcpu_count;
    p->cur = malloc(sizeof(int32_t) * pcpu_count);
    p->slice_end = calloc(pcpu_count, sizeof(uint64_t));
    p->plan_vcpu = malloc(sizeof(int32_t) * pcpu_count);
    p->plan_co = calloc(pcpu_count, 1);
    p->plan_open = calloc(pcpu_count, 1);
    p->plan_forced = calloc(pcpu_count, 1);
    p->assign = malloc(sizeof(int32_t) * pcpu_count);
    p->freep = calloc(pcpu_count, 1);
    if (!p->cur || !p->slice_end || !p->plan_vcpu || !p->plan_co || !p->plan_open || !p->plan_forced ||
        !p->assign || !p->freep) {
        free(p->cur); free(p->slice_end); free(p->plan_vcpu); free(p->plan_co); free(p->plan_open); free(p->plan_forced);
        free(p->assign); free(p->freep); free(p);
        return HV_ENOMEM;
    }
    for (uint32_t i = 0; i < pcpu_count; i++) { p->cur[i] = -1; p->plan_vcpu[i] = -1; }
    p->plan_epoch = UINT64_MAX;
    *out = p;
    return HV_OK;
}

static int cs_init_strict(hv_sched_policy **out, uint32_t n) { return cs_init_common(out, n, 1); }
static int cs_init_relaxed(hv_sched_policy **out, uint32_t n) { return cs_init_common(out, n, 0); }

static void cs_deinit(hv_sched_policy *p) {
    if (!p) return;
    free(p->v); free(p->g); free(p->cur); free(p->slice_end); free(p->plan_vcpu); free(p->plan_co);
    free(p->plan_open); free(p->plan_forced); free(p->order); free(p->sel); free(p->assign); free(p->freep); free(p);
}

static int cs_vcpu_add(hv_sched_policy *p, int32_t vcpu, int32_t vm, const hv_sched_params *params) {
    hvs_params prm;
    int rc = hvs_params_read(params, &prm);
    if (rc < 0) return rc;
    if (vcpu < 0) return HV_EINVAL;
    if (cs_find(p, vcpu)) return HV_EEXIST;
    cs_group *g = cs_group_of(p, vm);
    if (g && g->member[1] >= 0) return HV_ENOTSUP;           /* 2-way vSMP at most */
    if (p->nv == p->vcap) {
        uint32_t cap = p->vcap ? p->vcap * 2 : 16;
        cs_vcpu *nv = realloc(p->v, sizeof(cs_vcpu) * cap);
        if (!nv) return HV_ENOMEM;
        p->v = nv;
        p->vcap = cap;
    }
    if (!g) {
        if (p->ng == p->gcap) {
            uint32_t cap = p->gcap ? p->gcap * 2 : 16;
            cs_group *ng = realloc(p->g, sizeof(cs_group) * cap);
            if (!ng) return HV_ENOMEM;
            p->g = ng;
            p->gcap = cap;
        }
        g = &p->g[p->ng++];
        memset(g, 0, sizeof *g);
        g->vm = vm;
        g->member[0] = vcpu;
        g->member[1] = -1;
    } else {
        g->member[1] = vcpu;
        g->lead = 0;
        g->costopped = 0;
    }
    cs_vcpu *v = &p->v[p->nv++];
    memset(v, 0, sizeof *v);
    v->id = vcpu;
    v->vm = vm;
    v->shares = prm.shares;
    v->affinity = prm.affinity;
    v->on_pcpu = -1;
    v->last_pcpu = -1;
    v->vt = p->gvt;
    return HV_OK;
}

static void cs_vcpu_remove(hv_sched_policy *p, int32_t vcpu) {
    cs_vcpu *v = cs_find(p, vcpu);
    if (!v) return;
    cs_release_pcpu(p, v);
    for (uint32_t c = 0; c < p->npcpu; c++) if (p->plan_vcpu[c] == vcpu) p->plan_vcpu[c] = -1;
    cs_group *g = cs_group_of(p, v->vm);
    if (g) {
        if (g->member[0] == vcpu) { g->member[0] = g->member[1]; g->member[1] = -1; }
        else if (g->member[1] == vcpu) g->member[1] = -1;
        g->lead = 0;
        g->costopped = 0;
        if (g->member[0] < 0) *g = p->g[--p->ng];
    }
    *v = p->v[--p->nv];
}

static void cs_wake(hv_sched_policy *p, int32_t vcpu, uint64_t now) {
    cs_advance(p, now);
    cs_vcpu *v = cs_find(p, vcpu);
    if (!v || v->runnable) return;
    v->runnable = 1;
    if (v->vt < p->gvt) { v->vt = p->gvt; v->vt_rem = 0; }
    cs_normalize(p, cs_group_of(p, v->vm));
}

static void cs_block(hv_sched_policy *p, int32_t vcpu, uint64_t now) {
    cs_advance(p, now);
    cs_vcpu *v = cs_find(p, vcpu);
    if (!v) return;
    v->runnable = 0;
    cs_release_pcpu(p, v);
    cs_normalize(p, cs_group_of(p, v->vm));
}

static void cs_yield(hv_sched_policy *p, int32_t vcpu, uint64_t now) {
    cs_advance(p, now);
    cs_vcpu *v = cs_find(p, vcpu);
    if (!v) return;
    cs_release_pcpu(p, v);
    if (v->vt < p->gvt) { v->vt = p->gvt; v->vt_rem = 0; }
    cs_normalize(p, cs_group_of(p, v->vm));
}

/* Starts v on pcpu. A vCPU chosen by virtual time advances gvt (and keeps at most one
 * quantum of credit); a co-start partner is dragged along and does neither. */
static void cs_give(hv_sched_policy *p, cs_vcpu *v, uint32_t pcpu, uint64_t now, int64_t cap, int forced,
                    hv_sched_pick *out) {
    if (!forced) {
        uint64_t bound = hvs_vt_span((uint64_t)CS_QUANTUM_NS, v->shares);
        if (p->gvt > bound && v->vt < p->gvt - bound) { v->vt = p->gvt - bound; v->vt_rem = 0; }
        if (v->vt > p->gvt) p->gvt = v->vt;
    }
    uint64_t slice = hvs_grid_slice(now, (uint64_t)CS_QUANTUM_NS);
    if (cap < (int64_t)slice) slice = (uint64_t)(cap < CS_MIN ? CS_MIN : cap);
    v->on_pcpu = (int32_t)pcpu;
    v->last_pcpu = (int32_t)pcpu;
    p->cur[pcpu] = v->id;
    p->slice_end[pcpu] = now + slice;
    cs_normalize(p, cs_group_of(p, v->vm));
    hvs_set_pick(out, v->id, slice);
}

static void cs_pick_next(hv_sched_policy *p, uint32_t pcpu, uint64_t now, hv_sched_pick *out) {
    hvs_set_pick(out, -1, 0);
    if (pcpu >= p->npcpu) return;
    p->picks++;
    cs_advance(p, now);
    if (p->cur[pcpu] >= 0) {
        cs_vcpu *old = cs_find(p, p->cur[pcpu]);
        p->cur[pcpu] = -1;
        if (old && old->on_pcpu == (int32_t)pcpu) {
            old->on_pcpu = -1;
            cs_normalize(p, cs_group_of(p, old->vm));
        }
    }
    p->slice_end[pcpu] = now;
    uint64_t epoch = (now + CS_DUE_NS) / (uint64_t)CS_QUANTUM_NS;
    uint64_t boundary = epoch * (uint64_t)CS_QUANTUM_NS;
    if (epoch != p->plan_epoch) cs_plan(p, now, epoch);

    /* The plan starts at the grid point: a pCPU asked just before it fills the gap
     * greedily and takes its planned vCPU when asked at the grid point. */
    if (p->plan_open[pcpu] && now >= boundary) {
        p->plan_open[pcpu] = 0;
        cs_vcpu *v = cs_find(p, p->plan_vcpu[pcpu]);
        /* The slice bound is taken now, with the skew as it is at the grid point. */
        int64_t cap = v ? cs_cap(p, v, p->plan_co[pcpu]) : -1;
        if (v && v->runnable && v->on_pcpu < 0 && hvs_allowed(v->affinity, pcpu) && cap >= CS_MIN) {
            cs_give(p, v, pcpu, now, cap, p->plan_forced[pcpu], out);
            return;
        }
    }

    /* Too close to the grid point to run anything without delaying the plan there. */
    uint64_t next_grid = (now / (uint64_t)CS_QUANTUM_NS + 1) * (uint64_t)CS_QUANTUM_NS;
    if (next_grid - now < HVS_MIN_SLICE_NS) {
        p->idle_picks++;
        p->slice_end[pcpu] = next_grid;
        hvs_set_pick(out, -1, next_grid - now);
        return;
    }

    /* Between grid points (or the plan is stale): the best eligible vCPU that no other
     * pCPU's open plan holds. */
    cs_vcpu *pick = NULL;
    int64_t pick_cap = 0;
    for (uint32_t i = 0; i < p->nv; i++) {
        cs_vcpu *c = &p->v[i];
        if (!c->runnable || c->on_pcpu >= 0 || !hvs_allowed(c->affinity, pcpu)) continue;
        int held = 0;
        for (uint32_t d = 0; d < p->npcpu; d++) held |= p->plan_open[d] && p->plan_vcpu[d] == c->id;
        if (held) continue;
        cs_vcpu *s = cs_sibling(p, c, NULL);
        int64_t cap = cs_cap(p, c, s && cs_running_on(p, s));
        if (cap < CS_MIN) {
            cs_group *g = cs_group_of(p, c->vm);
            if (g) g->holds++;
            continue;
        }
        if (!pick || c->vt < pick->vt || (c->vt == pick->vt &&
            ((c->last_pcpu == (int32_t)pcpu) > (pick->last_pcpu == (int32_t)pcpu) ||
             ((c->last_pcpu == (int32_t)pcpu) == (pick->last_pcpu == (int32_t)pcpu) && c->id < pick->id)))) {
            pick = c;
            pick_cap = cap;
        }
    }
    if (!pick) {
        p->idle_picks++;
        uint64_t slice = hvs_grid_slice(now, (uint64_t)CS_QUANTUM_NS);
        p->slice_end[pcpu] = now + slice;
        hvs_set_pick(out, -1, slice);
        return;
    }
    cs_give(p, pick, pcpu, now, pick_cap, 0, out);
}

static void cs_account(hv_sched_policy *p, int32_t vcpu, uint64_t ran_ns) {
    cs_vcpu *v = cs_find(p, vcpu);
    if (!v) return;
    hvs_vt_advance(&v->vt, &v->vt_rem, ran_ns, v->shares);
    v->total += ran_ns;
}

static int cs_set_params(hv_sched_policy *p, int32_t vcpu, const hv_sched_params *params) {
    hvs_params prm;
    int rc = hvs_params_read(params, &prm);
    if (rc < 0) return rc;
    cs_vcpu *v = cs_find(p, vcpu);
    if (!v) return HV_ENOENT;
    if (prm.shares != v->shares && v->vt > p->gvt) {
        uint64_t lead = v->vt - p->gvt;
        v->vt = p->gvt + lead / prm.shares * v->shares + lead % prm.shares * v->shares / prm.shares;
        v->vt_rem = 0;
    }
    v->shares = prm.shares;
    v->affinity = prm.affinity;
    return HV_OK;
}

static void cs_dump(hv_sched_policy *p, char *buf, size_t len) {
    if (!buf || len == 0) return;
    buf[0] = 0;
    uint64_t costops = 0, costarts = 0, holds = 0;
    int64_t skew = 0;
    for (uint32_t i = 0; i < p->ng; i++) {
        costops += p->g[i].costops;
        costarts += p->g[i].costarts;
        holds += p->g[i].holds;
        if (p->g[i].max_skew > skew) skew = p->g[i].max_skew;
    }
    hvs_appendf(buf, len, "%s: %u vCPUs in %u VMs, quantum %lld ms, skew threshold %lld us, max skew %lld us, "
                "co-stops %llu, co-starts %llu, holds %llu, plans %llu, picks %llu (idle %llu)",
                p->strict ? "cosched-strict" : "cosched-relaxed", p->nv, p->ng,
                (long long)(CS_QUANTUM_NS / 1000000), (long long)(p->skew_ns / 1000), (long long)(skew / 1000),
                (unsigned long long)costops, (unsigned long long)costarts, (unsigned long long)holds,
                (unsigned long long)p->plans, (unsigned long long)p->picks, (unsigned long long)p->idle_picks);
}

/* [sched] Tunable skew_us: the lead one sibling may have over the other before the
 * policy co-stops (strict) or holds the leader (relaxed). Takes effect at the next pick. */
static int32_t cs_set_skew(hv_sched_policy *p, uint32_t us) {
    if (us < 500 || us > 100000) return HV_EINVAL;
    p->skew_ns = (int64_t)us * 1000;
    return HV_OK;
}

/* [sched] Command `state`: the summary line and every VM's siblings. */
static void cs_state(hv_sched_policy *p, char *buf, size_t len) {
    if (!buf || len == 0) return;
    cs_dump(p, buf, len);
    for (uint32_t i = 0; i < p->ng; i++)
        hvs_appendf(buf, len, "\nvm %d: co-stops %llu, co-starts %llu, holds %llu, max skew %lld us", p->g[i].vm,
                    (unsigned long long)p->g[i].costops, (unsigned long long)p->g[i].costarts,
                    (unsigned long long)p->g[i].holds, (long long)(p->g[i].max_skew / 1000));
}

static const hv_config_key cs_keys[] = {
    { sizeof(hv_config_key), HV_KEY_UINT, "skew_us", 500, 100000, NULL, "5000",
      "sibling skew, in us, at which the policy co-stops (strict) or holds the leader (relaxed)" },
};
static const uint32_t cs_arg_u32[] = { HV_ARG_U32 };
static const uint32_t cs_arg_text[] = { HV_ARG_TEXT_OUT };
static const hv_command cs_commands[] = {
    { sizeof(hv_command), HV_COMMAND_TUNABLE, "skew_us", "set the skew threshold", (void (*)(void))cs_set_skew,
      HV_ARG_I32, 1, cs_arg_u32, NULL },
    { sizeof(hv_command), 0, "state", "the summary and each VM's co-scheduling counters", (void (*)(void))cs_state,
      HV_ARG_VOID, 1, cs_arg_text, NULL },
};

/* ------------------------------------------------------------------------ */

/* The strict and relaxed policies share every op but init. */
#define CS_OPS(init_fn) {                   \
    .struct_size = sizeof(hv_sched_ops),    \
    .init = (init_fn),                      \
    .deinit = cs_deinit,                    \
    .vcpu_add = cs_vcpu_add,                \
    .vcpu_remove = cs_vcpu_remove,          \
    .wake = cs_wake,                        \
    .block = cs_block,                      \
    .yield = cs_yield,                      \
    .pick_next = cs_pick_next,              \
    .account = cs_account,                  \
    .set_params = cs_set_params,            \
    .dump = cs_dump,                        \
}

static const hv_sched_ops cs_strict_ops = CS_OPS(cs_init_strict);
static const hv_sched_ops cs_relaxed_ops = CS_OPS(cs_init_relaxed);

static const hv_sched_policy_desc cs_strict_desc = {
    .struct_size = sizeof(hv_sched_policy_desc),
    .name = "cosched-strict",
    .description = "ESX 2.x strict co-scheduling of 2-vCPU VMs: co-stop at 5 ms skew (tunable skew_us), co-start together; "
                   "shares and affinity",
    .ops = &cs_strict_ops,
    .key_count = 1,
    .command_count = 2,
    .keys = cs_keys,
    .commands = cs_commands,
};

static const hv_sched_policy_desc cs_relaxed_desc = {
    .struct_size = sizeof(hv_sched_policy_desc),
    .name = "cosched-relaxed",
    .description = "relaxed co-scheduling of 2-vCPU VMs: the leading vCPU waits at 5 ms skew (tunable skew_us), the lagging one "
                   "catches up alone; shares and affinity",
    .ops = &cs_relaxed_ops,
    .key_count = 1,
    .command_count = 2,
    .keys = cs_keys,
    .commands = cs_commands,
};

static const hv_sched_policy_desc *const cs_list[] = { &cs_strict_desc, &cs_relaxed_desc };

HVS_PLUGIN(cs_list, "org.hvhost.sched.cosched", "Co-scheduler for 2-vCPU VMs")
