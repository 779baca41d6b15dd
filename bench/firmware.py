#!/usr/bin/env python3
"""Firmware boot phases, hvhost vs QEMU, same SeaBIOS image, same disk, same run.

Scenarios (each run alternately under hvhost and QEMU, --repeat times, median shown):
  nodisk: SeaBIOS with no boot device, from power-on to its banner on the 0x402 debug
          console and to "No bootable device".
  mbr:    SeaBIOS boots guests/build/mbr.bin from SCSI target 0 through its mpt-scsi
          driver: hvhost's lsilogic (LSI53C1030) vs QEMU's mptsas1068; to the banner,
          to "Booting from Hard Disk...", and to the MBR's debug exit.
  cdrom:  SeaBIOS boots guests/build/eltorito.iso (El Torito, no emulation, the same
          boot sector) from a CD-ROM drive on the same adapters (QEMU: scsi-cd); to the
          banner, to "Booting from DVD/CD...", and to the boot image's debug exit.
  ipxe:   SeaBIOS boots Debian's ipxe.lkrn as a Linux kernel (fw_cfg, linuxboot_dma),
          whose command-line script takes a static address, opens a PCnet NIC (Vlance vs
          QEMU's pcnet) and chains the multiboot probe by TFTP; markers on the serial
          port: iPXE's banner, the NIC open, the probe's verdict. hvhost's TFTP server is
          dnsmasq in a network namespace behind an AF_PACKET uplink (needs root); QEMU's
          is its user-mode network's built-in one.
QEMU gets the same firmware (-bios), memory, CPU model and debug console (isa-debugcon
at 0x402) and no fw_cfg boot order (it boots the only disk). Wall time from process
start and the process's CPU time (user + system, which includes KVM's emulation of the
firmware's 16/32-bit code on this host) are reported per phase.

Usage: bench/firmware.py [--repeat R] [--hvhost PATH] [--debug] [--bios PATH]
"""
import argparse, os, shutil, statistics, subprocess, sys, tempfile, time

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


IPXE = "/usr/lib/ipxe/ipxe.lkrn"
PROBE = os.path.join(ROOT, "guests/build/kformat-multiboot.elf")
PREFIX = "10.81.0"
IPXE_SCRIPT = " && ".join([f"set net0/ip {PREFIX}.2", "set net0/netmask 255.255.255.0", "ifopen net0",
                           "echo hv-ipxe: net0 up", f"chain tftp://{PREFIX}.1/kformat-multiboot.elf probe=ipxe-bench"])


def hvhost_cmd(hvhost, name, bios, medium, uplink=None):
    """medium: None, ("hdd", path), ("cdrom", path) or ("ipxe", None)."""
    vmx = os.path.join(TMP, f"{name}.vmx")
    lines = [f'displayName = "{name}"', f'memsize = "{MEM_MIB}"', f'hv.firmware = "{bios}"',
             f'hv.firmware.log = "{name}.hv.log"', f'hv.serial = "file:{name}.hv.serial"']
    kind, path = medium or (None, None)
    if kind in ("hdd", "cdrom"):
        lines += ['scsi0.present = "TRUE"', 'scsi0.virtualDev = "lsilogic"', 'scsi0:0.present = "TRUE"',
                  f'scsi0:0.fileName = "{path}"', f'bios.bootOrder = "{kind}"']
        if kind == "cdrom":
            lines.append('scsi0:0.deviceType = "cdrom-image"')
    if kind == "ipxe":
        lines += [f'hv.kernel = "{IPXE}"', f'hv.cmdline = "{IPXE_SCRIPT}"', 'ethernet0.present = "TRUE"',
                  'ethernet0.virtualDev = "vlance"', 'ethernet0.networkName = "phys"']
    with open(vmx, "w") as f:
        f.write("\n".join(lines) + "\n")
    switch = ["--switch", f"phys:uplinks={uplink}"] if uplink else []
    log = f"{name}.hv.serial" if kind == "ipxe" else f"{name}.hv.log"
    return [hvhost, "run"] + switch + [vmx], os.path.join(TMP, log)


def qemu_cmd(name, bios, medium, tftp_root=None):
    log = os.path.join(TMP, f"{name}.qemu.log")
    serial = os.path.join(TMP, name + ".qemu.serial")
    cmd = ["qemu-system-x86_64", "-enable-kvm", "-M", "pc", "-m", str(MEM_MIB), "-cpu", "max,arch-capabilities=off",
           "-bios", bios, "-display", "none", "-nodefaults", "-no-reboot", "-serial", f"file:{serial}",
           "-chardev", f"file,id=fwlog,path={log}", "-device", "isa-debugcon,iobase=0x402,chardev=fwlog",
           "-device", "isa-debug-exit,iobase=0x501,iosize=2"]
    kind, path = medium or (None, None)
    if kind in ("hdd", "cdrom"):
        device = "scsi-hd" if kind == "hdd" else "scsi-cd"
        cmd += ["-device", "mptsas1068,id=hba", "-drive", f"file={path},if=none,id=d0,format=raw,readonly=on",
                "-device", f"{device},drive=d0,bus=hba.0,scsi-id=0"]
    if kind == "ipxe":
        # SeaBIOS mirrors its screen (where iPXE prints) to COM1, as hvhost asks it to
        # on a VM without a display adapter.
        sercon = os.path.join(TMP, "sercon-port")
        with open(sercon, "wb") as f:
            f.write((0x3F8).to_bytes(2, "little"))
        cmd += ["-fw_cfg", f"name=etc/sercon-port,file={sercon}", "-kernel", IPXE, "-append", IPXE_SCRIPT,
                "-netdev", f"user,id=n0,net={PREFIX}.0/24,host={PREFIX}.1,tftp={tftp_root}",
                "-device", "pcnet,netdev=n0,romfile="]   # no PXE ROM at POST: hvhost offers none
        return cmd, serial
    return cmd, log


class TFTPNamespace:
    """dnsmasq serving the probe by TFTP on PREFIX.1 in a network namespace of its own,
    reached through a veth pair whose host end is hvhost's uplink."""

    def __init__(self, root):
        self.name = f"hvfw{os.getpid() % 100000}"
        self.uplink = self.name + "x"
        self.pid_file = os.path.join(TMP, "dnsmasq.pid")
        ip = lambda *a: subprocess.run(["ip"] + list(a), check=True)
        ip("netns", "add", self.name)
        ip("link", "add", self.uplink, "type", "veth", "peer", "name", self.uplink + "p")
        ip("link", "set", self.uplink + "p", "netns", self.name)
        ip("-n", self.name, "link", "set", self.uplink + "p", "name", "eth0")
        subprocess.run(["sysctl", "-q", "-w", f"net.ipv6.conf.{self.uplink}.disable_ipv6=1"])
        ip("link", "set", self.uplink, "up")
        ip("-n", self.name, "link", "set", "eth0", "up")
        ip("-n", self.name, "addr", "add", f"{PREFIX}.1/24", "dev", "eth0")
        subprocess.run(["ip", "netns", "exec", self.name, "/usr/sbin/dnsmasq", "--port=0", "--enable-tftp",
                        f"--tftp-root={root}", "--interface=eth0", "--bind-interfaces", "--user=root",
                        f"--pid-file={self.pid_file}", f"--log-facility={os.path.join(TMP, 'dnsmasq.log')}"], check=True)

    def close(self):
        try:
            os.kill(int(open(self.pid_file).read()), 15)
        except (OSError, ValueError):
            pass
        subprocess.run(["ip", "netns", "del", self.name])
        subprocess.run(["ip", "link", "del", self.uplink], stderr=subprocess.DEVNULL)


SCENARIOS = {
    "nodisk": (None, ["SeaBIOS (version", "No bootable device"], False),
    "mbr": ("hdd", ["SeaBIOS (version", "Booting from Hard Disk..."], True),
    "cdrom": ("cdrom", ["SeaBIOS (version", "Booting from DVD/CD..."], True),
    "ipxe": ("ipxe", ["iPXE initialising devices", "hv-ipxe: net0 up", "kformat: ok"], True),
}
LABELS = {"SeaBIOS (version": "banner", "No bootable device": "no bootable device",
          "Booting from Hard Disk...": "MBR read", "Booting from DVD/CD...": "boot catalog read",
          "iPXE initialising devices": "iPXE banner", "hv-ipxe: net0 up": "NIC open",
          "kformat: ok": "chained guest's verdict", "exit": "guest's debug exit"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--hvhost")
    ap.add_argument("--debug", action="store_true", help="use the debug build")
    ap.add_argument("--bios", default="/usr/share/seabios/bios-256k.bin")
    ap.add_argument("--only", help="comma-separated scenarios (default: all; ipxe needs root, dnsmasq and ipxe)")
    args = ap.parse_args()
    chosen = args.only.split(",") if args.only else list(SCENARIOS)
    hvhost = args.hvhost
    if not hvhost:
        conf = "debug" if args.debug else "release"
        for product in ("hvhost", "LSILogic", "Vlance"):
            subprocess.run(["swift", "build", "-c", conf, "--product", product], cwd=ROOT, check=True,
                           stdout=subprocess.DEVNULL)
        hvhost = hvhost_path(conf)
    make_guests()
    disk = os.path.join(TMP, "boot.img")
    with open(MBR, "rb") as f, open(disk, "wb") as out:
        out.write(f.read())
        out.truncate(4 << 20)
    media = {"hdd": ("hdd", disk), "cdrom": ("cdrom", os.path.join(ROOT, "guests/build/eltorito.iso")),
             "ipxe": ("ipxe", None), None: None}
    tftp_root = os.path.join(TMP, "tftp")
    os.makedirs(tftp_root, exist_ok=True)
    shutil.copy(PROBE, tftp_root)

    for name in chosen:
        kind, markers, exits = SCENARIOS[name]
        server = TFTPNamespace(tftp_root) if kind == "ipxe" else None
        samples = {"hvhost": [], "qemu": []}
        try:
            for _ in range(args.repeat):
                cmd, log = hvhost_cmd(hvhost, name, args.bios, media[kind], server and server.uplink)
                samples["hvhost"].append(run_phases(cmd, log, markers, exits, limit=240))
                if have_qemu():
                    cmd, log = qemu_cmd(name, args.bios, media[kind], tftp_root)
                    samples["qemu"].append(run_phases(cmd, log, markers, exits, limit=240))
        finally:
            if server:
                server.close()
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
