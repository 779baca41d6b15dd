"""Helpers the bench scripts (run.py, net.py, sched.py) share: paths, building hvhost and
the guests, .vmx and QEMU command lines, and the hvhost-vs-QEMU table."""
import os, shutil, subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEM_MIB = 64
NO_QEMU = "qemu-system-x86_64 not installed: no comparison (apt-get install qemu-system-x86)"


def make_guests(guest=None):
    """`make -C guests`; with `guest`, only when that binary is missing."""
    if guest is None or not os.path.exists(guest):
        subprocess.run(["make", "-C", os.path.join(ROOT, "guests")], check=True, capture_output=True)


def hvhost_path(conf="release"):
    """Where `swift build -c conf` puts the hvhost binary (builds nothing)."""
    out = subprocess.run(["swift", "build", "-c", conf, "--show-bin-path"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout.strip()
    return os.path.join(out, "hvhost")


def have_qemu():
    return shutil.which("qemu-system-x86_64") is not None


def write_vmx(path, name, guest, cmdline, extra=""):
    """A .vmx that boots `guest` with `cmdline` in MEM_MIB MiB; `extra`: further lines."""
    with open(path, "w") as f:
        f.write(f'displayName = "{name}"\nmemsize = "{MEM_MIB}"\nhv.kernel = "{guest}"\n'
                f'hv.cmdline = "{cmdline}"\n' + extra)
    return path


def qemu_cmd(guest, cmdline, serial="stdio", extra=()):
    """qemu-system-x86_64 booting `guest` like hvhost does (KVM, MEM_MIB MiB, isa-debug-exit)."""
    return ["qemu-system-x86_64", "-enable-kvm", "-M", "pc", "-m", str(MEM_MIB),
            "-cpu", "max,arch-capabilities=off", "-display", "none", "-no-reboot", "-nodefaults",
            "-serial", serial, "-device", "isa-debug-exit,iobase=0x501,iosize=2", *extra,
            "-kernel", guest, "-append", cmdline]


def print_comparison(rows, results, width):
    """One line per (label, key, format) row: hvhost, QEMU (n/a without) and their ratio."""
    print(f"{'metric':{width}} {'hvhost':>12} {'qemu':>12} {'hvhost/qemu':>12}")
    for label, key, fmt in rows:
        h = results["hvhost"][key]
        q = results.get("qemu", {}).get(key)
        ratio = f"{h / q:.3g}" if q else "n/a"
        print(f"{label:{width}} {fmt.format(h):>12} {fmt.format(q) if q is not None else 'n/a':>12} {ratio:>12}")
    if "qemu" not in results:
        print(NO_QEMU)
