#!/usr/bin/env python3
"""SCSI disk I/O through an LSI Logic adapter, hvhost vs QEMU, same guest, same image.

guests/build/mpt-disk.elf with bench=1 drives the first disk at queue depth 1 from
ring 3 (polled): 1 MiB sequential writes then reads over --mib MiB, then --ops 4 KiB
reads and writes at random 4 KiB-aligned offsets in that area, timed with the TSC.
  hvhost: scsi0.virtualDev = "lsilogic" (LSI53C1030) on the VMkernel SCSI layer.
  QEMU:   -device mptsas1068 (the same MPI message protocol; QEMU has no 53C1030),
          scsi-hd with cache=writeback (the host page cache, as hvhost's flat disk).
Both use one raw image, created sparse for each run. Reported: median of --repeat runs.

Usage: bench/scsi.py [--mib N] [--ops N] [--repeat R] [--hvhost PATH] [--debug]
"""
import argparse, os, re, statistics, subprocess, sys, tempfile

from benchlib import ROOT, have_qemu, hvhost_path, make_guests, print_comparison, qemu_cmd, write_vmx

GUEST = os.path.join(ROOT, "guests/build/mpt-disk.elf")
TMP = tempfile.mkdtemp(prefix="bench-scsi-")
LINE = re.compile(r"mpt: bench (\w+) (\d+) ops (\d+) bytes (\d+) us")


def hvhost_binary(debug):
    conf = "debug" if debug else "release"
    for product in ("hvhost", "LSILogic"):
        subprocess.run(["swift", "build", "-c", conf, "--product", product], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL)
    return hvhost_path(conf)


def fresh_image(size_mib):
    path = os.path.join(TMP, "disk.img")
    if os.path.exists(path):
        os.unlink(path)
    with open(path, "wb") as f:
        f.truncate(size_mib << 20)
    return path


def parse(out):
    """{name: (ops, bytes, us)} from the guest's bench lines."""
    found = {m.group(1): tuple(int(m.group(i)) for i in (2, 3, 4)) for m in LINE.finditer(out)}
    if len(found) != 4:
        raise RuntimeError("the guest did not report all four measurements:\n" + out[-2000:])
    return found


def run_hvhost(binary, cmdline, image):
    vmx = write_vmx(os.path.join(TMP, "scsi.vmx"), "bench-scsi", GUEST, cmdline,
                    f'scsi0.present = "TRUE"\nscsi0.virtualDev = "lsilogic"\n'
                    f'scsi0:0.present = "TRUE"\nscsi0:0.fileName = "{image}"\n')
    p = subprocess.run([binary, "run", vmx], capture_output=True, text=True, timeout=600)
    if p.returncode != 1:   # the guest's exit 0, reported as QEMU's isa-debug-exit does
        raise RuntimeError(f"hvhost run exited {p.returncode}:\n{p.stderr[-2000:]}\n{p.stdout[-2000:]}")
    return parse(p.stdout)


def run_qemu(cmdline, image):
    cmd = qemu_cmd(GUEST, cmdline, extra=["-device", "mptsas1068,id=hba",
                                          "-drive", f"file={image},if=none,id=d0,format=raw,cache=writeback",
                                          "-device", "scsi-hd,drive=d0,bus=hba.0,scsi-id=0"])
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if p.returncode != 1:
        raise RuntimeError(f"qemu exited {p.returncode}:\n{p.stderr[-2000:]}\n{p.stdout[-2000:]}")
    return parse(p.stdout)


def metrics(runs):
    """Medians: IOPS for the random tests, MB/s for the sequential ones."""
    out = {}
    for name in ("randread4k", "randwrite4k"):
        out[name] = statistics.median(r[name][0] * 1e6 / r[name][2] for r in runs)
    for name in ("seqread1m", "seqwrite1m"):
        out[name] = statistics.median(r[name][1] / r[name][2] for r in runs)   # bytes/us = MB/s
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=int, default=256, help="area written and read (MiB)")
    ap.add_argument("--ops", type=int, default=20000, help="random 4 KiB operations of each kind")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--hvhost", help="hvhost binary (default: build release)")
    ap.add_argument("--debug", action="store_true", help="build and use the debug hvhost")
    args = ap.parse_args()
    make_guests(GUEST)
    binary = args.hvhost or hvhost_binary(args.debug)
    cmdline = f"mib={args.mib} bench=1 ops={args.ops}"
    load0 = os.getloadavg()[0]
    results = {"hvhost": [], "qemu": []}
    for _ in range(args.repeat):
        results["hvhost"].append(run_hvhost(binary, cmdline, fresh_image(args.mib + 16)))
        if have_qemu():
            results["qemu"].append(run_qemu(cmdline, fresh_image(args.mib + 16)))
    table = {k: metrics(v) for k, v in results.items() if v}
    rows = [("4 KiB random read, QD1 (IOPS)", "randread4k", "{:,.0f}"),
            ("4 KiB random write, QD1 (IOPS)", "randwrite4k", "{:,.0f}"),
            ("1 MiB sequential read (MB/s)", "seqread1m", "{:,.0f}"),
            ("1 MiB sequential write (MB/s)", "seqwrite1m", "{:,.0f}")]
    print(f"guest: {os.path.relpath(GUEST, ROOT)}, raw image, {args.mib} MiB area, {args.ops} random ops, "
          f"median of {args.repeat}; host: {os.cpu_count()} CPUs, load average {load0:.2f} at start")
    print_comparison(rows, table, 34)


if __name__ == "__main__":
    sys.exit(main())
