import Foundation
import XCTest

/// The `vmxnet-ping` guest (a VMXNET3 driver on the shared ARP/IPv4/ICMP/UDP roles,
/// guests/vmxnet-ping) over the Vmxnet plugin and the VMkernel's switches: against Vlance,
/// UDP streams between two Vmxnet VMs with 1 and 4 queues (zero loss, every byte checked),
/// jumbo frames, INTx, suspend in the middle of a stream, and the same guest against
/// QEMU's own vmxnet3.
final class VmxnetNetworkTests: XCTestCase {
    private static let dir: String = {
        let d = HostHarness.workDir + "/vmxnet"
        try? FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }()

    private func read(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "(no log at \(path))" }

    private func requirePlugins() throws {
        try HostHarness.requireHost()
        let dir = (HostHarness.hvhost as NSString).deletingLastPathComponent
        for lib in ["libVmxnet.so", "libVlance.so"] where !FileManager.default.fileExists(atPath: dir + "/" + lib) {
            XCTFail("\(lib) is not built next to hvhost (\(dir)): run `swift build`")
            throw XCTSkip("no \(lib)")
        }
    }

    /// A VM with one NIC; `model` picks the guest (vmxnet-ping or net-ping).
    private func vm(_ name: String, _ cmdline: String, network: String, model: String = "vmxnet",
                    memsize: String = "64") -> (vmx: String, log: String) {
        let log = Self.dir + "/\(name).log"
        try? FileManager.default.removeItem(atPath: log)
        let guest = model == "vmxnet" ? "vmxnet-ping" : "net-ping"
        let vmx = HostHarness.vmx(name, guest: guest, extra: [
            "hv.cmdline": cmdline, "hv.serial": "file:\(log)", "memsize": memsize, "ethernet0.present": "TRUE",
            "ethernet0.virtualDev": model, "ethernet0.networkName": network])
        return (vmx, log)
    }

    /// The sink's verdict line values: (bytes, bad, duplicate, missing).
    private func verdict(_ log: String) -> (bytes: UInt64, bad: Int, dup: Int, missing: Int)? {
        guard let r = log.range(of: #"sink: verified (\d+) bytes, \d+ MB/s, (\d+) bad, (\d+) duplicate, (\d+) missing"#,
                                options: .regularExpression) else { return nil }
        let nums = log[r].split(whereSeparator: { !$0.isNumber }).compactMap { UInt64($0) }
        return (nums[0], Int(nums[2]), Int(nums[3]), Int(nums[4]))
    }

    /// Per-queue rx counts from the driver's statistics ("vmxnet: queue N: rx R frames").
    private func rxPerQueue(_ log: String) -> [Int] {
        log.split(separator: "\n").compactMap { line -> Int? in
            guard line.hasPrefix("vmxnet: queue "), let r = line.range(of: "rx ") else { return nil }
            return Int(line[r.upperBound...].prefix { $0.isNumber })
        }
    }

    // MARK: ICMP against Vlance

    /// A Vmxnet VM pings a Vlance VM (MSI-X) and a Vlance VM pings a Vmxnet VM that takes
    /// its interrupts on INTx, each pair on its own switch.
    func testVmxnetAndVlanceExchangeICMPEcho() throws {
        try requirePlugins()
        let a = vm("vx-ping-a", "ip=10.0.1.1 peer=10.0.1.2 role=ping count=5 arp=20", network: "vx-mixed-1")
        let b = vm("vx-ping-b", "ip=10.0.1.2 role=respond count=5 timeout=120", network: "vx-mixed-1", model: "vlance")
        let c = vm("vx-ping-c", "ip=10.0.2.1 peer=10.0.2.2 role=ping count=5 arp=20", network: "vx-mixed-2", model: "vlance")
        let d = vm("vx-ping-d", "ip=10.0.2.2 role=respond count=5 timeout=120 intr=intx", network: "vx-mixed-2")
        let r = HostHarness.hvhostRun(["run", a.vmx, b.vmx, c.vmx, d.vmx], timeout: 180)
        XCTAssertFalse(r.timedOut, r.stderr)
        XCTAssertEqual(r.status, 0, r.stderr)
        let logA = read(a.log), logB = read(b.log), logC = read(c.log), logD = read(d.log)
        XCTAssertTrue(logA.contains("vmxnet: activated, 1 tx / 1 rx queues, rings 32, mtu 1500, msi-x"), logA)
        XCTAssertTrue(logD.contains("mtu 1500, intx"), logD)
        for seq in 1...5 {
            XCTAssertTrue(logA.contains("ping: 10.0.1.2 seq=\(seq) ok\n"), logA)
            XCTAssertTrue(logC.contains("ping: 10.0.2.2 seq=\(seq) ok\n"), logC)
        }
        XCTAssertTrue(logB.contains("respond: answered 5 echo requests"), logB)
        XCTAssertTrue(logD.contains("respond: answered 5 echo requests"), logD)
        XCTAssertTrue(logD.range(of: #"\d+ irqs \(0 not ours\)"#, options: .regularExpression) != nil, logD)
        XCTAssertFalse(logD.contains(" 0 irqs"), "the INTx responder took interrupts:\n" + logD)
        for name in ["vx-ping-a", "vx-ping-b", "vx-ping-c", "vx-ping-d"] {
            XCTAssertTrue(r.stderr.contains("\(name): guest exit code 0"), r.stderr)
        }
    }

    // MARK: UDP streams

    /// 256 MiB of UDP frames from one Vmxnet VM to another (about 10 s in a debug build)
    /// with the sink's acknowledgement window: every frame arrives once with every byte as
    /// sent.
    private func stream(queues: Int, mtu: Int = 1500, size: Int = 1514, window: Int = 256, network: String) throws {
        try requirePlugins()
        let bytes = 256 << 20
        let count = (bytes + size - 1) / size
        let extra = "queues=\(queues) mtu=\(mtu)"
        let s = vm("\(network)-sink", "ip=10.0.3.2 role=sink count=\(count) window=\(window) timeout=300 \(extra)",
                   network: network)
        let f = vm("\(network)-flood", "ip=10.0.3.1 peer=10.0.3.2 role=flood count=\(count) size=\(size) window=\(window) flows=8 ring=256 \(extra)",
                   network: network)
        let r = HostHarness.hvhostRun(["run", s.vmx, f.vmx], timeout: 300)
        let logS = read(s.log), logF = read(f.log)
        XCTAssertFalse(r.timedOut, r.stderr)
        XCTAssertEqual(r.status, 0, r.stderr + logS + logF)
        XCTAssertTrue(logF.contains("flood: \(count) frames in "), logF)
        XCTAssertTrue(logS.contains("sink: \(count) frames in "), logS)
        XCTAssertTrue(logS.contains("lost 0 of \(count)"), logS)
        let v = try XCTUnwrap(verdict(logS), logS)
        XCTAssertEqual(v.bytes, UInt64(count) * UInt64(size))
        XCTAssertEqual([v.bad, v.dup, v.missing], [0, 0, 0], logS)
        let perQueue = rxPerQueue(logS)
        XCTAssertEqual(perQueue.count, queues, logS)
        if queues > 1 {
            XCTAssertGreaterThan(perQueue.filter { $0 > 0 }.count, 1, "RSS spread the flows over the queues:\n" + logS)
        }
        XCTAssertTrue(r.stderr.contains("\(network)-sink: guest exit code 0"), r.stderr)
        print("vmxnet stream, \(queues) queue(s), \(size)-byte frames: " +
              (logS.split(separator: "\n").first { $0.hasPrefix("sink: first-to-last") }.map(String.init) ?? "?"))
    }

    func testUDPStreamOneQueueZeroLossVerified() throws {
        try stream(queues: 1, network: "vx-stream-1")
    }

    func testUDPStreamFourQueuesZeroLossVerified() throws {
        try stream(queues: 4, network: "vx-stream-4")
    }

    /// 9000-byte MTU: each frame is a HEAD buffer in ring 1 and BODY buffers in ring 2. The
    /// window stays below what the switch port's 1 MiB queue holds.
    func testJumboStreamUsesRingTwo() throws {
        try stream(queues: 1, mtu: 9000, size: 9014, window: 64, network: "vx-jumbo")
    }

    // MARK: suspend

    /// The flood VM is suspended mid-stream and resumed next to the sink: it continues its
    /// sequence (no new boot) and the sink gets every frame once, byte for byte.
    func testSuspendMidStreamAndTrafficContinues() throws {
        try requirePlugins()
        let file = Self.dir + "/vx-susp-flood.hvsusp", socket = Self.dir + "/vx-susp.sock"
        try? FileManager.default.removeItem(atPath: file)
        try? FileManager.default.removeItem(atPath: socket)
        let count = 100_000
        let s = vm("vx-susp-sink", "ip=10.0.4.2 role=sink count=\(count) window=256 idle=120 timeout=300", network: "vx-susp")
        let f = vm("vx-susp-flood", "ip=10.0.4.1 peer=10.0.4.2 role=flood count=\(count) size=1514 window=256 progress=10000 queues=4 flows=4",
                   network: "vx-susp")
        var suspend = HostHarness.Result(status: -1, stdout: "", stderr: "", timedOut: false)
        var resume = suspend
        var atSuspend = "", queues = "", stats = ""
        let r = HostHarness.hvhostRun(["run", "--console", socket, s.vmx, f.vmx], timeout: 240) { _ in
            for _ in 0..<1000 where !FileManager.default.fileExists(atPath: socket) { usleep(10_000) }
            let deadline = Date().addingTimeInterval(120)
            while !self.read(f.log).contains("flood: 20000 sent") && Date() < deadline { usleep(10_000) }
            queues = HostHarness.hvhostRun(["console", "--socket", socket, "device", "vx-susp-flood", "ethernet0", "queues"],
                                           timeout: 30).stdout
            stats = HostHarness.hvhostRun(["console", "--socket", socket, "device", "vx-susp-flood", "ethernet0", "stats"],
                                          timeout: 30).stdout
            suspend = HostHarness.hvhostRun(["console", "--socket", socket, "suspend", "vx-susp-flood", file], timeout: 60)
            atSuspend = self.read(f.log)
            resume = HostHarness.hvhostRun(["console", "--socket", socket, "resume", file], timeout: 60)
        }
        let logS = read(s.log), logF = read(f.log)
        XCTAssertFalse(r.timedOut, r.stderr)
        XCTAssertEqual(r.status, 0, r.stderr)
        // The plugin's console commands: four active transmit queues, counters moving.
        XCTAssertEqual(queues.split(separator: "\n").filter { $0.hasPrefix("tx") }.count, 4, queues)
        XCTAssertTrue(queues.contains("tx3 ring "), queues)
        let sent = stats.split(separator: "\n").filter { $0.hasPrefix("tx") }
            .compactMap { $0.split(separator: " ").dropFirst(2).first.flatMap { Int($0) } }.reduce(0, +)
        XCTAssertGreaterThanOrEqual(sent, 20000, "unicast frames the transmit queues counted:\n" + stats)
        XCTAssertTrue(suspend.stdout.hasPrefix("vx-susp-flood: suspended to \(file)"), suspend.stdout + suspend.stderr)
        XCTAssertEqual(resume.stdout, "vx-susp-flood: resumed from \(file)\n", resume.stderr)
        XCTAssertTrue(atSuspend.contains("flood: 20000 sent") && !atSuspend.contains("flood: \(count) frames"),
                      "suspended in the middle of the stream:\n" + atSuspend)
        XCTAssertEqual(logF.components(separatedBy: "vmxnet: activated").count - 1, 1, "the flood booted again:\n" + logF)
        XCTAssertTrue(logF.contains("flood: \(count) frames in "), logF)
        XCTAssertTrue(logS.contains("lost 0 of \(count)"), logS)
        let v = try XCTUnwrap(verdict(logS), logS)
        XCTAssertEqual([v.bad, v.dup, v.missing], [0, 0, 0], logS)
        XCTAssertTrue(r.stderr.contains("vx-susp-flood: guest exit code 0") && r.stderr.contains("vx-susp-sink: guest exit code 0"),
                      r.stderr)
    }

    // MARK: QEMU

    private static let qemuArgs = ["-enable-kvm", "-M", "pc", "-m", "64", "-cpu", "max,arch-capabilities=off",
                                   "-display", "none", "-no-reboot", "-nodefaults", "-serial", "stdio",
                                   "-device", "isa-debug-exit,iobase=0x501,iosize=2"]

    private func freeLoopbackPort() throws -> UInt16 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw XCTSkip("socket(): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in bind(fd, sa, len) == 0 && getsockname(fd, sa, &len) == 0 }
        }
        guard ok else { throw XCTSkip("cannot bind a loopback port") }
        return UInt16(bigEndian: addr.sin_port)
    }

    /// Two QEMUs with `-device vmxnet3` joined by a socket netdev: ping, then a verified
    /// 4-queue UDP stream. A guest that passes against QEMU's vmxnet3 checks the driver
    /// (and so the plugin it also passes against) from the other side.
    func testSameGuestAgainstQEMUVmxnet3() throws {
        let qemu = try HostHarness.requireQEMU()
        let guest = HostHarness.guest("vmxnet-ping")
        func args(_ netdev: String, _ mac: String, _ append: String) -> [String] {
            Self.qemuArgs + ["-netdev", "socket,id=n0,\(netdev)", "-device", "vmxnet3,netdev=n0,mac=\(mac)",
                             "-kernel", guest, "-append", append]
        }
        func pair(_ listener: String, _ connector: String) throws -> (HostHarness.Result, HostHarness.Result) {
            let port = try freeLoopbackPort()
            var second = HostHarness.Result(status: -1, stdout: "", stderr: "", timedOut: false)
            let first = HostHarness.run(qemu, args("listen=127.0.0.1:\(port)", "52:54:00:12:34:02", listener), timeout: 120) { _ in
                usleep(500_000)   // let the listener open its socket
                second = HostHarness.run(qemu, args("connect=127.0.0.1:\(port)", "52:54:00:12:34:01", connector), timeout: 120)
            }
            return (first, second)
        }
        let (responder, pinger) = try pair("ip=10.0.0.2 role=respond count=5 timeout=60",
                                           "ip=10.0.0.1 peer=10.0.0.2 role=ping count=5 arp=20")
        XCTAssertEqual(pinger.status, 1, pinger.stdout + pinger.stderr)
        XCTAssertTrue(pinger.stdout.contains("vmxnet: activated, 1 tx / 1 rx queues"), pinger.stdout)
        XCTAssertTrue(pinger.stdout.contains("ping: 5/5 replies"), pinger.stdout)
        XCTAssertEqual(responder.status, 1, responder.stdout + responder.stderr)
        XCTAssertTrue(responder.stdout.contains("respond: answered 5 echo requests"), responder.stdout)

        let count = 20_000
        let (sink, flood) = try pair("ip=10.0.0.2 role=sink count=\(count) window=128 timeout=90 queues=4",
                                     "ip=10.0.0.1 peer=10.0.0.2 role=flood count=\(count) size=1514 window=128 queues=4 flows=8")
        XCTAssertEqual(flood.status, 1, flood.stdout + flood.stderr)
        XCTAssertEqual(sink.status, 1, sink.stdout + sink.stderr)
        XCTAssertTrue(sink.stdout.contains("lost 0 of \(count)"), sink.stdout)
        let v = try XCTUnwrap(verdict(sink.stdout), sink.stdout)
        XCTAssertEqual([v.bad, v.dup, v.missing], [0, 0, 0], sink.stdout)
    }
}
