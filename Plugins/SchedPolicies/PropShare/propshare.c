/*
 * propshare.c — ESX-style proportional-share CPU scheduling as a plugin policy
 * ("propshare"), in plain C99 against hvplugin.h.
 *
 * Shares. Stride scheduling in virtual time: every vCPU has a virtual time `vt` that
 * advances by ran_ns * SCALE / shares when the host accounts CPU time to it; a pCPU
 * runs the eligible vCPU with the least vt. Slices end on a pool-wide 10 ms grid (the live tunable quantum_ms), so
 * the error between any two CPU-bound vCPUs stays within one quantum (the classic
 * stride bound) and every pCPU is asked again at the same instants.
 *
 * Global virtual time `gvt` is the largest vt a vCPU had when it was picked by share
 * (on one pCPU: the least vt of the runnable vCPUs). A vCPU that joins or yields
 * starts no earlier than gvt, one that wakes no earlier than half a quantum (of its
 * own run time) before it: blocked vCPUs bank at most that little credit, and adding
 * or removing a vCPU re-divides the pool at once. A running vCPU that cannot use its
 * share (one vCPU of a heavy VM on several pCPUs) keeps at most one quantum of credit.
 * Changing shares rescales the vCPU's lead over gvt.
 *
 * Reservation (min %, of one pCPU). Accounting runs over 100 ms periods aligned to the
 * pool clock. A vCPU whose use in the current period is behind min % of the time
 * elapsed in it is served first (largest deficit first), whatever its vt. Its vt still
 * advances, so min acts as a floor: a vCPU gets max(min, its share).
 *
 * Limit (max %, of one pCPU). A vCPU with max < 100 may use max % of each period; once
 * it has, it is not picked again until the next period even if the pCPU idles (limits
 * are not work-conserving, as in ESX). Its slice never runs past its remaining budget.
 *
 * Affinity. A vCPU is only ever picked for a pCPU its mask allows (0 = any).
 *
 * Hyperthreads. Siblings come from the host's topology (set_topology: the slots on one
 * core); without it slots 2k and 2k+1 are siblings (hvsched_common.h). htsharing `none`:
 * the sibling idles while the vCPU runs; `internal`: only a vCPU of the same VM may run
 * on the sibling. The policy remembers what it gave each pCPU and until when; a
 * sibling whose slice is over is about to be asked again (the host asks every such
 * pCPU at that instant) and does not constrain this pick. When the most deserving vCPU of a core may only run on the
 * sibling, this pCPU is filled as if it already ran there, so a `none` vCPU pinned to
 * one hyperthread is not starved by the other.
 *
 * Preemption on wake (the optional `preempt` op). When a vCPU wakes and no pCPU it may
 * use is free, the running vCPU with the largest virtual time (counting the slice it
 * is running now) among those on pCPUs the woken vCPU is allowed on (affinity, and
 * htsharing with what runs on the sibling) is preempted, if it is ahead of the woken
 * one by more than half a quantum (of the woken vCPU's run time) and is not being
 * served by its reservation: the I/O-bound vCPU gets its share and a short wake-up
 * latency instead of waiting up to a quantum for the next slice end. The preempted
 * pCPU is asked again at once and picks as usual (the woken vCPU, unless another is
 * more deserving).
 */
#include "hvplugin.h"
#include "../Common/hvsched_common.h"
#include "include/hvsched_propshare.h"

/* Defaults of the live tunables (ps_keys below; `sched tune POOL KEY VALUE`). */
#define PS_QUANTUM_NS  10000000ull   /* slice grid */
#define PS_PERIOD_NS  100000000ull   /* min/max accounting period (a multiple of the grid) */
#define PS_WAKE_CREDIT_NS (PS_QUANTUM_NS / 2)   /* most a woken vCPU may be behind gvt */
/* The lead (as run time) that preempts on wake is half the quantum in force. */

typedef struct ps_vcpu {
    int32_t id;
    int32_t vm;
    hvs_params prm;
    int runnable;
    int32_t on_pcpu;        /* the pCPU it was given, -1 when not running */
    int32_t last_pcpu;
    uint64_t vt, vt_rem;
    uint64_t period;        /* index of the period `used` counts in */
    uint64_t used;          /* ns used in that period */
    uint64_t total;         /* ns used since it joined */
} ps_vcpu;

struct hv_sched_policy {
    uint32_t npcpu;
    ps_vcpu *v;
    uint32_t nv, cap;
    int32_t *cur;           /* per pCPU: vCPU id given, -1 idle */
    uint64_t *slice_end;    /* per pCPU: when its current slice (or idle time) ends */
    uint64_t *since;        /* per pCPU: when its current pick was made */
    int32_t *sib;           /* per pCPU: its hyperthread sibling, -1 none */
    uint64_t preempting;    /* pCPUs (bit i) preempt asked the host to re-decide, < 64 */
    int32_t woken;          /* the vCPU woken since the last preempt, -1 none */
    uint64_t quantum_ns;    /* tunable quantum_ms */
    uint64_t period_ns;     /* tunable period_ms, a multiple of quantum_ns */
    uint64_t wake_credit_ns;/* tunable wake_credit_us */
    uint64_t gvt;
    uint64_t picks, idle_picks, reserve_picks, preempts;
};

static ps_vcpu *ps_find(hv_sched_policy *p, int32_t id) {
    for (uint32_t i = 0; i < p->nv; i++)
        if (p->v[i].id == id) return &p->v[i];
    return NULL;
}

static void ps_release_pcpu(hv_sched_policy *p, ps_vcpu *v) {
    if (v->on_pcpu >= 0 && (uint32_t)v->on_pcpu < p->npcpu && p->cur[v->on_pcpu] == v->id) {
        p->cur[v->on_pcpu] = -1;
        if (v->on_pcpu < 64) p->preempting &= ~(1ull << v->on_pcpu);
    }
    v->on_pcpu = -1;
}

static uint64_t ps_used_in(const ps_vcpu *v, uint64_t period) {
    return v->period == period ? v->used : 0;
}

static int ps_capped(const hv_sched_policy *p, const ps_vcpu *v, uint64_t period) {
    if (v->prm.max_pct >= 100) return 0;
    uint64_t budget = p->period_ns / 100 * v->prm.max_pct;
    uint64_t used = ps_used_in(v, period);
    return used + HVS_MIN_SLICE_NS > budget;
}

/* ns the vCPU is behind its reservation at `now` (0 when not behind or no min). */
static uint64_t ps_deficit(const hv_sched_policy *p, const ps_vcpu *v, uint64_t now) {
    if (v->prm.min_pct == 0) return 0;
    uint64_t period = now / p->period_ns;
    uint64_t elapsed = now - period * p->period_ns;
    uint64_t due = elapsed / 100 * v->prm.min_pct;
    uint64_t used = ps_used_in(v, period);
    return due > used ? due - used : 0;
}

/* Whether `c` may share a core with `w` running on the sibling. */
static int ps_ht_compatible(const ps_vcpu *c, const ps_vcpu *w) {
    if (c->prm.htsharing == HVS_HT_NONE || w->prm.htsharing == HVS_HT_NONE) return 0;
    if (c->prm.htsharing == HVS_HT_INTERNAL || w->prm.htsharing == HVS_HT_INTERNAL) return c->vm == w->vm;
    return 1;
}

/* Eligible on `pcpu` ignoring hyperthread constraints. */
static int ps_eligible(const hv_sched_policy *p, const ps_vcpu *c, uint32_t pcpu, uint64_t period) {
    return c->runnable && c->on_pcpu < 0 && hvs_allowed(c->prm.affinity, pcpu) && !ps_capped(p, c, period);
}

/* Whether `a` goes before `b` on `pcpu` at `now`. */
static int ps_better(const hv_sched_policy *p, const ps_vcpu *a, const ps_vcpu *b, uint32_t pcpu, uint64_t now) {
    uint64_t da = ps_deficit(p, a, now), db = ps_deficit(p, b, now);
    if ((da > 0) != (db > 0)) return da > 0;
    if (da > 0 && da != db) return da > db;
    if (a->vt != b->vt) return a->vt < b->vt;
    int la = a->last_pcpu == (int32_t)pcpu, lb = b->last_pcpu == (int32_t)pcpu;
    if (la != lb) return la;
    return a->id < b->id;
}

/* ------------------------------------------------------------------------ */

static int ps_init(hv_sched_policy **out, uint32_t pcpu_count) {
    if (!out || pcpu_count == 0 || pcpu_count > 4096) return HV_EINVAL;
    hv_sched_policy *p = calloc(1, sizeof *p);
    if (!p) return HV_ENOMEM;
    p->npcpu = pcpu_count;
    p->cur = malloc(sizeof(int32_t) * pcpu_count);
    p->slice_end = calloc(pcpu_count, sizeof(uint64_t));
    p->since = calloc(pcpu_count, sizeof(uint64_t));
    p->sib = calloc(pcpu_count, sizeof(int32_t));
    if (!p->cur || !p->slice_end || !p->since || !p->sib) {
        free(p->cur); free(p->slice_end); free(p->since); free(p->sib); free(p);
        return HV_ENOMEM;
    }
    p->woken = -1;
    p->quantum_ns = PS_QUANTUM_NS;
    p->period_ns = PS_PERIOD_NS;
    p->wake_credit_ns = PS_WAKE_CREDIT_NS;
    for (uint32_t i = 0; i < pcpu_count; i++) {
        p->cur[i] = -1;
        p->sib[i] = hvs_sibling(i, pcpu_count);
    }
    *out = p;
    return HV_OK;
}

static void ps_deinit(hv_sched_policy *p) {
    if (!p) return;
    free(p->v); free(p->cur); free(p->slice_end); free(p->since); free(p->sib); free(p);
}

static int ps_vcpu_add(hv_sched_policy *p, int32_t vcpu, int32_t vm, const hv_sched_params *params) {
    hvs_params prm;
    int rc = hvs_params_read(params, &prm);
    if (rc < 0) return rc;
    if (vcpu < 0) return HV_EINVAL;
    if (ps_find(p, vcpu)) return HV_EEXIST;
    if (p->nv == p->cap) {
        uint32_t cap = p->cap ? p->cap * 2 : 16;
        ps_vcpu *nv = realloc(p->v, sizeof(ps_vcpu) * cap);
        if (!nv) return HV_ENOMEM;
        p->v = nv;
        p->cap = cap;
    }
    ps_vcpu *v = &p->v[p->nv++];
    memset(v, 0, sizeof *v);
    v->id = vcpu;
    v->vm = vm;
    v->prm = prm;
    v->runnable = 0;          /* the host calls wake() next */
    v->on_pcpu = -1;
    v->last_pcpu = -1;
    v->vt = p->gvt;
    v->period = UINT64_MAX;
    return HV_OK;
}

static void ps_vcpu_remove(hv_sched_policy *p, int32_t vcpu) {
    ps_vcpu *v = ps_find(p, vcpu);
    if (!v) return;
    if (p->woken == vcpu) p->woken = -1;
    ps_release_pcpu(p, v);
    *v = p->v[--p->nv];
}

static void ps_wake(hv_sched_policy *p, int32_t vcpu, uint64_t now) {
    (void)now;
    ps_vcpu *v = ps_find(p, vcpu);
    if (!v || v->runnable) return;
    v->runnable = 1;
    uint64_t credit = hvs_vt_span(p->wake_credit_ns, v->prm.shares);
    uint64_t floor = p->gvt > credit ? p->gvt - credit : 0;
    if (v->vt < floor) { v->vt = floor; v->vt_rem = 0; }   /* little credit for sleeping */
    p->woken = vcpu;                                          /* preempt() looks at it */
}

static void ps_block(hv_sched_policy *p, int32_t vcpu, uint64_t now) {
    (void)now;
    ps_vcpu *v = ps_find(p, vcpu);
    if (!v) return;
    v->runnable = 0;
    ps_release_pcpu(p, v);
}

static void ps_yield(hv_sched_policy *p, int32_t vcpu, uint64_t now) {
    (void)now;
    ps_vcpu *v = ps_find(p, vcpu);
    if (!v) return;
    ps_release_pcpu(p, v);
    if (v->vt < p->gvt) { v->vt = p->gvt; v->vt_rem = 0; }
}

static void ps_pick_next(hv_sched_policy *p, uint32_t pcpu, uint64_t now, hv_sched_pick *out) {
    hvs_set_pick(out, -1, 0);
    if (pcpu >= p->npcpu) return;
    p->picks++;
    /* Whatever ran here stops now. */
    if (pcpu < 64) p->preempting &= ~(1ull << pcpu);
    if (p->cur[pcpu] >= 0) {
        ps_vcpu *old = ps_find(p, p->cur[pcpu]);
        if (old && old->on_pcpu == (int32_t)pcpu) old->on_pcpu = -1;
        p->cur[pcpu] = -1;
    }
    uint64_t period = now / p->period_ns;
    uint64_t slice = hvs_grid_slice(now, p->quantum_ns);

    /* What the hyperthread sibling constrains: the vCPU running there (unless its
     * slice is over), or the best vCPU of the core that may only run there. */
    int32_t sib = p->sib[pcpu];
    const ps_vcpu *w = NULL;
    if (sib >= 0) {
        /* The host asks every pCPU whose slice is over at that instant, in some order:
         * a sibling at the end of its slice is about to be re-decided too. */
        int sib_due = p->slice_end[sib] <= now;
        if (!sib_due && p->cur[sib] >= 0) {
            w = ps_find(p, p->cur[sib]);
            if (w && w->prm.htsharing == HVS_HT_NONE) {
                /* The whole core belongs to it until its slice ends. */
                uint64_t until = p->slice_end[sib] - now;
                if (until < slice) slice = until < HVS_MIN_SLICE_NS ? HVS_MIN_SLICE_NS : until;
                p->idle_picks++;
                p->slice_end[pcpu] = now + slice;
                hvs_set_pick(out, -1, slice);
                return;
            }
        } else if (sib_due) {
            const ps_vcpu *best = NULL;
            for (uint32_t i = 0; i < p->nv; i++) {
                const ps_vcpu *c = &p->v[i];
                int here = ps_eligible(p, c, pcpu, period), there = ps_eligible(p, c, (uint32_t)sib, period);
                if (!here && !there) continue;
                if (!best || ps_better(p, c, best, pcpu, now)) best = c;
            }
            if (best && !hvs_allowed(best->prm.affinity, pcpu))
                w = best;   /* fill this half as if it already ran on the other */
        }
    }

    ps_vcpu *pick = NULL;
    for (uint32_t i = 0; i < p->nv; i++) {
        ps_vcpu *c = &p->v[i];
        if (!ps_eligible(p, c, pcpu, period)) continue;
        if (w && (c == w || !ps_ht_compatible(c, w))) continue;
        if (!pick || ps_better(p, c, pick, pcpu, now)) pick = c;
    }
    if (!pick) {
        p->idle_picks++;
        p->slice_end[pcpu] = now + slice;
        hvs_set_pick(out, -1, slice);
        return;
    }

    if (ps_deficit(p, pick, now) > 0) {
        p->reserve_picks++;
    } else {
        /* Picked by share: bound unusable credit, then advance global virtual time. */
        uint64_t bound = hvs_vt_span(p->quantum_ns, pick->prm.shares);
        if (p->gvt > bound && pick->vt < p->gvt - bound) { pick->vt = p->gvt - bound; pick->vt_rem = 0; }
        if (pick->vt > p->gvt) p->gvt = pick->vt;
    }
    if (pick->period != period) { pick->period = period; pick->used = 0; }
    if (pick->prm.max_pct < 100) {
        uint64_t left = p->period_ns / 100 * pick->prm.max_pct - pick->used;
        if (left < slice) slice = left;
    }
    pick->on_pcpu = (int32_t)pcpu;
    pick->last_pcpu = (int32_t)pcpu;
    p->cur[pcpu] = pick->id;
    p->since[pcpu] = now;
    p->slice_end[pcpu] = now + slice;
    hvs_set_pick(out, pick->id, slice);
}

/* The running vCPU on `pcpu` if its slice is not over and it is not being preempted. */
static const ps_vcpu *ps_running_on(hv_sched_policy *p, uint32_t pcpu, uint64_t now) {
    if (p->cur[pcpu] < 0 || p->slice_end[pcpu] <= now) return NULL;
    if (pcpu < 64 && (p->preempting >> pcpu & 1)) return NULL;
    return ps_find(p, p->cur[pcpu]);
}

/* Whether `c` may run on `pcpu` given what runs on its hyperthread sibling. */
static int ps_ht_fits(hv_sched_policy *p, const ps_vcpu *c, uint32_t pcpu, uint64_t now) {
    int32_t sib = p->sib[pcpu];
    if (sib < 0) return 1;
    const ps_vcpu *w = ps_running_on(p, (uint32_t)sib, now);
    return !w || ps_ht_compatible(c, w);
}

/* After a wake: the pCPU whose running vCPU the woken one should displace, if any. */
static uint64_t ps_preempt(hv_sched_policy *p, uint64_t now) {
    int32_t id = p->woken;
    p->woken = -1;
    ps_vcpu *v = id >= 0 ? ps_find(p, id) : NULL;
    uint64_t period = now / p->period_ns;
    if (!v || !v->runnable || v->on_pcpu >= 0 || ps_capped(p, v, period)) return 0;
    uint64_t margin = hvs_vt_span((p->quantum_ns / 2), v->prm.shares);
    int32_t best = -1;
    uint64_t best_vt = 0;
    for (uint32_t q = 0; q < p->npcpu && q < 64; q++) {
        if (!hvs_allowed(v->prm.affinity, q)) continue;
        if (p->preempting >> q & 1) continue;             /* being re-decided already */
        const ps_vcpu *r = ps_running_on(p, q, now);
        if (!r) {
            /* Free, or about to be asked: the host asks it after this event. */
            if (ps_ht_fits(p, v, q, now)) return 0;
            continue;
        }
        if (!ps_ht_fits(p, v, q, now)) continue;
        if (ps_deficit(p, r, now) > 0 && ps_deficit(p, v, now) == 0) continue;   /* reservation */
        uint64_t ran = now > p->since[q] ? now - p->since[q] : 0;
        uint64_t vt = r->vt + hvs_vt_span(ran, r->prm.shares);
        if (vt <= v->vt + margin) continue;
        if (best < 0 || vt > best_vt) { best = (int32_t)q; best_vt = vt; }
    }
    if (best < 0) return 0;
    p->preempting |= 1ull << best;
    p->preempts++;
    return 1ull << best;
}

static void ps_account(hv_sched_policy *p, int32_t vcpu, uint64_t ran_ns) {
    ps_vcpu *v = ps_find(p, vcpu);
    if (!v) return;
    hvs_vt_advance(&v->vt, &v->vt_rem, ran_ns, v->prm.shares);
    v->used += ran_ns;
    v->total += ran_ns;
}

static int ps_set_params(hv_sched_policy *p, int32_t vcpu, const hv_sched_params *params) {
    hvs_params prm;
    int rc = hvs_params_read(params, &prm);
    if (rc < 0) return rc;
    ps_vcpu *v = ps_find(p, vcpu);
    if (!v) return HV_ENOENT;
    if (prm.shares != v->prm.shares && v->vt > p->gvt) {
        /* Keep the lead in real time: it is worth old/new as much virtual time now. */
        v->vt = p->gvt + (v->vt - p->gvt) / prm.shares * v->prm.shares
              + (v->vt - p->gvt) % prm.shares * v->prm.shares / prm.shares;
        v->vt_rem = 0;
    }
    v->prm = prm;
    return HV_OK;
}

static void ps_dump(hv_sched_policy *p, char *buf, size_t len) {
    if (!buf || len == 0) return;
    buf[0] = 0;
    uint32_t runnable = 0, running = 0;
    for (uint32_t i = 0; i < p->nv; i++) {
        runnable += p->v[i].runnable != 0;
        running += p->v[i].on_pcpu >= 0;
    }
    hvs_appendf(buf, len, "propshare: %u vCPUs (%u runnable, %u running) on %u pCPUs, quantum %llu ms, "
                "period %llu ms, gvt %llu, picks %llu (idle %llu, by reservation %llu), wake preemptions %llu",
                p->nv, runnable, running, p->npcpu, (unsigned long long)(p->quantum_ns / 1000000ull),
                (unsigned long long)(p->period_ns / 1000000ull),
                (unsigned long long)p->gvt, (unsigned long long)p->picks, (unsigned long long)p->idle_picks,
                (unsigned long long)p->reserve_picks, (unsigned long long)p->preempts);
}

/* ------------------------------------------------------------------------ */
/* Tunables and commands ([sched]: called with the pool lock held)           */
/* ------------------------------------------------------------------------ */

/* The slice grid. The period must stay a multiple of it (HV_EINVAL otherwise). Slices
 * already handed out end on the old grid; the next picks use the new one. */
static int32_t ps_set_quantum(hv_sched_policy *p, uint32_t ms) {
    uint64_t ns = (uint64_t)ms * 1000000ull;
    if (ms < 1 || ms > 1000 || p->period_ns % ns != 0) return HV_EINVAL;
    p->quantum_ns = ns;
    return HV_OK;
}

static int32_t ps_set_period(hv_sched_policy *p, uint32_t ms) {
    uint64_t ns = (uint64_t)ms * 1000000ull;
    if (ms < 10 || ms > 10000 || ns % p->quantum_ns != 0) return HV_EINVAL;
    p->period_ns = ns;
    return HV_OK;
}

static int32_t ps_set_wake_credit(hv_sched_policy *p, uint32_t us) {
    if (us > 1000000u) return HV_EINVAL;
    p->wake_credit_ns = (uint64_t)us * 1000ull;
    return HV_OK;
}

/* Every vCPU: id, VM, parameters, state, virtual time and use. */
static void ps_state(hv_sched_policy *p, char *buf, size_t len) {
    if (!buf || len == 0) return;
    buf[0] = 0;
    ps_dump(p, buf, len);
    for (uint32_t i = 0; i < p->nv; i++) {
        const ps_vcpu *v = &p->v[i];
        hvs_appendf(buf, len, "\nvcpu %d vm %d shares %u min %u%% max %u%% %s pcpu %d vt %llu used %llu total %llu",
                    v->id, v->vm, v->prm.shares, v->prm.min_pct, v->prm.max_pct,
                    v->on_pcpu >= 0 ? "running" : v->runnable ? "ready" : "blocked", v->on_pcpu,
                    (unsigned long long)v->vt, (unsigned long long)v->used, (unsigned long long)v->total);
    }
}

static const hv_config_key ps_keys[] = {
    { sizeof(hv_config_key), HV_KEY_UINT, "quantum_ms", 1, 1000, NULL, "10",
      "slice grid in ms; the period must be a multiple of it" },
    { sizeof(hv_config_key), HV_KEY_UINT, "period_ms", 10, 10000, NULL, "100",
      "min/max accounting period in ms, a multiple of quantum_ms" },
    { sizeof(hv_config_key), HV_KEY_UINT, "wake_credit_us", 0, 1000000, NULL, "5000",
      "most run time a woken vCPU may be behind global virtual time (its wake-up skew)" },
};

static const uint32_t ps_arg_u32[] = { HV_ARG_U32 };
static const uint32_t ps_arg_text[] = { HV_ARG_TEXT_OUT };

static const hv_command ps_commands[] = {
    { sizeof(hv_command), HV_COMMAND_TUNABLE, "quantum_ms", "set the slice grid", (void (*)(void))ps_set_quantum,
      HV_ARG_I32, 1, ps_arg_u32, NULL },
    { sizeof(hv_command), HV_COMMAND_TUNABLE, "period_ms", "set the min/max period", (void (*)(void))ps_set_period,
      HV_ARG_I32, 1, ps_arg_u32, NULL },
    { sizeof(hv_command), HV_COMMAND_TUNABLE, "wake_credit_us", "set the wake-up credit", (void (*)(void))ps_set_wake_credit,
      HV_ARG_I32, 1, ps_arg_u32, NULL },
    { sizeof(hv_command), 0, "state", "the policy summary and every vCPU's state", (void (*)(void))ps_state,
      HV_ARG_VOID, 1, ps_arg_text, NULL },
};

/* ------------------------------------------------------------------------ */

/* [sched] The slots on one core are hyperthread siblings (htsharing). */
static void ps_set_topology(hv_sched_policy *p, const hv_sched_topology *t) {
    hvs_topology_siblings(t, p->sib, p->npcpu);
}

static const hv_sched_ops ps_ops = {
    .struct_size = sizeof(hv_sched_ops),
    .init = ps_init,
    .deinit = ps_deinit,
    .vcpu_add = ps_vcpu_add,
    .vcpu_remove = ps_vcpu_remove,
    .wake = ps_wake,
    .block = ps_block,
    .yield = ps_yield,
    .pick_next = ps_pick_next,
    .account = ps_account,
    .set_params = ps_set_params,
    .dump = ps_dump,
    .preempt = ps_preempt,
    .set_topology = ps_set_topology,
};

static const hv_sched_policy_desc ps_desc = {
    .struct_size = sizeof(hv_sched_policy_desc),
    .name = "propshare",
    .description = "ESX-style proportional share (stride/virtual time) with min/max per 100 ms, "
                   "affinity and hyperthread sharing",
    .ops = &ps_ops,
    .key_count = sizeof ps_keys / sizeof ps_keys[0],
    .command_count = sizeof ps_commands / sizeof ps_commands[0],
    .keys = ps_keys,
    .commands = ps_commands,
};

static const hv_sched_policy_desc *const ps_list[] = { &ps_desc };

HVS_PLUGIN(ps_list, "org.hvhost.sched.propshare", "Proportional-share scheduler")
