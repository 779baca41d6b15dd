#!/usr/bin/env python3
"""SVGA II FIFO round trips, hvhost's SVGA plugin vs QEMU's -vga vmware, same guest.

guests/build/svga-draw.elf with bench=S sets 800x600x32 and, from ring 3, for S seconds
each (counted in PIT ticks): a 64x64 RECT_FILL followed by SYNC and polling BUSY, then
64x64 pixels written by the CPU to VRAM followed by UPDATE, SYNC and BUSY. Every op is
a full round trip (the guest waits for the device), so ops/s measures the device's
command path, not queueing. QEMU 7.2 advertises RECT_FILL but rejects the command
("Unknown command 0x02", then parses its arguments as commands), so only the UPDATE path
is compared. Reported: median of --repeat runs.

Usage: bench/svga.py [--seconds S] [--repeat R] [--hvhost PATH] [--debug]
"""
import argparse, os, re, statistics, subprocess, sys, tempfile

from benchlib import ROOT, have_qemu, hvhost_path, make_guests, print_comparison, qemu_cmd, write_vmx

GUEST = os.path.join(ROOT, "guests/build/svga-draw.elf")
TMP = tempfile.mkdtemp(prefix="bench-svga-")
LINE = re.compile(r"svga-bench: (\w+) (\d+) ops (\d+) ticks")


def hvhost_binary(debug):
    conf = "debug" if debug else "release"
    for product in ("hvhost", "SVGA"):
        subprocess.run(["swift", "build", "-c", conf, "--product", product], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL)
    return hvhost_path(conf)


def parse(out):
    """{name: ops per second} from the guest's bench lines."""
    found = {m.group(1): int(m.group(2)) * 100.0 / int(m.group(3)) for m in LINE.finditer(out)}
    if set(found) != {"rectfill", "update"}:
        raise RuntimeError("the guest did not report both measurements:\n" + out[-2000:])
    return found


def run_hvhost(binary, cmdline):
    vmx = write_vmx(os.path.join(TMP, "svga.vmx"), "bench-svga", GUEST, cmdline, 'svga.present = "TRUE"\n')
    p = subprocess.run([binary, "run", vmx], capture_output=True, text=True, timeout=600)
    if p.returncode != 1:   # the guest's exit 0, reported as QEMU's isa-debug-exit does
        raise RuntimeError(f"hvhost run exited {p.returncode}:\n{p.stderr[-2000:]}\n{p.stdout[-2000:]}")
    return parse(p.stdout)


def run_qemu(cmdline):
    p = subprocess.run(qemu_cmd(GUEST, cmdline, extra=["-vga", "vmware"]), capture_output=True, text=True, timeout=600)
    if p.returncode != 1:
        raise RuntimeError(f"qemu exited {p.returncode}:\n{p.stderr[-2000:]}\n{p.stdout[-2000:]}")
    found = parse(p.stdout)
    del found["rectfill"]   # not implemented by QEMU (see above)
    return found


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=2, help="seconds per measurement")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--hvhost", help="hvhost binary (default: build release)")
    ap.add_argument("--debug", action="store_true", help="build and use the debug hvhost")
    args = ap.parse_args()
    make_guests(GUEST)
    binary = args.hvhost or hvhost_binary(args.debug)
    cmdline = f"bench={args.seconds}"
    load0 = os.getloadavg()[0]
    results = {"hvhost": [], "qemu": []}
    for _ in range(args.repeat):
        results["hvhost"].append(run_hvhost(binary, cmdline))
        if have_qemu():
            results["qemu"].append(run_qemu(cmdline))
    table = {k: {m: statistics.median(r[m] for r in v) for m in v[0]} for k, v in results.items() if v}
    rows = [("RECT_FILL 64x64 + SYNC (ops/s)", "rectfill", "{:,.0f}"),
            ("CPU 64x64 + UPDATE + SYNC (ops/s)", "update", "{:,.0f}")]
    print(f"guest: {os.path.relpath(GUEST, ROOT)} bench={args.seconds}, median of {args.repeat}; "
          f"host: {os.cpu_count()} CPUs, load average {load0:.2f} at start")
    print_comparison(rows, table, 36)


if __name__ == "__main__":
    sys.exit(main())
