#!/usr/bin/env python3
"""Content-based page sharing: hvhost's scanner vs Linux KSM under QEMU, one run.

Ten `memshare` guests (64 MiB each; 44 MiB filled with 16 patterns and 1 MiB of pages
unique to each guest, then proved over and over in ring 3, one pattern page rewritten
per pass) run for WINDOW seconds (default 60):
  - hvhost: one process, page sharing at its default scan rate (4096 pages/s) unless
    --rate; shared + zero pages from the console's `mem raw`, the scanner thread's CPU
    time from the same line;
  - QEMU: ten processes (mem-merge on, QEMU's default) with KSM running at its default
    speed (pages_to_scan 100 every 20 ms = 5000 pages/s); pages saved from
    /sys/kernel/mm/ksm (pages_sharing), ksmd's CPU time from /proc. KSM's settings are
    restored afterwards. Without QEMU or a writable /sys/kernel/mm/ksm/run that side is
    skipped.
Reported per side: seconds until 60 % of the guests' memory is shared, the share at the
end, the scanner's CPU in percent of one core over the whole window and over its last
STEADY seconds (default 20: sharing done, only the guests' rewrites to re-merge), the
scan throughput in pages per CPU second of the scanner (hvhost; KSM's full_scans are
too coarse for it), and the PSS of the hypervisor process(es).

Usage: bench/memshare.py [--window 60] [--rate N] [--debug]
Needs root for KVM (and for KSM). Not a timed test: it prints the numbers.
"""
import argparse, os, signal, subprocess, sys, tempfile, time

from benchlib import MEM_MIB, ROOT, have_qemu, hvhost_path, make_guests, qemu_cmd, write_vmx

GUEST = os.path.join(ROOT, "guests/build/memshare.elf")
VMS = 10
PAGES = VMS * MEM_MIB * 256
KSM = "/sys/kernel/mm/ksm"


def pss_kib(pid):
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_hvhost(binary, window, rate, tmp):
    sock = os.path.join(tmp, "console.sock")
    vmxs = [write_vmx(os.path.join(tmp, f"s{i}.vmx"), f"s{i}", GUEST, f"id={i + 1}",
                      f'hv.serial = "file:{tmp}/s{i}.log"\n') for i in range(VMS)]
    args = [binary, "run", "--console", sock] + (["--mem-scan-rate", str(rate)] if rate else []) + vmxs
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        start, reached, share, cpu_ns, scanned, samples = time.time(), None, 0.0, 0, 0, []
        while time.time() - start < window:
            time.sleep(1)
            out = subprocess.run([binary, "console", "--socket", sock, "mem", "raw"], capture_output=True, text=True).stdout
            saved = 0
            for line in out.splitlines():
                f = dict(w.split("=", 1) for w in line.split() if "=" in w)
                if "vm" in f:
                    saved += int(f["shrd"]) + int(f["zero"])
                elif line.startswith("sharing "):
                    cpu_ns = int(f["cpu_ns"])
                    scanned = int(f["scanned"])
            share = saved / PAGES
            samples.append((time.time(), cpu_ns / 1e9))
            if reached is None and share >= 0.6:
                reached = time.time() - start
        elapsed = time.time() - start
        steady = steady_cpu(samples)
        pss = pss_kib(p.pid)
        mismatches = sum(open(f"{tmp}/s{i}.log").read().count("MISMATCH") for i in range(VMS))
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=60)
    return dict(reached=reached, share=share, cpu=cpu_ns / 1e9 / elapsed * 100, steady=steady, pss=pss / 1024,
                mismatches=mismatches, throughput=scanned / (cpu_ns / 1e9) if cpu_ns else float("nan"))


STEADY = 20


def steady_cpu(samples):
    """CPU percent of one core over the last STEADY seconds of (time, cpu seconds) samples."""
    last = [s for s in samples if s[0] >= samples[-1][0] - STEADY]
    if len(last) < 2 or last[-1][0] <= last[0][0]:
        return float("nan")
    return (last[-1][1] - last[0][1]) / (last[-1][0] - last[0][0]) * 100


def ksm_read(name):
    with open(f"{KSM}/{name}") as f:
        return int(f.read())


def ksm_write(name, value):
    with open(f"{KSM}/{name}", "w") as f:
        f.write(str(value))


def ksmd_pid():
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/comm") as f:
                    if f.read().strip() == "ksmd":
                        return int(pid)
            except OSError:
                pass
    return None


def run_qemu(window, tmp):
    saved = {n: ksm_read(n) for n in ("run", "pages_to_scan", "sleep_millisecs")}
    ksmd = ksmd_pid()
    procs = []
    try:
        ksm_write("run", 2)          # unmerge whatever another user had merged: a clean start
        ksm_write("pages_to_scan", 100)
        ksm_write("sleep_millisecs", 20)
        for i in range(VMS):
            procs.append(subprocess.Popen(qemu_cmd(GUEST, f"id={i + 1}", serial=f"file:{tmp}/q{i}.log"),
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        ksm_write("run", 1)
        cpu0 = cpu_seconds(ksmd) if ksmd else 0
        start, reached, share, samples = time.time(), None, 0.0, []
        while time.time() - start < window:
            time.sleep(1)
            share = ksm_read("pages_sharing") / PAGES
            if ksmd:
                samples.append((time.time(), cpu_seconds(ksmd)))
            if reached is None and share >= 0.6:
                reached = time.time() - start
        elapsed = time.time() - start
        cpu = (cpu_seconds(ksmd) - cpu0) / elapsed * 100 if ksmd else float("nan")
        steady = steady_cpu(samples) if samples else float("nan")
        pss = sum(pss_kib(p.pid) for p in procs)
        mismatches = sum(open(f"{tmp}/q{i}.log").read().count("MISMATCH") for i in range(VMS))
    finally:
        for p in procs:
            p.kill()
            p.wait()
        ksm_write("run", 2)
        for n in ("pages_to_scan", "sleep_millisecs", "run"):
            ksm_write(n, saved[n])
    return dict(reached=reached, share=share, cpu=cpu, steady=steady, pss=pss / 1024, mismatches=mismatches,
                throughput=float("nan"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--window", type=int, default=60)
    ap.add_argument("--rate", type=int, default=0, help="hvhost --mem-scan-rate (default: hvhost's default)")
    ap.add_argument("--debug", action="store_true")
    a = ap.parse_args()
    make_guests(GUEST)
    conf = "debug" if a.debug else "release"
    r = subprocess.run(["swift", "build", "-c", conf, "--product", "hvhost"], cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"swift build -c {conf} failed:\n{r.stdout[-3000:]}{r.stderr[-2000:]}")
    with tempfile.TemporaryDirectory() as tmp:
        results = {"hvhost": run_hvhost(hvhost_path(conf), a.window, a.rate, tmp)}
        if not have_qemu():
            print("qemu-system-x86_64 not installed: no comparison (apt-get install qemu-system-x86)")
        elif not os.access(f"{KSM}/run", os.W_OK):
            print(f"{KSM}/run is not writable: no KSM comparison")
        else:
            results["qemu+ksm"] = run_qemu(a.window, tmp)
    print(f"{VMS} guests x {MEM_MIB} MiB, {a.window} s")
    print(f"{'side':10} {'60% after':>10} {'shared':>8} {'scan CPU':>9} {'steady':>8} {'pages/CPU-s':>12} "
          f"{'PSS MiB':>8} {'errors':>7}")
    for side, m in results.items():
        reached = f"{m['reached']:.0f} s" if m["reached"] is not None else "never"
        print(f"{side:10} {reached:>10} {m['share'] * 100:7.1f}% {m['cpu']:8.2f}% {m['steady']:7.2f}% "
              f"{m['throughput']:12.0f} {m['pss']:8.0f} {m['mismatches']:7d}")


if __name__ == "__main__":
    main()
