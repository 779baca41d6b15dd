#!/usr/bin/env python3
"""CPU entitlements with shares, min and max: hvhost's scheduler vs cgroup v1, one run.

Eight CPU-bound loads with mixed shares, reservations (min) and limits (max) share TWO
host cores for WINDOW seconds (default 30), once as hvhost VMs and once as cgroup v1
groups:
  - hvhost: eight `burn` guests (ring-3 CPU loop) on two pCPU slots pinned to the cores
    (`--pcpus 2@CORES`), pool policy propshare, `sched.cpu.shares/min/max` per VM; CPU
    use per VM from `sched stats raw` (the vCPU threads' CPU clocks);
  - cgroup v1: eight CPU burner processes (a shell busy loop) under `taskset -c CORES`,
    each in its own group under /sys/fs/cgroup/cpu with cpu.shares = shares x 1.024 and,
    for a max, cpu.cfs_quota_us = max% of cpu.cfs_period_us (cgroup v1 has no minimum:
    a reservation can only be approximated by shares, so it is left out); CPU use per
    process from /proc/PID/schedstat.
Entitlement (the same for both): ESX-style water-filling over 200 % (two pCPUs) -- each
load gets shares x L, at least its min and at most its max and one pCPU, with L such that
everything is handed out. Error = achieved - entitled, in points of one pCPU. On a busy
host the eight loads together get less than 200 %; the "@got" columns therefore also
divide what they did get (their total) by the same rule and compare with that: how well
the scheduler split the CPU it had (reservations stay absolute, the rest goes by shares
up to the limits).
So that both sides compete alike with whatever else runs on the host, hvhost runs in a
cgroup of its own whose cpu.shares is the sum of the eight groups' (when cgroups can be
used; --no-cgroup runs it in the caller's group).

Usage: bench/sched_cgroup.py [--window 30] [--cores 0-1] [--debug] [--no-cgroup]
Needs root for cgroups and KVM. Not a timed test: it prints the numbers.
"""
import argparse, os, signal, subprocess, sys, tempfile, time

from benchlib import ROOT, hvhost_path, make_guests, write_vmx

GUEST = os.path.join(ROOT, "guests/build/burn.elf")
CGROUP_CPU = "/sys/fs/cgroup/cpu"
CAPACITY = 200.0     # two pCPUs, in percent of one

# name, shares, min %, max % (of one pCPU)
MIX = [
    ("v1", 1000, 0, 100),
    ("v2", 2000, 0, 100),
    ("v3", 4000, 0, 40),
    ("v4", 500, 50, 100),
    ("v5", 1000, 0, 100),
    ("v6", 3000, 0, 100),
    ("v7", 1000, 0, 10),
    ("v8", 500, 25, 100),
]


def entitlements(mix, capacity=CAPACITY):
    """Water-filling: rate_i = clamp(shares_i * L, min_i, min(max_i, 100)), sum = capacity."""
    def total(level):
        return sum(min(max(s * level, lo), min(hi, 100)) for _, s, lo, hi in mix)
    lo, hi = 0.0, 1.0
    while total(hi) < capacity and hi < 1e9:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if total(mid) < capacity:
            lo = mid
        else:
            hi = mid
    level = (lo + hi) / 2
    return {n: min(max(s * level, mn), min(mx, 100)) for n, s, mn, mx in mix}


def build(debug):
    make_guests(GUEST)
    conf = "debug" if debug else "release"
    for product in ["hvhost", "SchedPropShare"]:
        r = subprocess.run(["swift", "build", "-c", conf, "--product", product], cwd=ROOT, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"swift build -c {conf} --product {product} failed:\n{r.stdout[-3000:]}{r.stderr[-2000:]}")
    return hvhost_path(conf)


def console(binary, sock, line):
    return subprocess.run([binary, "console", "--socket", sock] + line.split(), capture_output=True, text=True).stdout


def raw_stats(binary, sock):
    """VM -> (time ns, cpu ns, hvhost's own entitlement %), from `sched stats raw`."""
    out = {}
    for line in console(binary, sock, "sched stats raw").splitlines():
        words = line.split()
        if len(words) < 2 or words[0] != "vcpu":
            continue
        f = dict(w.split("=", 1) for w in words[2:] if "=" in w)
        vm = f.get("vm")
        if vm is None:
            continue
        t, cpu, ent = out.get(vm, (0.0, 0.0, 0.0))
        out[vm] = (float(f["time"]), cpu + float(f["cpu"]), ent + float(f.get("ent", "0")))
    return out


def wait_for_burn(logs, timeout, proc):
    deadline = time.monotonic() + timeout
    while True:
        ready = all(os.path.exists(l) and b"burn: " in open(l, "rb").read() for l in logs)
        if ready:
            return
        if proc.poll() is not None:
            raise RuntimeError("hvhost exited early")
        if time.monotonic() > deadline:
            raise RuntimeError(f"no burn output after {timeout} s")
        time.sleep(0.2)


def run_hvhost(binary, cores, window, tmp, group_shares):
    vmx, logs = [], []
    for name, shares, mn, mx in MIX:
        log = os.path.join(tmp, f"hv-{name}.log")
        logs.append(log)
        vmx.append(write_vmx(os.path.join(tmp, f"hv-{name}.vmx"), name, GUEST, "seconds=0",
                             f'hv.serial = "file:{log}"\nsched.cpu.shares = "{shares}"\n'
                             f'sched.cpu.min = "{mn}"\nsched.cpu.max = "{mx}"\n'))
    sock = os.path.join(tmp, "hv.sock")
    err = open(os.path.join(tmp, "hv.stderr"), "w")
    cmd = [binary, "run", "--pcpus", f"2@{cores}", "--pool", "default:0-1:propshare", "--console", sock] + vmx
    cg = None
    if group_shares:
        cg = os.path.join(CGROUP_CPU, f"hvbench-{os.getpid()}-hvhost")
        os.mkdir(cg)
        with open(os.path.join(cg, "cpu.shares"), "w") as f:
            f.write(str(group_shares))
        cmd = ["sh", "-c", f'echo $$ > {cg}/cgroup.procs && exec "$@"', "sh"] + cmd
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL)
    try:
        wait_for_burn(logs, 60, p)
        time.sleep(1)
        before = raw_stats(binary, sock)
        time.sleep(window)
        after = raw_stats(binary, sock)
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
        err.close()
        if cg:
            for _ in range(50):
                try:
                    os.rmdir(cg)
                    break
                except OSError:
                    time.sleep(0.1)
    used, ents = {}, {}
    for name, *_ in MIX:
        t0, c0, _ = before[name]
        t1, c1, e1 = after[name]
        used[name] = (c1 - c0) / (t1 - t0) * 100
        ents[name] = e1
    return used, ents


def cgroup_problem():
    if not os.path.exists(os.path.join(CGROUP_CPU, "cpu.shares")):
        return f"no cgroup v1 cpu controller at {CGROUP_CPU}"
    if not os.path.exists(os.path.join(CGROUP_CPU, "cpu.cfs_quota_us")):
        return "the cgroup v1 cpu controller has no CFS quota (CONFIG_CFS_BANDWIDTH)"
    if not os.access(CGROUP_CPU, os.W_OK):
        return f"{CGROUP_CPU} is not writable (run as root)"
    return None


def cgroup_shares(shares):
    return max(2, shares * 1024 // 1000)


def schedstat_ns(pid):
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0])


def run_cgroup(cores, window):
    procs, groups = {}, []
    try:
        for name, shares, mn, mx in MIX:
            cg = os.path.join(CGROUP_CPU, f"hvbench-{os.getpid()}-{name}")
            os.mkdir(cg)
            groups.append(cg)
            with open(os.path.join(cg, "cpu.shares"), "w") as f:
                f.write(str(cgroup_shares(shares)))
            if mx < 100:
                with open(os.path.join(cg, "cpu.cfs_period_us")) as f:
                    period = int(f.read())
                with open(os.path.join(cg, "cpu.cfs_quota_us"), "w") as f:
                    f.write(str(period * mx // 100))
            # Join the group first, then become the burner.
            cmd = ["sh", "-c", f'echo $$ > {cg}/cgroup.procs && exec taskset -c {cores} sh -c "while :; do :; done"']
            procs[name] = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
        time.sleep(2)
        t0 = time.monotonic()
        c0 = {n: schedstat_ns(p.pid) for n, p in procs.items()}
        time.sleep(window)
        c1 = {n: schedstat_ns(p.pid) for n, p in procs.items()}
        wall = time.monotonic() - t0
        return {n: (c1[n] - c0[n]) / 1e9 / wall * 100 for n in procs}
    finally:
        for p in procs.values():
            p.kill()
        for p in procs.values():
            p.wait()
        for cg in groups:
            for _ in range(50):
                try:
                    os.rmdir(cg)
                    break
                except OSError:
                    time.sleep(0.1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--window", type=int, default=30, help="seconds measured")
    ap.add_argument("--cores", default="0-1", help="the two host cores (taskset list)")
    ap.add_argument("--debug", action="store_true", help="use the debug build (no release build)")
    ap.add_argument("--no-cgroup", action="store_true")
    args = ap.parse_args()
    binary = build(args.debug)
    ent = entitlements(MIX)
    ent_total = sum(ent.values())
    tmp = tempfile.mkdtemp(prefix="hv-sched-cgroup-")
    why = "--no-cgroup" if args.no_cgroup else cgroup_problem()
    group = sum(cgroup_shares(s) for _, s, _, _ in MIX) if why is None else None
    hv, hv_ent = run_hvhost(binary, args.cores, args.window, tmp, group)
    cg = run_cgroup(args.cores, args.window) if why is None else None
    rows = [("hvhost", hv)] + ([("cgroup", cg)] if cg else [])
    got = {side: entitlements(MIX, sum(used.values())) for side, used in rows}

    print(f"8 loads on 2 host cores ({args.cores}), {args.window} s each; host: {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}; {'debug' if args.debug else 'release'} hvhost, propshare"
          + (f", in a cgroup with cpu.shares {group}" if group else ""))
    print("percent of one pCPU; error = achieved - entitled (points); @got = entitled within the total the eight got")
    head = f"{'load':5} {'shares':>6} {'min':>4} {'max':>4} {'entitled':>9} {'(hvhost)':>9}"
    for side, _ in rows:
        head += f" | {side:>7} {'error':>7} {'ent@got':>8} {'err@got':>8} {'rel':>7}"
    print(head)
    worst = {side: (0.0, 0.0) for side, _ in rows}
    for name, shares, mn, mx in MIX:
        line = f"{name:5} {shares:6} {mn:4} {mx:4} {ent[name]:9.2f} {hv_ent[name]:9.2f}"
        for side, used in rows:
            e2 = got[side][name]
            err, err2 = used[name] - ent[name], used[name] - e2
            rel = err2 / e2 * 100
            worst[side] = (max(worst[side][0], abs(err)), max(worst[side][1], abs(rel)))
            line += f" | {used[name]:7.2f} {err:+7.2f} {e2:8.2f} {err2:+8.2f} {rel:+6.2f}%"
        print(line)
    total = f"{'total':5} {'':6} {'':4} {'':4} {ent_total:9.2f} {sum(hv_ent.values()):9.2f}"
    for side, used in rows:
        total += f" | {sum(used.values()):7.2f} {'':7} {sum(got[side].values()):8.2f} {'':8} {'':7}"
    print(total)
    for side, _ in rows:
        label = "hvhost propshare" if side == "hvhost" else "cgroup v1 shares + CFS quota"
        print(f"{label}: worst error {worst[side][0]:.2f} points; within what it got, worst {worst[side][1]:.2f} %")
    if not cg:
        print(f"cgroup v1 row skipped: {why}")


if __name__ == "__main__":
    main()
