#!/usr/bin/env python3
"""hvhost vs QEMU, same guest binary, same run, on this machine.

Measures (1) cold start to the guest's first serial byte, (2) port-I/O exits per
second to a user-space device (COM1 scratch register reads), (3) VMM memory
overhead: resident memory beyond the guest's RAM mapping while the guest idles,
(4) resident memory of eight idle VMs (one hvhost process; eight QEMU processes) and
the marginal memory of each VM after the first.
Prints a table with hvhost/QEMU ratios.
Usage: bench/run.py [--repeat N] [--pio N] [--hvhost PATH]
"""
import argparse, os, select, statistics, subprocess, sys, tempfile, time

from benchlib import MEM_MIB, ROOT, have_qemu, hvhost_path, make_guests, print_comparison, qemu_cmd, write_vmx

GUEST = os.path.join(ROOT, "guests/build/bench.elf")


def hvhost_cmd(binary, cmdline, vms=1, serial_logs=None):
    """`hvhost run` of `vms` VMs; with `serial_logs`, VM i writes its serial port there."""
    tmp = tempfile.gettempdir()
    paths = []
    for i in range(vms):
        extra = f'hv.serial = "file:{serial_logs[i]}"\n' if serial_logs else ""
        paths.append(write_vmx(os.path.join(tmp, f"bench-{os.getpid()}-{i}.vmx"), f"bench{i}" if i else "bench",
                               GUEST, cmdline, extra))
    return [binary, "run", *paths]


def idle_rss_kib(cmds, logs, until=b"bench: idle"):
    """Total RSS (KiB) of the processes of `cmds` once every serial log holds `until`."""
    for log in logs:
        open(log, "wb").close()
    procs = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL) for c in cmds]
    start = time.monotonic()
    try:
        while not all(until in open(log, "rb").read() for log in logs):
            if time.monotonic() - start > 120 or any(p.poll() is not None for p in procs):
                raise RuntimeError("guests did not reach idle")
            time.sleep(0.05)
        return sum(resident_beyond_guest_ram(p.pid)[0] for p in procs)
    finally:
        for p in procs:
            p.kill()
            p.wait()


def timed_run(cmd, until=b"bench: done", sample_memory_at=None):
    """Returns (seconds to first byte, seconds to `until`, rss info or None)."""
    start = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    first = done = None
    buf = b""
    mem = None
    while True:
        timeout = 0.05
        r, _, _ = select.select([p.stdout], [], [], timeout)
        now = time.monotonic() - start
        if sample_memory_at is not None and mem is None and now >= sample_memory_at:
            mem = resident_beyond_guest_ram(p.pid)
        if r:
            chunk = os.read(p.stdout.fileno(), 65536)
            if not chunk:
                break
            if first is None:
                first = now
            buf += chunk
            if done is None and until in buf:
                done = now
        elif p.poll() is not None:
            break
        if now > 120:
            p.kill()
            raise RuntimeError(f"timeout: {' '.join(cmd)}")
    p.wait()
    if done is None:
        raise RuntimeError(f"{cmd[0]}: guest did not finish; output: {buf[-500:]!r}")
    return first, done, mem


def resident_beyond_guest_ram(pid):
    """(total RSS KiB, RSS KiB excluding the mapping that holds guest RAM)."""
    total = guest = 0
    size = rss = 0
    name = ""
    ram = MEM_MIB * 1024
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            parts = line.split()
            if "-" in parts[0] and len(parts) >= 5 and not parts[0].endswith(":"):
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                size = (hi - lo) // 1024
                name = parts[5] if len(parts) > 5 else ""
            elif parts[0] == "Rss:":
                rss = int(parts[1])
                total += rss
                # hvhost: the memfd named after the VM; QEMU: the anonymous pc.ram block.
                if name.startswith("/memfd:bench-ram") or (not name and ram <= size <= ram + 4096):
                    guest += rss
    return total, total - guest


def median(xs):
    return statistics.median(xs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--pio", type=int, default=100000)
    ap.add_argument("--hvhost", help="hvhost binary (default: swift build -c release's)")
    args = ap.parse_args()
    make_guests(GUEST)
    binary = args.hvhost or hvhost_path()
    vmms = [("hvhost", lambda c: hvhost_cmd(binary, c))] + ([("qemu", lambda c: qemu_cmd(GUEST, c))] if have_qemu() else [])

    results = {}
    for name, make in vmms:
        cold = [timed_run(make("pio=0"))[0] for _ in range(args.repeat)]
        base = [timed_run(make("pio=0"))[1] for _ in range(args.repeat)]
        loaded = [timed_run(make(f"pio={args.pio}"))[1] for _ in range(args.repeat)]
        rate = args.pio / max(median(loaded) - median(base), 1e-9)
        _, _, mem = timed_run(make("idle=3"), sample_memory_at=2.0)
        results[name] = {"cold_ms": median(cold) * 1000, "pio_per_s": rate,
                         "rss_kib": mem[0], "overhead_kib": mem[1]}
    # Eight idle VMs: one hvhost process runs them all; QEMU needs a process each.
    logs = [os.path.join(tempfile.gettempdir(), f"bench-{os.getpid()}-serial{i}.log") for i in range(8)]
    for name in results:
        if name == "hvhost":
            one = idle_rss_kib([hvhost_cmd(binary, "idle=30", 1, logs)], logs[:1])
            total = idle_rss_kib([hvhost_cmd(binary, "idle=30", 8, logs)], logs)
        else:
            one = idle_rss_kib([qemu_cmd(GUEST, "idle=30", serial=f"file:{logs[0]}")], logs[:1])
            total = idle_rss_kib([qemu_cmd(GUEST, "idle=30", serial=f"file:{log}") for log in logs], logs)
        results[name].update({"rss8_mib": total / 1024, "marginal_mib": (total - one) / 7 / 1024})

    rows = [("cold start to first serial byte (ms, median of %d)" % args.repeat, "cold_ms", "{:.1f}"),
            ("port-I/O exits per second to a user-space device", "pio_per_s", "{:,.0f}"),
            ("VMM resident memory, total (KiB)", "rss_kib", "{:,}"),
            ("VMM memory beyond guest RAM (KiB)", "overhead_kib", "{:,}"),
            ("eight idle VMs, resident total (MiB)", "rss8_mib", "{:.1f}"),
            ("marginal resident memory per VM after the first (MiB)", "marginal_mib", "{:.2f}")]
    print(f"guest: {os.path.relpath(GUEST, ROOT)}, {MEM_MIB} MiB, 1 vCPU; host: {os.cpu_count()} CPUs")
    print_comparison(rows, results, 58)


if __name__ == "__main__":
    sys.exit(main())
