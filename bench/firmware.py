#!/usr/bin/env python3
"""Firmware boot phases, hvhost vs QEMU, same SeaBIOS image, same disk, same run.

Scenarios (each run alternately under hvhost and QEMU, --repeat times, median shown):
  nodisk: SeaBIOS with no boot device, from power-on to its banner on the 0x402 debug
          console and to "No bootable device".
  mbr:    SeaBIOS boots guests/build/mbr.bin from SCSI target 0 through its mpt-scsi
          driver: hvhost's lsilogic (LSI53C1030) vs QEMU's mptsas1068; to the banner,
          to "Booting from Hard Disk...", and to the MBR's debug exit.
QEMU gets the same firmware (-bios), memory, CPU model and debug console (isa-debugcon
at 0x402) and no fw_cfg boot order (it boots the only disk). Wall time from process
start and the process's CPU time (user + system, which includes KVM's emulation of the
firmware's 16/32-bit code on this host) are reported per phase.

Usage: bench/firmware.py [--repeat R] [--hvhost PATH] [--debug] [--bios PATH]
"""
import argparse, os, statistics, subprocess, sys, tempfile, time

from benchlib import MEM_MIB, ROOT, have_qemu, hvhost_path, make_guests, print_comparison

TMP = tempfile.mkdtemp(prefix="bench-firmware-")
MBR = os.path.join(ROOT, "guests/build/mbr.bin")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


def run_phases(cmd, log, markers, exits, limit=120):
    """Starts cmd; returns {marker: (wall, cpu)} as each marker shows up in `log`, and
    'exit' when the process ends by itself (exits=True) — else it is terminated."""
    if os.path.exists(log):
        os.unlink(log)
    start = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    seen, cpu = {}, 0.0
    while time.monotonic() - start < limit:
        c = cpu_seconds(p.pid)
        cpu = max(cpu, c or 0)
        text = open(log, "rb").read().decode("latin-1") if os.path.exists(log) else ""
        for m in markers:
            if m not in seen and m in text:
                seen[m] = (time.monotonic() - start, cpu)
        if len(seen) == len(markers) and not exits:
            break
        if p.poll() is not None:
            if exits:
                seen["exit"] = (time.monotonic() - start, cpu)
            break
        time.sleep(0.01)
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    missing = [m for m in markers if m not in seen] + (["exit"] if exits and "exit" not in seen else [])
    if missing:
        sys.exit(f"{' '.join(cmd[:2])}: stalled before {missing[0]!r} (log {log})")
    return seen


def hvhost_cmd(hvhost, name, bios, disk):
    vmx = os.path.join(TMP, f"{name}.vmx")
    lines = [f'displayName = "{name}"', f'memsize = "{MEM_MIB}"', f'hv.firmware = "{bios}"',
             f'hv.firmware.log = "{name}.hv.log"', f'hv.serial = "file:{name}.hv.serial"']
    if disk:
        lines += ['scsi0.present = "TRUE"', 'scsi0.virtualDev = "lsilogic"', 'scsi0:0.present = "TRUE"',
                  f'scsi0:0.fileName = "{disk}"', 'bios.bootOrder = "hdd"']
    with open(vmx, "w") as f:
        f.write("\n".join(lines) + "\n")
    return [hvhost, "run", vmx], os.path.join(TMP, f"{name}.hv.log")


def qemu_cmd(name, bios, disk):
    log = os.path.join(TMP, f"{name}.qemu.log")
    cmd = ["qemu-system-x86_64", "-enable-kvm", "-M", "pc", "-m", str(MEM_MIB), "-cpu", "max,arch-capabilities=off",
           "-bios", bios, "-display", "none", "-nodefaults", "-no-reboot",
           "-serial", f"file:{os.path.join(TMP, name + '.qemu.serial')}",
           "-chardev", f"file,id=fwlog,path={log}", "-device", "isa-debugcon,iobase=0x402,chardev=fwlog",
           "-device", "isa-debug-exit,iobase=0x501,iosize=2"]
    if disk:
        cmd += ["-device", "mptsas1068,id=hba", "-drive", f"file={disk},if=none,id=d0,format=raw",
                "-device", "scsi-hd,drive=d0,bus=hba.0,scsi-id=0"]
    return cmd, log


SCENARIOS = {
    "nodisk": (False, ["SeaBIOS (version", "No bootable device"], False),
    "mbr": (True, ["SeaBIOS (version", "Booting from Hard Disk..."], True),
}
LABELS = {"SeaBIOS (version": "banner", "No bootable device": "no bootable device",
          "Booting from Hard Disk...": "MBR read", "exit": "MBR debug exit"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--hvhost")
    ap.add_argument("--debug", action="store_true", help="use the debug build")
    ap.add_argument("--bios", default="/usr/share/seabios/bios-256k.bin")
    args = ap.parse_args()
    hvhost = args.hvhost
    if not hvhost:
        conf = "debug" if args.debug else "release"
        for product in ("hvhost", "LSILogic"):
            subprocess.run(["swift", "build", "-c", conf, "--product", product], cwd=ROOT, check=True,
                           stdout=subprocess.DEVNULL)
        hvhost = hvhost_path(conf)
    make_guests(MBR)
    disk = os.path.join(TMP, "boot.img")
    with open(MBR, "rb") as f, open(disk, "wb") as out:
        out.write(f.read())
        out.truncate(4 << 20)

    for name, (with_disk, markers, exits) in SCENARIOS.items():
        samples = {"hvhost": [], "qemu": []}
        for _ in range(args.repeat):
            cmd, log = hvhost_cmd(hvhost, name, args.bios, disk if with_disk else None)
            samples["hvhost"].append(run_phases(cmd, log, markers, exits))
            if have_qemu():
                cmd, log = qemu_cmd(name, args.bios, disk if with_disk else None)
                samples["qemu"].append(run_phases(cmd, log, markers, exits))
        keys = markers + (["exit"] if exits else [])
        results = {}
        for who, runs in samples.items():
            if runs:
                results[who] = {}
                for k in keys:
                    results[who][k + " wall"] = statistics.median(r[k][0] for r in runs)
                    results[who][k + " cpu"] = statistics.median(r[k][1] for r in runs)
        print(f"\n{name}: SeaBIOS {args.bios}, median of {args.repeat} (seconds)")
        rows = []
        for k in keys:
            rows.append((f"to {LABELS[k]} (wall)", k + " wall", "{:.2f}"))
            rows.append((f"to {LABELS[k]} (CPU)", k + " cpu", "{:.2f}"))
        print_comparison(rows, results, 32)


if __name__ == "__main__":
    main()
