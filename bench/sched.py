#!/usr/bin/env python3
"""CPU scheduling: hvhost's pCPU slots vs QEMU under cgroup v1 cpu.shares, same guests, one run.

Three `burn` guests (ring-3 CPU loop, `burn: <units>` printed at every RTC second change)
share ONE host core with weights 1:2:1:
  - hvhost: one pCPU slot pinned to the core (`--pcpus 1@CORE`), shares 1000:2000:1000, for
    each policy given (default: the propshare plugin and the built-in fallback);
  - QEMU: three qemu-system-x86_64 processes under `taskset -c CORE`, each in its own
    cgroup v1 cpu group with cpu.shares 1024:2048:1024.
Progress is read from the serial logs 0.4 s after two wall-clock second changes WINDOW
seconds apart (the guests' RTCs follow the host clock), so all VMs are measured over
the same seconds. Ratio error = max over VMs of |achieved fraction / wanted fraction - 1|.

hvhost also reports its slot hand-off cost from the pool counters (`sched pools`): the
mean time from a vCPU giving its slot back to the next vCPU leaving its wait, and the
preemption latency (slice end -> the holder back in the pool).

Usage: bench/sched.py [--window 10] [--core 1] [--policies propshare,fallback] [--no-qemu]
Needs root for cgroups (the QEMU row is skipped, with the reason, otherwise).
"""
import argparse, os, shutil, signal, subprocess, sys, tempfile, time

from benchlib import ROOT, have_qemu, hvhost_path, make_guests, qemu_cmd, write_vmx

GUEST = os.path.join(ROOT, "guests/build/burn.elf")
NAMES = ["a", "b", "c"]
WEIGHTS = {"a": 1, "b": 2, "c": 1}
CGROUP_CPU = "/sys/fs/cgroup/cpu"


def build():
    make_guests(GUEST)
    for product in ["hvhost", "SchedPropShare"]:
        r = subprocess.run(["swift", "build", "-c", "release", "--product", product], cwd=ROOT,
                           capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"swift build -c release --product {product} failed:\n{r.stdout[-3000:]}{r.stderr[-2000:]}")
    return hvhost_path()


def last_units(path):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    for line in reversed(data.decode(errors="replace").splitlines()):
        if line.startswith("burn: "):
            try:
                return int(line[6:])
            except ValueError:
                continue
    return None


def wait_for_progress(logs, timeout, procs):
    deadline = time.monotonic() + timeout
    while any(last_units(l) is None for l in logs.values()):
        if time.monotonic() > deadline:
            raise RuntimeError("no burn progress after %d s: %s" % (timeout, [n for n, l in logs.items() if last_units(l) is None]))
        if any(p.poll() is not None for p in procs):
            raise RuntimeError("a VMM exited early")
        time.sleep(0.1)


def sleep_to_second(offset=0.4):
    now = time.time()
    time.sleep((1 - (now % 1)) + offset)


def cpu_seconds(pids):
    """User + system CPU time of processes (all their threads), seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])      # utime, stime
    return total / tick


def measure(logs, window, pids):
    """Units/s of each VM over `window` whole wall-clock seconds, and the VMM processes'
    CPU use over that window (CPUs, e.g. 0.93)."""
    sleep_to_second()
    start = {n: last_units(l) for n, l in logs.items()}
    cpu0 = cpu_seconds(pids)
    for _ in range(window):
        sleep_to_second()
    cpu1 = cpu_seconds(pids)
    return {n: (last_units(logs[n]) - start[n]) / window for n in logs}, (cpu1 - cpu0) / window


def ratio_error(rates):
    total = sum(rates.values())
    wsum = sum(WEIGHTS.values())
    return max(abs((rates[n] / total) / (WEIGHTS[n] / wsum) - 1) for n in rates)


def console(binary, sock, line):
    return subprocess.run([binary, "console", "--socket", sock] + line.split(), capture_output=True, text=True).stdout


def run_hvhost(binary, policy, core, window, tmp):
    logs, vmx = {}, []
    for n in NAMES:
        logs[n] = os.path.join(tmp, f"hv-{policy}-{n}.log")
        vmx.append(write_vmx(os.path.join(tmp, f"hv-{policy}-{n}.vmx"), f"burn-{n}", GUEST, "seconds=0",
                             f'hv.serial = "file:{logs[n]}"\nsched.cpu.shares = "{1000 * WEIGHTS[n]}"\n'))
    sock = os.path.join(tmp, f"hv-{policy}.sock")
    pool = f"default:0:{policy}" if policy != "fallback" else "default:0"
    err = open(os.path.join(tmp, f"hv-{policy}.stderr"), "w")
    p = subprocess.Popen([binary, "run", "--pcpus", f"1@{core}", "--pool", pool, "--console", sock] + vmx,
                         stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL)
    try:
        wait_for_progress(logs, 30, [p])
        before = pool_counters(binary, sock)
        rates, cpu = measure(logs, window, [p.pid])
        after = pool_counters(binary, sock)
        stats = console(binary, sock, "sched stats")
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
        err.close()
    d = {k: after[k] - before[k] for k in after}
    handoff = d["handoff_total_us"] / d["handoffs"] if d["handoffs"] else float("nan")
    return rates, cpu, handoff, d["handoffs"], after["preempt_avg_us"], stats


def pool_counters(binary, sock):
    """Cumulative hand-off count and total (µs), from `sched pools`."""
    text = console(binary, sock, "sched pools")
    lines = text.splitlines()
    header = lines[0].split("\t")
    row = lines[1].split("\t")
    col = dict(zip(header, row))
    n = int(col["HANDOFFS"])
    avg = float(col["HANDOFF_AVG_US"]) if col["HANDOFF_AVG_US"] != "-" else 0.0
    return {"handoffs": n, "handoff_total_us": n * avg,
            "preempt_avg_us": float(col["PREEMPT_AVG_US"]) if col["PREEMPT_AVG_US"] != "-" else 0.0}


def qemu_available():
    if not have_qemu():
        return "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)"
    if not os.path.exists(os.path.join(CGROUP_CPU, "cpu.shares")):
        return f"no cgroup v1 cpu controller at {CGROUP_CPU}"
    if not os.access(CGROUP_CPU, os.W_OK):
        return f"{CGROUP_CPU} is not writable (run as root)"
    return None


def run_qemu(core, window, tmp):
    logs, procs, groups = {}, [], []
    try:
        for n in NAMES:
            cg = os.path.join(CGROUP_CPU, f"hvbench-{os.getpid()}-{n}")
            os.mkdir(cg)
            groups.append(cg)
            with open(os.path.join(cg, "cpu.shares"), "w") as f:
                f.write(str(1024 * WEIGHTS[n]))
            logs[n] = os.path.join(tmp, f"qemu-{n}.log")
            qemu = ["taskset", "-c", str(core)] + qemu_cmd(GUEST, "seconds=0", serial=f"file:{logs[n]}",
                                                           extra=["-smp", "1"])
            # Join the cgroup first, so every QEMU thread starts inside it.
            cmd = ["sh", "-c", f'echo $$ > {cg}/cgroup.procs && exec "$@"', "sh"] + qemu
            procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          stdin=subprocess.DEVNULL))
        wait_for_progress(logs, 120, procs)
        return measure(logs, window, [p.pid for p in procs])
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()
        for cg in groups:
            for _ in range(50):
                try:
                    os.rmdir(cg)
                    break
                except OSError:
                    time.sleep(0.1)


def fmt_rates(rates):
    total = sum(rates.values())
    return " ".join(f"{n}={rates[n]:.0f}({rates[n] / total:.3f})" for n in NAMES)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--window", type=int, default=10, help="seconds of progress compared")
    ap.add_argument("--core", type=int, default=os.cpu_count() - 1, help="the host core all VMs share")
    ap.add_argument("--policies", default="propshare,fallback")
    ap.add_argument("--no-qemu", action="store_true")
    args = ap.parse_args()
    binary = build()
    tmp = tempfile.mkdtemp(prefix="hv-sched-bench-")
    rows = []
    for policy in [p for p in args.policies.split(",") if p]:
        rates, cpu, handoff, n, preempt, stats = run_hvhost(binary, policy, args.core, args.window, tmp)
        rows.append((f"hvhost {policy}", rates, cpu, handoff))
        print(f"hvhost {policy}: units/s {fmt_rates(rates)}, process CPU {cpu:.2f}, hand-offs {n}, "
              f"mean hand-off {handoff:.1f} us, mean preemption latency {preempt:.1f} us", flush=True)
        print("  " + stats.strip().replace("\n", "\n  "), flush=True)
    why = "--no-qemu" if args.no_qemu else qemu_available()
    if why is None:
        rates, cpu = run_qemu(args.core, args.window, tmp)
        rows.append(("qemu + cgroup cpu.shares", rates, cpu, None))
        print(f"qemu: units/s {fmt_rates(rates)}, process CPU {cpu:.2f}", flush=True)
    print()
    print(f"burn x3, weights 1:2:1 on host core {args.core}, {args.window} s window; host: {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'VMM / scheduler':28} {'ratio error':>12} {'units/s':>9} {'VMM CPUs':>9} {'units/CPU-s':>12} {'hand-off us':>12}")
    for name, rates, cpu, handoff in rows:
        h = f"{handoff:.1f}" if handoff is not None else "n/a"
        total = sum(rates.values())
        print(f"{name:28} {ratio_error(rates) * 100:>11.2f}% {total:>9.0f} {cpu:>9.2f} {total / max(cpu, 1e-9):>12.0f} {h:>12}")
    if why is not None:
        print(f"qemu row skipped: {why}")
    q = next((r for r in rows if r[0].startswith("qemu")), None)
    if q:
        for name, rates, cpu, _ in rows:
            if name.startswith("hvhost"):
                print(f"{name} / qemu: ratio error {ratio_error(rates) / max(ratio_error(q[1]), 1e-9):.3g}x, "
                      f"units per CPU-second {(sum(rates.values()) / cpu) / (sum(q[1].values()) / q[2]):.3g}x")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
