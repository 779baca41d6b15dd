/*
 * propshare.c — ESX-style proportional-share CPU scheduling as a plugin policy
 * ("propshare"), in plain C99 against hvplugin.h.
 *
 * Shares. Stride scheduling in virtual time: every vCPU has a virtual time `vt` that
 * advances by ran_ns * SCALE / shares when the host accounts CPU time to it; a pCPU
 * runs the eligible vCPU with the least vt. Slices end on a pool-wide 10 ms grid, so
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
 * Hyperthreads. Slots 2k and 2k+1 are siblings (hvsched_common.h). htsharing `none`:
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

#define PS_QUANTUM_NS  10000000ull   /* slice grid */
#define PS_PERIOD_NS  100000000ull   /* min/max accounting period (a multiple of the grid) */
#define PS_WAKE_CREDIT_NS (PS_QUANTUM_NS / 2)   /* most a woken vCPU may be behind gvt */
#define PS_PREEMPT_MARGIN_NS (PS_QUANTUM_NS / 2)   /* lead (as run time) that preempts on wake */

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
    uint64_t preempting;    /* pCPUs (bit i) preempt asked the host to re-decide, < 64 */
    int32_t woken;          /* the vCPU woken since the last preempt, -1 none */
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

static int ps_capped(const ps_vcpu *v, uint64_t period) {
    if (v->prm.max_pct >= 100) return 0;
    uint64_t budget = PS_PERIOD_NS / 100 * v->prm.max_pct;
    uint64_t used = ps_used_in(v, period);
    return used + HVS_MIN_SLICE_NS > budget;
}

/* ns the vCPU is behind its reservation at `now` (0 when not behind or no min). */
static uint64_t ps_deficit(const ps_vcpu *v, uint64_t now) {
    if (v->prm.min_pct == 0) return 0;
    uint64_t period = now / PS_PERIOD_NS;
    uint64_t elapsed = now - period * PS_PERIOD_NS;
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
static int ps_eligible(const ps_vcpu *c, uint32_t pcpu, uint64_t period) {
    return c->runnable && c->on_pcpu < 0 && hvs_allowed(c->prm.affinity, pcpu) && !ps_capped(c, period);
}

/* Whether `a` goes before `b` on `pcpu` at `now`. */
static int ps_better(const ps_vcpu *a, const ps_vcpu *b, uint32_t pcpu, uint64_t now) {
    uint64_t da = ps_deficit(a, now), db = ps_deficit(b, now);
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
    if (!p->cur || !p->slice_end || !p->since) {
        free(p->cur); free(p->slice_end); free(p->since); free(p);
        return HV_ENOMEM;
    }
    p->woken = -1;
    for (uint32_t i = 0; i < pcpu_count; i++) p->cur[i] = -1;
    *out = p;
    return HV_OK;
}

static void ps_deinit(hv_sched_policy *p) {
    if (!p) return;
    free(p->v); free(p->cur); free(p->slice_end); free(p->since); free(p);
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
    uint64_t credit = hvs_vt_span(PS_WAKE_CREDIT_NS, v->prm.shares);
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
    uint64_t period = now / PS_PERIOD_NS;
    uint64_t slice = hvs_grid_slice(now, PS_QUANTUM_NS);

    /* What the hyperthread sibling constrains: the vCPU running there (unless its
     * slice is over), or the best vCPU of the core that may only run there. */
    int32_t sib = hvs_sibling(pcpu, p->npcpu);
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
                int here = ps_eligible(c, pcpu, period), there = ps_eligible(c, (uint32_t)sib, period);
                if (!here && !there) continue;
                if (!best || ps_better(c, best, pcpu, now)) best = c;
            }
            if (best && !hvs_allowed(best->prm.affinity, pcpu))
                w = best;   /* fill this half as if it already ran on the other */
        }
    }

    ps_vcpu *pick = NULL;
    for (uint32_t i = 0; i < p->nv; i++) {
        ps_vcpu *c = &p->v[i];
        if (!ps_eligible(c, pcpu, period)) continue;
        if (w && (c == w || !ps_ht_compatible(c, w))) continue;
        if (!pick || ps_better(c, pick, pcpu, now)) pick = c;
    }
    if (!pick) {
        p->idle_picks++;
        p->slice_end[pcpu] = now + slice;
        hvs_set_pick(out, -1, slice);
        return;
    }

    if (ps_deficit(pick, now) > 0) {
        p->reserve_picks++;
    } else {
        /* Picked by share: bound unusable credit, then advance global virtual time. */
        uint64_t bound = hvs_vt_span(PS_QUANTUM_NS, pick->prm.shares);
        if (p->gvt > bound && pick->vt < p->gvt - bound) { pick->vt = p->gvt - bound; pick->vt_rem = 0; }
        if (pick->vt > p->gvt) p->gvt = pick->vt;
    }
    if (pick->period != period) { pick->period = period; pick->used = 0; }
    if (pick->prm.max_pct < 100) {
        uint64_t left = PS_PERIOD_NS / 100 * pick->prm.max_pct - pick->used;
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
    int32_t sib = hvs_sibling(pcpu, p->npcpu);
    if (sib < 0) return 1;
    const ps_vcpu *w = ps_running_on(p, (uint32_t)sib, now);
    return !w || ps_ht_compatible(c, w);
}

/* After a wake: the pCPU whose running vCPU the woken one should displace, if any. */
static uint64_t ps_preempt(hv_sched_policy *p, uint64_t now) {
    int32_t id = p->woken;
    p->woken = -1;
    ps_vcpu *v = id >= 0 ? ps_find(p, id) : NULL;
    uint64_t period = now / PS_PERIOD_NS;
    if (!v || !v->runnable || v->on_pcpu >= 0 || ps_capped(v, period)) return 0;
    uint64_t margin = hvs_vt_span(PS_PREEMPT_MARGIN_NS, v->prm.shares);
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
        if (ps_deficit(r, now) > 0 && ps_deficit(v, now) == 0) continue;   /* reservation */
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
                p->nv, runnable, running, p->npcpu, PS_QUANTUM_NS / 1000000ull, PS_PERIOD_NS / 1000000ull,
                (unsigned long long)p->gvt, (unsigned long long)p->picks, (unsigned long long)p->idle_picks,
                (unsigned long long)p->reserve_picks, (unsigned long long)p->preempts);
}

/* ------------------------------------------------------------------------ */

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
};

static const hv_sched_policy_desc ps_desc = {
    .struct_size = sizeof(hv_sched_policy_desc),
    .name = "propshare",
    .description = "ESX-style proportional share (stride/virtual time) with min/max per 100 ms, "
                   "affinity and hyperthread sharing",
    .ops = &ps_ops,
};

static const hv_sched_policy_desc *const ps_list[] = { &ps_desc };

HVS_PLUGIN(ps_list, "org.hvhost.sched.propshare", "Proportional-share scheduler")
