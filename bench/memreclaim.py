#!/usr/bin/env python3
"""Memory reclamation on hvhost: balloon inflate rate and host swap-in latency.

  python3 bench/memreclaim.py [--debug] [--mem MIB]

Balloon: the `balloon` guest (vmw_balloon's protocol) fills its memory; the console sets
its balloon target to half; measured: time from the command to the guest's
`balloon: size=<target>` line (pages locked per second, batches of 512) and to the host's
RssShmem dropping by that much.
Swap: the guest runs verify-and-rewrite passes over its memory; after the first pass the
console swaps half of it out by hand (`mem swapout`), the guest's next pass faults it
back through userfaultfd; `mem swapins` reports the host-side swap-in latencies
(fault read to UFFDIO_COPY done, p50/p99).

QEMU has no VMware balloon device (its virtio-balloon speaks another protocol, which the
test guest does not) and no VMM-level swap (it leaves paging to the host kernel), so
there is no like-for-like QEMU number here; none is printed.
"""
import argparse, os, re, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402


def shmem_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssShmem:"):
                return int(line.split()[1])
    return 0


def wait_for(path, pattern, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            text = open(path).read()
        except FileNotFoundError:
            text = ""
        m = re.search(pattern, text)
        if m:
            return m
        time.sleep(0.002)
    raise SystemExit(f"timed out waiting for {pattern!r} in {path}:\n{text}")


def console(hvhost, sock, *words):
    return subprocess.run([hvhost, "console", "--socket", sock, *words], capture_output=True, text=True,
                          check=True).stdout.strip()


def start(hvhost, work, name, cmdline, mem):
    log = os.path.join(work, f"{name}.log")
    sock = os.path.join(work, f"{name}.sock")
    vmx = os.path.join(work, f"{name}.vmx")
    with open(vmx, "w") as f:
        f.write(f'displayName = "{name}"\nmemsize = "{mem}"\n'
                f'hv.kernel = "{os.path.join(benchlib.ROOT, "guests/build/balloon.elf")}"\n'
                f'hv.cmdline = "{cmdline}"\nhv.serial = "file:{log}"\nsched.swap.dir = "{work}"\n')
    proc = subprocess.Popen([hvhost, "run", "--console", sock, vmx], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    while not os.path.exists(sock):
        time.sleep(0.01)
    return proc, log, sock


def balloon(hvhost, work, mem):
    proc, log, sock = start(hvhost, work, "bal", "", mem)
    try:
        wait_for(log, r"balloon: check ok pages=")
        half = mem * 256 // 2
        before = shmem_kib(proc.pid)
        t0 = time.monotonic()
        console(hvhost, sock, "mem", "balloon", "bal", f"{mem // 2}m")
        rss_done = None
        while True:
            now = time.monotonic()
            if rss_done is None and before - shmem_kib(proc.pid) >= half * 4:
                rss_done = now - t0
            if f"balloon: size={half} target={half}" in open(log).read():
                settled = now - t0
                break
            if now - t0 > 60:
                raise SystemExit("balloon did not settle in 60 s")
            time.sleep(0.001)
        while rss_done is None:
            if before - shmem_kib(proc.pid) >= half * 4:
                rss_done = time.monotonic() - t0
            time.sleep(0.001)
        return half, settled, rss_done
    finally:
        proc.terminate()
        proc.wait()


def swap(hvhost, work, mem):
    proc, log, sock = start(hvhost, work, "swp", "passes=1000", mem)
    try:
        wait_for(log, r"balloon: pass 1 ok")
        out = console(hvhost, sock, "mem", "swapout", "swp", f"{mem // 2}m")
        console(hvhost, sock, "mem", "swapins", "swp")  # clears
        n = len(re.findall(r"balloon: pass \d+ ok", open(log).read()))
        wait_for(log, rf"balloon: pass {n + 2} ok")
        return out, console(hvhost, sock, "mem", "swapins", "swp")
    finally:
        proc.terminate()
        proc.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--debug", action="store_true", help="use the debug build (numbers are not representative)")
    ap.add_argument("--mem", type=int, default=256, help="guest memsize in MiB (default 256)")
    args = ap.parse_args()
    hvhost = benchlib.hvhost_path("debug" if args.debug else "release")
    if not os.path.exists(hvhost):
        raise SystemExit(f"{hvhost} is missing: swift build{'' if args.debug else ' -c release'}")
    benchlib.make_guests(os.path.join(benchlib.ROOT, "guests/build/balloon.elf"))
    with tempfile.TemporaryDirectory(prefix="memreclaim-") as work:
        pages, settled, rss = balloon(hvhost, work, args.mem)
        print(f"balloon inflate: {pages} pages ({args.mem // 2} MiB of {args.mem}) in {settled:.3f} s "
              f"= {pages / settled:,.0f} pages/s; host RssShmem down by it after {rss:.3f} s")
        out, lat = swap(hvhost, work, args.mem)
        print(f"swap: {out}; {lat}")
    print("QEMU: no comparison (no VMware balloon device in QEMU; no VMM-level swap)")


if __name__ == "__main__":
    main()
