#!/usr/bin/env python3
"""Keystroke-to-pixel latency over VNC, hvhost's VNC server + SVGA plugin vs QEMU's
`-vga vmware -vnc`, same guest, same run.

guests/build/svga-draw.elf with keydraw=1 repaints a 16x16 square at (8,8) on each key
press (IRQ 1 → echo → CPU fill + UPDATE). A minimal RFB client here (raw encoding, no
authentication) sends a key press and release, then keeps one incremental update
request outstanding until an update shows the square's new colour: the time from
sending the key to reading that pixel is one sample. hvhost: RemoteDisplay.vnc on
127.0.0.1; QEMU: -vnc 127.0.0.1:N -vga vmware (accel=0 for both: QEMU 7.2's RECT_FILL
is broken). Reported: median and 90th percentile of --keys samples, and the updates
(FramebufferUpdate messages) the client read per key.

Usage: bench/console.py [--keys N] [--hvhost PATH] [--debug]
"""
import argparse, os, socket, statistics, struct, subprocess, sys, tempfile, time

from benchlib import ROOT, have_qemu, hvhost_path, make_guests, print_comparison, qemu_cmd, write_vmx

GUEST = os.path.join(ROOT, "guests/build/svga-draw.elf")
TMP = tempfile.mkdtemp(prefix="bench-console-")
PROBE = (16, 16)


def hvhost_binary(debug):
    conf = "debug" if debug else "release"
    for product in ("hvhost", "SVGA"):
        subprocess.run(["swift", "build", "-c", conf, "--product", product], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL)
    return hvhost_path(conf)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for(path, text, limit=120):
    deadline = time.time() + limit
    while time.time() < deadline:
        if os.path.exists(path) and text in open(path, errors="replace").read():
            return
        time.sleep(0.02)
    raise RuntimeError(f"timed out waiting for {text!r} in {path}")


class Client:
    def __init__(self, port):
        deadline = time.time() + 60
        while True:
            try:
                self.s = socket.create_connection(("127.0.0.1", port))
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.read(12)
        self.s.sendall(b"RFB 003.008\n")
        types = self.read(self.read(1)[0])
        if 1 not in types:
            raise RuntimeError(f"no security None: {list(types)}")
        self.s.sendall(b"\x01")
        if struct.unpack(">I", self.read(4))[0] != 0:
            raise RuntimeError("security failed")
        self.s.sendall(b"\x01")
        w, h = struct.unpack(">HH", self.read(4))
        self.read(16)
        self.read(struct.unpack(">I", self.read(4))[0])
        self.w, self.h = w, h
        self.fb = bytearray(w * h * 4)
        # 32 bpp little-endian XRGB, raw only.
        self.s.sendall(struct.pack(">BxxxBBBBHHHBBBxxx", 0, 32, 24, 0, 1, 255, 255, 255, 16, 8, 0))
        self.s.sendall(struct.pack(">BxHi", 2, 1, 0))

    def read(self, n):
        b = bytearray()
        while len(b) < n:
            chunk = self.s.recv(n - len(b))
            if not chunk:
                raise RuntimeError("server closed the connection")
            b += chunk
        return bytes(b)

    def request(self, incremental):
        self.s.sendall(struct.pack(">BBHHHH", 3, 1 if incremental else 0, 0, 0, self.w, self.h))

    def update(self):
        """Reads messages up to and including one FramebufferUpdate."""
        while True:
            t = self.read(1)[0]
            if t == 0:
                break
            if t == 2:
                continue
            if t == 3:
                self.read(3)
                self.read(struct.unpack(">I", self.read(4))[0])
                continue
            raise RuntimeError(f"server message {t}")
        self.read(1)
        for _ in range(struct.unpack(">H", self.read(2))[0]):
            x, y, w, h, enc = struct.unpack(">HHHHi", self.read(12))
            if enc == 0:
                data = self.read(w * h * 4)
                for row in range(h):
                    o = ((y + row) * self.w + x) * 4
                    self.fb[o:o + w * 4] = data[row * w * 4:(row + 1) * w * 4]
            elif enc == -223:
                self.w, self.h = w, h
                self.fb = bytearray(w * h * 4)
            else:
                raise RuntimeError(f"encoding {enc}")

    def pixel(self, x, y):
        o = (y * self.w + x) * 4
        return bytes(self.fb[o:o + 3])

    def key(self, keysym):
        self.s.sendall(struct.pack(">BBxxI", 4, 1, keysym) + struct.pack(">BBxxI", 4, 0, keysym))


def measure(port, keys):
    c = Client(port)
    c.request(False)
    c.update()
    while c.w < 800:        # QEMU starts at its 640x480 placeholder
        c.request(False)
        c.update()
    samples, updates = [], 0
    for _ in range(keys):
        before = c.pixel(*PROBE)
        t0 = time.perf_counter()
        c.key(0x61)
        while c.pixel(*PROBE) == before:
            c.request(True)
            c.update()
            updates += 1
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    return {"median": statistics.median(samples), "p90": samples[int(0.9 * (len(samples) - 1))],
            "updates": updates / keys}


def run_hvhost(binary, keys):
    port = free_port()
    serial = os.path.join(TMP, "hvhost-serial.txt")
    vmx = write_vmx(os.path.join(TMP, "console.vmx"), "bench-console", GUEST, "accel=0 keydraw=1",
                    f'svga.present = "TRUE"\nhv.serial = "file:{serial}"\n'
                    f'RemoteDisplay.vnc.enabled = "TRUE"\nRemoteDisplay.vnc.port = "{port}"\n')
    p = subprocess.Popen([binary, "run", vmx], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(serial, "input: ready")
        return measure(port, keys)
    finally:
        p.terminate()
        p.wait()


def run_qemu(keys):
    display = free_port() - 5900      # an ephemeral port, well above 5900
    serial = os.path.join(TMP, "qemu-serial.txt")
    cmd = qemu_cmd(GUEST, "accel=0 keydraw=1", serial="file:" + serial,
                   extra=["-vga", "vmware", "-vnc", f"127.0.0.1:{display}"])
    cmd[cmd.index("-display") + 1] = "none"
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(serial, "input: ready")
        return measure(5900 + display, keys)
    finally:
        p.terminate()
        p.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keys", type=int, default=40)
    ap.add_argument("--hvhost", help="hvhost binary (default: build release)")
    ap.add_argument("--debug", action="store_true", help="build and use the debug hvhost")
    args = ap.parse_args()
    make_guests(GUEST)
    binary = args.hvhost or hvhost_binary(args.debug)
    load0 = os.getloadavg()[0]
    results = {"hvhost": run_hvhost(binary, args.keys)}
    if have_qemu():
        results["qemu"] = run_qemu(args.keys)
    print(f"guest: {os.path.relpath(GUEST, ROOT)} keydraw=1, {args.keys} keys; hvhost {os.path.relpath(binary, ROOT)}; "
          f"host: {os.cpu_count()} CPUs, load average {load0:.2f} at start")
    print_comparison([("key to pixel, median (ms)", "median", "{:.1f}"),
                      ("key to pixel, 90th pct (ms)", "p90", "{:.1f}"),
                      ("updates read per key", "updates", "{:.1f}")], results, 30)


if __name__ == "__main__":
    sys.exit(main())
