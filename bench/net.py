#!/usr/bin/env python3
"""Guest-to-guest networking, hvhost vs QEMU, same guest binary, same run.

Two VMs boot guests/build/net-ping.elf: a `flood` guest sends N minimum-size (60-byte)
UDP frames as fast as its PCnet TX ring allows, and a `sink` guest counts them
(busy-polling its RX ring in ring 3 once the flood starts).
  hvhost: both VMs in one `hvhost run`, Vlance NICs on one virtual switch.
  QEMU:   two QEMU processes, `-device pcnet`, joined by a socket netdev on 127.0.0.1.
Also the ICMP echo round trip (ping/respond pair, median of the guest-measured RTTs).

Reported per VMM (median of --repeat runs): frames/s delivered to the sink (first to
last frame, the sink's TSC), frames/s the flood guest pushed into its NIC, frames lost
(the sink's PCnet counts them as missed: no free RX descriptor), and ping RTT.

With --vmxnet: the paravirtual NIC instead, one run each. hvhost Vmxnet and QEMU
`-device vmxnet3` boot the same guests/build/vmxnet-ping.elf, hvhost Vlance the net-ping
guest (same roles, runtime/net.c): 60-byte frames/s (no flow control, loss reported), and
MB/s of verified 1514-byte and 9014-byte (9000 MTU) frames with the sink's acknowledgement
window (zero loss). Vlance has no jumbo frames.

Usage: bench/net.py [--frames N] [--repeat R] [--ring D] [--hvhost PATH] [--debug] [--vmxnet]
"""
import argparse, os, re, socket, statistics, subprocess, sys, tempfile, threading, time

import benchlib
from benchlib import ROOT, have_qemu, hvhost_path, make_guests, print_comparison, write_vmx

GUEST = os.path.join(ROOT, "guests/build/net-ping.elf")
VMXNET_GUEST = os.path.join(ROOT, "guests/build/vmxnet-ping.elf")
TMP = tempfile.mkdtemp(prefix="bench-net-")

SINK_RE = re.compile(r"sink: (\d+) frames in \d+ ms\nsink: first-to-last (\d+) us")
FLOOD_RE = re.compile(r"flood: (\d+) frames in \d+ ms\nflood: queued in (\d+) us")
RTT_RE = re.compile(r"ping: rtt (\d+) us")


def hvhost_binary(debug):
    conf = "debug" if debug else "release"
    for product in ("hvhost", "Vlance", "Vmxnet"):
        subprocess.run(["swift", "build", "-c", conf, "--product", product], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL)
    return hvhost_path(conf)


def vmx(name, cmdline, network, model="vlance"):
    path = os.path.join(TMP, f"{name}.vmx")
    log = os.path.join(TMP, f"{name}.log")
    if os.path.exists(log):
        os.unlink(log)
    write_vmx(path, name, VMXNET_GUEST if model == "vmxnet" else GUEST, cmdline,
              f'hv.serial = "file:{log}"\n'
              f'ethernet0.present = "TRUE"\nethernet0.virtualDev = "{model}"\n'
              f'ethernet0.networkName = "{network}"\n')
    return path, log


def run_hvhost(binary, rx_cmdline, tx_cmdline, timeout=120, model="vlance"):
    """One `hvhost run` with the receiving and the sending VM; returns (rx log, tx log)."""
    rx, rx_log = vmx("bench-rx", rx_cmdline, "bench-net", model)
    tx, tx_log = vmx("bench-tx", tx_cmdline, "bench-net", model)
    p = subprocess.run([binary, "run", rx, tx], capture_output=True, text=True, timeout=timeout)
    logs = []
    for log in (rx_log, tx_log):
        logs.append(open(log).read() if os.path.exists(log) else "")
    if p.returncode != 0:
        raise RuntimeError(f"hvhost run exited {p.returncode}:\n{p.stderr[-2000:]}\n{logs[0][-800:]}\n{logs[1][-800:]}")
    return logs


def qemu_cmd(netdev, mac, cmdline, device="pcnet"):
    return benchlib.qemu_cmd(VMXNET_GUEST if device == "vmxnet3" else GUEST, cmdline,
                             extra=["-netdev", f"socket,id=n0,{netdev}", "-device", f"{device},netdev=n0,mac={mac}"])


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def run_qemu(rx_cmdline, tx_cmdline, timeout=120, device="pcnet"):
    """Receiver listens, sender connects; returns (rx stdout, tx stdout)."""
    port = free_port()
    out = {}

    def go(key, cmd):
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        out[key] = p.stdout
        if p.returncode != 1:  # isa-debug-exit: (0 << 1) | 1
            out[key + "-fail"] = f"{key}: QEMU exited {p.returncode}: {p.stdout[-800:]} {p.stderr[-800:]}"

    rx = threading.Thread(target=go, args=("rx", qemu_cmd(f"listen=127.0.0.1:{port}", "52:54:00:00:00:02", rx_cmdline, device)))
    rx.start()
    time.sleep(0.5)
    go("tx", qemu_cmd(f"connect=127.0.0.1:{port}", "52:54:00:00:00:01", tx_cmdline, device))
    rx.join()
    if "tx-fail" in out:  # the sink may report lost frames (non-zero exit); the sender must not fail
        raise RuntimeError(out["tx-fail"])
    return out["rx"], out["tx"]


def throughput(runner, frames, ring):
    rx_log, tx_log = runner(f"ip=10.0.0.2 role=sink count={frames} timeout=60 ring={ring}",
                            f"ip=10.0.0.1 peer=10.0.0.2 role=flood count={frames} ring={ring}")
    m, f = SINK_RE.search(rx_log), FLOOD_RE.search(tx_log)
    if not m or not f:
        raise RuntimeError(f"no sink/flood result:\n{rx_log[-1500:]}\n{tx_log[-1500:]}")
    got, us = int(m.group(1)), int(m.group(2))
    sent, tx_us = int(f.group(1)), int(f.group(2))
    return {"rx_fps": (got - 1) * 1e6 / max(us, 1), "tx_fps": sent * 1e6 / max(tx_us, 1),
            "lost_pct": 100.0 * (frames - got) / frames}


def latency(runner, pings):
    rx_log, tx_log = runner(f"ip=10.0.0.2 role=respond count={pings} timeout=60",
                            f"ip=10.0.0.1 peer=10.0.0.2 role=ping count={pings}")
    rtts = [int(x) for x in RTT_RE.findall(tx_log)]
    if len(rtts) != pings:
        raise RuntimeError(f"ping: {len(rtts)}/{pings} replies:\n{tx_log[-1500:]}")
    return statistics.median(rtts)


VERIFIED_RE = re.compile(r"sink: verified (\d+) bytes, (\d+) MB/s, (\d+) bad, (\d+) duplicate, (\d+) missing")


def stream(runner, frames, size, window, extra):
    """MB/s of verified frames of `size` bytes with the acknowledgement window."""
    rx_log, tx_log = runner(f"ip=10.0.0.2 role=sink count={frames} window={window} timeout=120 {extra}",
                            f"ip=10.0.0.1 peer=10.0.0.2 role=flood count={frames} size={size} window={window} {extra}")
    m, v = SINK_RE.search(rx_log), VERIFIED_RE.search(rx_log)
    if not m or not v or int(v.group(3)) or int(v.group(4)):
        raise RuntimeError(f"no clean stream:\n{rx_log[-1500:]}\n{tx_log[-1500:]}")
    got, us = int(m.group(1)), int(m.group(2))
    return {"mbps": int(v.group(1)) / max(us, 1), "lost_pct": 100.0 * (frames - got) / frames}


def vmxnet_main(args, binary):
    """Vmxnet vs Vlance vs QEMU vmxnet3, one run each."""
    nics = [("hvhost vmxnet", lambda rx, tx: run_hvhost(binary, rx, tx, model="vmxnet"), True),
            ("hvhost vlance", lambda rx, tx: run_hvhost(binary, rx, tx), False)]
    if have_qemu():
        nics.append(("qemu vmxnet3", lambda rx, tx: run_qemu(rx, tx, device="vmxnet3"), True))
    load0 = os.getloadavg()[0]
    results = {}
    for name, runner, vmxnet in nics:
        ring = 512 if vmxnet else args.ring
        r = {}
        small = throughput(runner, args.frames, ring)
        r["fps60"], r["lost60"] = small["rx_fps"], small["lost_pct"]
        r["mb1500"] = stream(runner, max(args.frames // 4, 1000), 1514, 256, f"ring={ring}")["mbps"]
        r["mb9000"] = stream(runner, max(args.frames // 20, 1000), 9014, 64, "mtu=9000 ring=256")["mbps"] if vmxnet else None
        results[name] = r
        print(f"{name}: {r}", file=sys.stderr)
    names = [n for n, _, _ in nics]
    print(f"guests: vmxnet-ping (Vmxnet, QEMU vmxnet3), net-ping (Vlance); {args.frames} 60-byte frames, one run; "
          f"host: {os.cpu_count()} CPUs, load average {load0:.2f} at start")
    print(f"{'metric':40}" + "".join(f"{n:>16}" for n in names))
    for label, key, fmt in [("frames/s guest->guest (60-byte UDP)", "fps60", "{:,.0f}"),
                            ("60-byte frames lost (%)", "lost60", "{:.1f}"),
                            ("MB/s verified, 1500 MTU (1514-byte)", "mb1500", "{:.1f}"),
                            ("MB/s verified, 9000 MTU (9014-byte)", "mb9000", "{:.1f}")]:
        print(f"{label:40}" + "".join(f"{(fmt.format(results[n][key]) if results[n][key] is not None else 'n/a'):>16}"
                                      for n in names))
    v = results["hvhost vmxnet"]
    ratios = [f"vmxnet/vlance {v['fps60'] / results['hvhost vlance']['fps60']:.2f}x frames/s"]
    if "qemu vmxnet3" in results:
        q = results["qemu vmxnet3"]
        ratios.append(f"vmxnet/qemu-vmxnet3 {v['fps60'] / q['fps60']:.2f}x frames/s, "
                      f"{v['mb1500'] / q['mb1500']:.2f}x MB/s at 1500, {v['mb9000'] / q['mb9000']:.2f}x at 9000")
    print("; ".join(ratios))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=200000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--ring", type=int, default=512, help="PCnet descriptors per ring (8..512)")
    ap.add_argument("--pings", type=int, default=20)
    ap.add_argument("--hvhost", help="hvhost binary to use (default: swift build -c release)")
    ap.add_argument("--debug", action="store_true", help="build and use the debug hvhost")
    ap.add_argument("--vmxnet", action="store_true", help="Vmxnet vs Vlance vs QEMU vmxnet3 (one run)")
    args = ap.parse_args()
    make_guests()
    binary = args.hvhost or hvhost_binary(args.debug)
    if args.vmxnet:
        return vmxnet_main(args, binary)
    vmms = [("hvhost", lambda rx, tx: run_hvhost(binary, rx, tx))] + ([("qemu", run_qemu)] if have_qemu() else [])

    # Interleaved (hvhost, qemu, hvhost, ...) so that load from elsewhere on the host
    # hits both VMMs alike.
    load0 = os.getloadavg()[0]
    runs = {name: [] for name, _ in vmms}
    for _ in range(args.repeat):
        for name, runner in vmms:
            runs[name].append(throughput(runner, args.frames, args.ring))
    results = {}
    for name, runner in vmms:
        results[name] = {k: statistics.median(r[k] for r in runs[name]) for k in runs[name][0]}
        results[name]["rtt_us"] = latency(runner, args.pings)
        print(f"{name}: " + ", ".join(f"{r['rx_fps']:,.0f} rx/s ({r['lost_pct']:.1f}% lost)" for r in runs[name]),
              file=sys.stderr)

    rows = [("frames/s delivered guest->guest (60-byte UDP)", "rx_fps", "{:,.0f}"),
            ("frames/s pushed into the sender's NIC", "tx_fps", "{:,.0f}"),
            ("frames lost at the receiver (%)", "lost_pct", "{:.1f}"),
            ("ICMP echo round trip, median (us)", "rtt_us", "{:,.0f}")]
    print(f"guest: {os.path.relpath(GUEST, ROOT)}, {args.frames} frames, rings {args.ring}, "
          f"median of {args.repeat}; host: {os.cpu_count()} CPUs, load average {load0:.2f} at start")
    print_comparison(rows, results, 48)


if __name__ == "__main__":
    sys.exit(main())
