#!/usr/bin/env python3
"""Guest to the "physical network" through an uplink, hvhost vs QEMU, same guest, same run.

A flood guest (guests/build/net-ping.elf, role=flood, 60-byte UDP frames) sends N frames
to 10.80.0.1, an address inside a network namespace this script makes (root needed):
  hvhost TAP:   `hvhost run --switch phys:tap=hvbt0`, the Vlance NIC on that switch, the
                TAP device inside the namespace (hvhost runs there).
  QEMU TAP:     `-netdev tap,ifname=hvbq0 -device pcnet`, inside the same namespace.
  hvhost veth:  `--switch phys:uplinks=hvbv0`, an AF_PACKET (TPACKET_V3) uplink on a veth
                pair whose far end holds 10.80.0.1 (no QEMU equivalent in QEMU 7.2).
Reported per path (median of --repeat runs): frames/s the namespace received (the
kernel's rx_packets of the TAP device or the veth's far end, divided by the guest's
flood time) and frames lost on the way (sent by the guest, never received).

Usage: bench/uplink.py [--frames N] [--repeat R] [--hvhost PATH] [--debug]
"""
import argparse, os, re, statistics, subprocess, sys, tempfile, time

import benchlib
from benchlib import ROOT, have_qemu, hvhost_path, make_guests, write_vmx

GUEST = os.path.join(ROOT, "guests/build/net-ping.elf")
TMP = tempfile.mkdtemp(prefix="bench-uplink-")
NS = f"hvbench{os.getpid() % 100000}"
FLOOD_RE = re.compile(r"flood: (\d+) frames in \d+ ms\nflood: queued in (\d+) us")


def ip(*args, check=True):
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def in_ns(cmd):
    return ["ip", "netns", "exec", NS, *cmd]


def rx_packets(dev, inside=True):
    out = ip(*(["-n", NS] if inside else []), "-s", "-o", "link", "show", dev).stdout
    # "RX: bytes packets errors ... \    <bytes> <packets> ..." on one line with -o.
    numbers = [f for f in out.split("RX:")[1].replace("\\", " ").split() if f.isdigit()]
    return int(numbers[1])


def tap(dev):
    """A TAP device in the namespace with 10.80.0.1/24, up (the VMM attaches to it)."""
    ip("-n", NS, "tuntap", "add", "dev", dev, "mode", "tap")
    ip("-n", NS, "addr", "add", "10.80.0.1/24", "dev", dev)
    ip("-n", NS, "link", "set", dev, "up")


def flood_cmdline(frames):
    return f"ip=10.80.0.2 peer=10.80.0.1 role=flood count={frames} ring=512"


def flood_result(log, received, frames):
    m = FLOOD_RE.search(log)
    if not m:
        raise RuntimeError(f"no flood result:\n{log[-1500:]}")
    sent, us = int(m.group(1)), int(m.group(2))
    # The namespace also counts the guest's ARP frames: a loss below zero is none.
    return {"fps": received * 1e6 / max(us, 1), "lost_pct": max(0.0, 100.0 * (sent - received) / max(sent, 1))}


def run_hvhost(binary, frames, switch, dev, inside):
    vmx = os.path.join(TMP, "uplink-flood.vmx")
    log = os.path.join(TMP, "uplink-flood.log")
    if os.path.exists(log):
        os.unlink(log)
    write_vmx(vmx, "uplink-flood", GUEST, flood_cmdline(frames),
              f'hv.serial = "file:{log}"\nethernet0.present = "TRUE"\n'
              f'ethernet0.virtualDev = "vlance"\nethernet0.networkName = "phys"\n')
    before = rx_packets(dev, inside)
    cmd = [binary, "run", "--switch", switch, vmx]
    p = subprocess.run(in_ns(cmd) if switch.startswith("phys:tap=") else cmd, capture_output=True, text=True, timeout=300)
    if "uplink-flood: guest exit code 0" not in p.stderr:
        raise RuntimeError(f"hvhost exited {p.returncode}: {p.stderr[-1500:]}")
    return flood_result(open(log).read(), rx_packets(dev, inside) - before, frames)


def run_qemu(frames, dev):
    cmd = benchlib.qemu_cmd(GUEST, flood_cmdline(frames),
                            extra=["-netdev", f"tap,id=n0,ifname={dev},script=no,downscript=no",
                                   "-device", "pcnet,netdev=n0,mac=52:54:00:00:00:02"])
    before = rx_packets(dev)
    p = subprocess.run(in_ns(cmd), capture_output=True, text=True, timeout=300)
    if p.returncode != 1:  # isa-debug-exit: (0 << 1) | 1
        raise RuntimeError(f"QEMU exited {p.returncode}: {p.stdout[-1500:]} {p.stderr[-800:]}")
    return flood_result(p.stdout, rx_packets(dev) - before, frames)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=200000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--hvhost", help="hvhost binary to use (default: swift build -c release)")
    ap.add_argument("--debug", action="store_true", help="build and use the debug hvhost")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/uplink.py makes a network namespace and TAP devices: run it as root")
    make_guests(GUEST)
    if args.hvhost:
        binary = args.hvhost
    else:
        conf = "debug" if args.debug else "release"
        for product in ("hvhost", "Vlance"):
            subprocess.run(["swift", "build", "-c", conf, "--product", product], cwd=ROOT, check=True,
                           stdout=subprocess.DEVNULL)
        binary = hvhost_path(conf)
    ip("netns", "add", NS)
    try:
        ip("-n", NS, "link", "set", "lo", "up")
        tap("hvbt0")
        tap("hvbq0")
        ip("link", "add", "hvbv0", "type", "veth", "peer", "name", "hvbv1", "netns", NS)
        ip("link", "set", "hvbv0", "up")
        ip("-n", NS, "addr", "add", "10.80.1.1/24", "dev", "hvbv1")
        ip("-n", NS, "link", "set", "hvbv1", "up")
        paths = {"hvhost TAP": lambda: run_hvhost(binary, args.frames, "phys:tap=hvbt0", "hvbt0", True),
                 "hvhost veth": lambda: run_hvhost(binary, args.frames, "phys:uplinks=hvbv0", "hvbv1", True)}
        if have_qemu():
            paths["QEMU TAP"] = lambda: run_qemu(args.frames, "hvbq0")
        results = {}
        for name, run in paths.items():
            runs = [run() for _ in range(args.repeat)]
            results[name] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(f"{args.frames} frames of 60 bytes, guest -> namespace, median of {args.repeat}")
        print(f"{'path':14} {'frames/s':>12} {'lost %':>8} {'vs QEMU TAP':>12}")
        q = results.get("QEMU TAP", {}).get("fps")
        for name, r in results.items():
            ratio = f"{r['fps'] / q:.3g}" if q else "n/a"
            print(f"{name:14} {r['fps']:12.0f} {r['lost_pct']:8.2f} {ratio:>12}")
        if not have_qemu():
            print(benchlib.NO_QEMU)
    finally:
        ip("netns", "del", NS, check=False)
        ip("link", "del", "hvbv0", check=False)


if __name__ == "__main__":
    main()
