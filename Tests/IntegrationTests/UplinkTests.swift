import Foundation
import Glibc
import XCTest

/// Switches with uplinks into a network namespace the test makes: veth pairs stand in for
/// physical NICs, the namespace for the physical network.
final class UplinkTests: XCTestCase {
    private func read(_ path: String) -> String {
        (try? String(contentsOfFile: path, encoding: .utf8)) ?? "(no serial log at \(path))"
    }

    private func nicVMX(_ name: String, cmdline: String, network: String,
                        extra: [String: String] = [:]) -> (vmx: String, log: String) {
        let log = HostHarness.workDir + "/\(name).log"
        try? FileManager.default.removeItem(atPath: log)
        var keys = ["hv.cmdline": cmdline, "hv.serial": "file:\(log)",
                    "ethernet0.present": "TRUE", "ethernet0.virtualDev": "vlance", "ethernet0.networkName": network]
        keys.merge(extra) { $1 }
        return (HostHarness.vmx(name, guest: "net-ping", extra: keys), log)
    }

    private func requirePlugins() throws {
        try HostHarness.requireHost()
        let dir = (HostHarness.hvhost as NSString).deletingLastPathComponent
        for lib in ["libVlance.so", "libTeamingStandard.so"] where !FileManager.default.fileExists(atPath: dir + "/" + lib) {
            XCTFail("\(lib) is not built next to hvhost (\(dir)): run `swift build`")
            throw XCTSkip("no \(lib)")
        }
    }

    /// One uplink: an ICMP echo from inside the namespace reaches guest A (net-ping
    /// role=respond on a Vlance NIC) through the uplink, and guest B pings the namespace.
    func testNamespaceAndGuestsPingThroughOneUplink() throws {
        try requirePlugins()
        let ns = try NetNamespace()
        defer { ns.remove() }
        let uplink = try ns.addVeth("a", farEnd: "eth0")
        try ns.inside(["addr", "add", "10.77.0.1/24", "dev", "eth0"])
        let icmp = try ns.socket(AF_INET, Int32(SOCK_RAW.rawValue), Int32(IPPROTO_ICMP))
        defer { close(icmp) }

        let a = nicVMX("upl-a", cmdline: "ip=10.77.0.2 role=respond count=3 timeout=120", network: "phys")
        let b = nicVMX("upl-b", cmdline: "ip=10.77.0.3 peer=10.77.0.1 role=ping count=3", network: "phys")
        var replies = 0
        let r = HostHarness.hvhostRun(["run", "--switch", "phys:uplinks=\(uplink)", a.vmx, b.vmx], timeout: 150) { _ in
            replies = ICMPEcho.ping(icmp, "10.77.0.2", count: 3, timeout: 120)
        }
        let logA = read(a.log), logB = read(b.log)
        XCTAssertFalse(r.timedOut, r.stderr)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(replies, 3, "namespace -> guest A through the uplink\n" + logA + r.stderr)
        XCTAssertTrue(logA.contains("respond: answered 3 echo requests"), logA)
        XCTAssertTrue(logA.contains("from 10.77.0.1"), logA)
        XCTAssertTrue(logB.contains("arp: 10.77.0.1 is at "), logB)
        XCTAssertTrue(logB.contains("ping: 3/3 replies"), logB)
        XCTAssertTrue(r.stderr.contains("vSwitch 'phys': uplinks \(uplink), teaming 'failover' (built-in)"), r.stderr)
    }
}

extension UplinkTests {
    /// A namespace with a Linux bridge (the physical switch) and `count` veth pairs into it
    /// (e0, e1, ...); the bridge has 10.78.0.1/24. Returns the host ends.
    private func bridgedTeam(_ ns: NetNamespace, count: Int) throws -> [String] {
        try ns.inside(["link", "add", "br0", "type", "bridge"])
        var hostEnds: [String] = []
        for i in 0..<count {
            hostEnds.append(try ns.addVeth("u\(i)", farEnd: "e\(i)"))
            try ns.inside(["link", "set", "e\(i)", "master", "br0"])
        }
        try ns.inside(["addr", "add", "10.78.0.1/24", "dev", "br0"])
        try ns.inside(["link", "set", "br0", "up"])
        return hostEnds
    }

    /// Two uplinks, explicit failover order (the plugin policy): the guest pings the
    /// namespace over uplink 0; setting the far end of uplink 0 down moves its traffic to
    /// uplink 1 within 1 s, announced by a RARP from the guest's MAC on the far switch.
    func testFailoverToTheSecondUplinkWithinASecondAndRARP() throws {
        try requirePlugins()
        let ns = try NetNamespace()
        defer { ns.remove() }
        let team = try bridgedTeam(ns, count: 2)
        let first = try FrameCapture(ns, interface: "e0"), second = try FrameCapture(ns, interface: "e1")
        let vm = nicVMX("team-fo", cmdline: "ip=10.78.0.2 peer=10.78.0.1 role=ping count=40 interval=5", network: "team")
        var elapsed: TimeInterval = -1, rarp: [UInt8]?, afterwards: [UInt8]?, sequence = ""
        let r = HostHarness.hvhostRun(["run", "--switch", "team:uplinks=\(team[0]),\(team[1]):teaming=failover",
                                       vm.vmx], timeout: 150) { _ in
            guard first.next(timeout: 90, where: { FrameCapture.ipSource($0) == "10.78.0.2" }) != nil else {
                sequence = "no echo request from the guest on uplink 0"
                return
            }
            let pulled = Date()
            do { try ns.inside(["link", "set", "e0", "down"]) } catch { sequence = "\(error)"; return }
            rarp = second.next(timeout: 5) { FrameCapture.etherType($0) == 0x8035 }
            elapsed = Date().timeIntervalSince(pulled)
            afterwards = second.next(timeout: 10) { FrameCapture.ipSource($0) == "10.78.0.2" }
        }
        let log = read(vm.log)
        XCTAssertEqual(sequence, "", log + r.stderr)
        XCTAssertFalse(r.timedOut, r.stderr)
        XCTAssertNotNil(rarp, "no RARP on the second uplink's far end\n" + r.stderr)
        if let rarp {
            XCTAssertEqual(Array(rarp[0..<6]), [UInt8](repeating: 0xFF, count: 6))
            XCTAssertEqual(Array(rarp[20..<22]), [0, 3], "RARP reverse request")
            XCTAssertTrue(log.contains("net: pcnet mac \(FrameCapture.source(rarp))") || log.contains("pcnet: mac \(FrameCapture.source(rarp))"),
                          "the RARP announces the guest's MAC \(FrameCapture.source(rarp))\n" + log)
        }
        XCTAssertGreaterThanOrEqual(elapsed, 0)
        XCTAssertLessThan(elapsed, 1.0, "failover took \(elapsed) s")
        XCTAssertNotNil(afterwards, "the guest's traffic did not continue on uplink 1")
        XCTAssertTrue(r.stderr.contains("uplink \(team[0]) link down; 1 port(s) moved"), r.stderr)
        // At most the echo requests in flight while the link went away are lost (40 at 50 ms).
        let replies = log.range(of: #"ping: (\d+)/40 replies"#, options: .regularExpression).map { String(log[$0]) } ?? ""
        let answered = Int(replies.dropFirst(6).split(separator: "/").first ?? "") ?? 0
        XCTAssertGreaterThanOrEqual(answered, 38, log)
        print("failover: RARP \(Int(elapsed * 1000)) ms after the far end went down; \(answered)/40 echo replies")
    }

    /// Route by originating port id, by source MAC hash and by IP hash: four VMs spread
    /// over both uplinks; each VM's flow leaves on exactly one of them. (Static MACs
    /// ...:10-13, which the plugin's FNV-1a hash puts on uplinks 1, 0, 1, 0: generated MACs
    /// could all hash alike. IP hash: 10.78.0.10-13 XOR 10.78.0.1 is 11, 10, 13, 12, so
    /// uplinks 1, 0, 1, 0. This kernel has no bonding driver, so the far switch is a
    /// bridge; each flow staying on one uplink is what keeps its MAC table stable.)
    func testPortIDAndMACHashSpreadVMsOverBothUplinks() throws {
        try requirePlugins()
        for policy in ["portid", "machash", "iphash"] {
            let ns = try NetNamespace()
            defer { ns.remove() }
            let team = try bridgedTeam(ns, count: 2)
            let captures = [try FrameCapture(ns, interface: "e0"), try FrameCapture(ns, interface: "e1")]
            let vms = (0..<4).map { i in
                nicVMX("spread-\(policy)-\(i)", cmdline: "ip=10.78.0.\(10 + i) peer=10.78.0.1 role=ping count=3", network: "team",
                       extra: ["ethernet0.addressType": "static", "ethernet0.address": "00:50:56:00:00:1\(i)"])
            }
            var seen: [Set<String>] = [[], []]
            let lock = NSLock()
            let r = HostHarness.hvhostRun(["run", "--switch", "team:uplinks=\(team[0]),\(team[1]):teaming=\(policy)"]
                                          + vms.map(\.vmx), timeout: 150) { process in
                let group = DispatchGroup()
                for (i, capture) in captures.enumerated() {
                    DispatchQueue.global().async(group: group) {
                        // Until the VMs are done and the socket's queue is drained.
                        while true {
                            let f = capture.next(timeout: 0.5) {
                                FrameCapture.ipSource($0).hasPrefix("10.78.0.1") && FrameCapture.ipSource($0) != "10.78.0.1"
                            }
                            if let f {
                                _ = lock.withLock { seen[i].insert(FrameCapture.ipSource(f)) }
                            } else if !process.isRunning {
                                break
                            }
                        }
                    }
                }
                group.wait()
            }
            XCTAssertFalse(r.timedOut, r.stderr)
            for vm in vms { XCTAssertTrue(read(vm.log).contains("ping: 3/3 replies"), policy + ": " + read(vm.log)) }
            XCTAssertFalse(seen[0].isEmpty, "\(policy): no VM on uplink 0: \(seen)")
            XCTAssertFalse(seen[1].isEmpty, "\(policy): no VM on uplink 1: \(seen)")
            XCTAssertTrue(seen[0].isDisjoint(with: seen[1]), "\(policy): a VM used both uplinks: \(seen)")
            XCTAssertEqual(seen[0].union(seen[1]).count, 4, "\(policy): \(seen)")
            print("\(policy): uplink 0 carried \(seen[0].sorted()), uplink 1 \(seen[1].sorted())")
        }
    }
}

extension UplinkTests {
    /// A policy answering an uplink that does not exist is replaced by the built-in
    /// failover policy (logged with the reason); the guest still reaches the namespace.
    func testGarbageTeamingPolicyIsReplacedByBuiltInFailover() throws {
        try requirePlugins()
        let dir = HostHarness.workDir + "/teaming-garbage"
        _ = try HostHarness.buildFixturePlugin("teaming_garbage.c", into: dir)
        let ns = try NetNamespace()
        defer { ns.remove() }
        let team = try bridgedTeam(ns, count: 2)
        let vm = nicVMX("team-garbage", cmdline: "ip=10.78.0.2 peer=10.78.0.1 role=ping count=3", network: "team")
        let r = HostHarness.hvhostRun(["run", "--plugin-path", dir,
                                       "--switch", "team:uplinks=\(team[0]),\(team[1]):teaming=garbage", vm.vmx], timeout: 120)
        XCTAssertTrue(r.stderr.contains("team-garbage: guest exit code 0"), r.stderr)
        XCTAssertTrue(r.stderr.contains("teaming policy 'garbage' (plugin 'garbage teaming'"), r.stderr)
        XCTAssertTrue(r.stderr.contains("selected uplink 7"), r.stderr)
        XCTAssertTrue(r.stderr.contains("replaced by the built-in failover policy"), r.stderr)
        XCTAssertTrue(read(vm.log).contains("ping: 3/3 replies"), read(vm.log))
    }

    /// VLAN port groups over one uplink (VST): two VMs with one IP address, on VLANs 10 and
    /// 20. A tagged ARP request from the far side is answered, tagged alike, only by the VM
    /// of that VLAN; VLAN 30 gets no answer; a VGT guest (4095) sees the tags.
    func testVLANPortGroupsOverOneUplink() throws {
        try requirePlugins()
        let ns = try NetNamespace()
        defer { ns.remove() }
        let uplink = try ns.addVeth("v", farEnd: "eth0")
        let wire = try FrameCapture(ns, interface: "eth0")
        let v10 = nicVMX("vlan10", cmdline: "ip=10.9.0.2 role=respond count=1 timeout=100", network: "pg10")
        let v20 = nicVMX("vlan20", cmdline: "ip=10.9.0.2 role=respond count=1 timeout=100", network: "pg20")
        let vgt = nicVMX("vlan4095", cmdline: "role=sniff timeout=100", network: "trunk")
        var replies: [UInt16: [UInt8]] = [:], stray: [UInt8]?
        let r = HostHarness.hvhostRun(["run", "--switch", "phys:uplinks=\(uplink)",
                                       "--portgroup", "pg10:phys:10", "--portgroup", "pg20:phys:20",
                                       "--portgroup", "trunk:phys:4095", v10.vmx, v20.vmx, vgt.vmx], timeout: 150) { process in
            // The guests run until the checks are done (they would time out after 100 s).
            defer { kill(process.processIdentifier, SIGTERM) }
            for vlan: UInt16 in [10, 20] {
                let deadline = Date().addingTimeInterval(60)
                while replies[vlan] == nil && Date() < deadline {
                    wire.send(FrameCapture.arpRequest(vlan: vlan, target: [10, 9, 0, 2]))
                    replies[vlan] = wire.next(timeout: 0.2) { FrameCapture.isARPReply($0, vlan: vlan) }
                }
            }
            for _ in 0..<5 { wire.send(FrameCapture.arpRequest(vlan: 30, target: [10, 9, 0, 2])) }
            stray = wire.next(timeout: 1) { FrameCapture.isARPReply($0, vlan: nil) }
            let deadline = Date().addingTimeInterval(20)
            while !self.read(vgt.log).contains("type 0x8100") && Date() < deadline { usleep(50_000) }
        }
        XCTAssertFalse(r.timedOut, r.stderr)
        let log10 = read(v10.log), log20 = read(v20.log)
        for (vlan, log) in [(UInt16(10), log10), (20, log20)] {
            guard let reply = replies[vlan] else { XCTFail("no ARP reply on VLAN \(vlan)\n" + log + r.stderr); continue }
            let mac = FrameCapture.source(reply)
            XCTAssertTrue(log.contains("pcnet: mac \(mac)"), "VLAN \(vlan) was answered by \(mac), not its VM\n" + log)
        }
        XCTAssertNil(stray.map(FrameCapture.source), "an ARP reply left on a VLAN no port group carries")
        let sniff = read(vgt.log)
        XCTAssertTrue(sniff.contains("type 0x8100"), "the VGT guest sees tagged frames:\n" + sniff)
    }
}

extension UplinkTests {
    /// Bytes the namespace's interface has received (its kernel counter).
    private func receivedBytes(_ ns: NetNamespace, _ interface: String) -> (bytes: UInt64, at: Date)? {
        let before = Date()
        let r = HostHarness.run("/usr/sbin/ip", ["-n", ns.name, "-s", "-o", "link", "show", interface], timeout: 30)
        let after = Date()
        // "... RX: bytes packets ...\    <bytes> <packets> ..." on one line with -o.
        guard r.status == 0, let rx = r.stdout.range(of: "RX:") else { return nil }
        let fields = r.stdout[rx.upperBound...].split(whereSeparator: { $0 == " " || $0 == "\\" }).filter { !$0.isEmpty }
        guard let index = fields.firstIndex(where: { UInt64($0) != nil }), let bytes = UInt64(fields[index]) else { return nil }
        return (bytes, before.addingTimeInterval(after.timeIntervalSince(before) / 2))
    }

    /// The shaper's unused allowance (bytes) per `net shape`, via the console.
    private func unusedAllowance(_ socket: String) -> UInt64? {
        let r = HostHarness.hvhostRun(["console", "--socket", socket, "net", "shape", "shaped-flood", "ethernet0"], timeout: 20)
        guard let at = r.stdout.range(of: "unused allowance ") else { return nil }
        return UInt64(r.stdout[at.upperBound...].prefix(while: \.isNumber))
    }

    /// A flood guest (60-byte frames) starts shaped to 5 Mbit/s by its .vmx keys; `net shape`
    /// sets 10 Mbit/s live; the namespace then receives 10 Mbit/s within 5 % over a measured
    /// window (3 s; 10 s with HV_SLOW_TESTS=1), less the allowance the guest left unused
    /// while its vCPU did not run (the shaper reports it; on an idle host it is 0).
    func testFloodShapedToTenMegabitsAverage() throws {
        try requirePlugins()
        let window: TimeInterval = ProcessInfo.processInfo.environment["HV_SLOW_TESTS"] == "1" ? 10 : 3
        let ns = try NetNamespace()
        defer { ns.remove() }
        let uplink = try ns.addVeth("s", farEnd: "eth0")
        try ns.inside(["addr", "add", "10.79.0.1/24", "dev", "eth0"])
        let wire = try FrameCapture(ns, interface: "eth0")
        let console = HostHarness.workDir + "/shape-console.sock"
        try? FileManager.default.removeItem(atPath: console)
        let vm = nicVMX("shaped-flood", cmdline: "ip=10.79.0.2 peer=10.79.0.1 role=flood count=100000000", network: "phys",
                        extra: ["ethernet0.shaping.average": "5000000"])
        var rate = 0.0, unused = 0.0, failure = "", shapeReply = ""
        let r = HostHarness.hvhostRun(["run", "--console", console, "--switch", "phys:uplinks=\(uplink)", vm.vmx],
                                      timeout: 150) { process in
            defer { kill(process.processIdentifier, SIGTERM) }
            guard wire.next(timeout: 90, where: { FrameCapture.ipSource($0) == "10.79.0.2" }) != nil else {
                failure = "the flood never reached the namespace"
                return
            }
            shapeReply = HostHarness.hvhostRun(["console", "--socket", console, "net", "shape", "shaped-flood", "ethernet0",
                                                "10000000", "100000000", "100000"], timeout: 20).stdout
            usleep(500_000)   // past the burst (100 kB drain in well under this)
            guard let start = self.receivedBytes(ns, "eth0"), let unused0 = self.unusedAllowance(console) else {
                failure = "no counters"
                return
            }
            usleep(useconds_t(window * 1_000_000))
            guard let end = self.receivedBytes(ns, "eth0"), let unused1 = self.unusedAllowance(console) else {
                failure = "no counters"
                return
            }
            let seconds = end.at.timeIntervalSince(start.at)
            rate = Double(end.bytes - start.bytes) * 8 / seconds
            unused = Double(unused1 - unused0) * 8 / seconds
        }
        XCTAssertEqual(failure, "", r.stderr)
        XCTAssertFalse(r.timedOut, r.stderr)
        XCTAssertTrue(shapeReply.contains("average 10000000 bit/s, peak 100000000 bit/s, burst 100000 B"), shapeReply)
        print("shaping: \(Int(rate)) bit/s on the wire over \(window) s (cap 10000000), allowance unused \(Int(unused)) bit/s")
        XCTAssertLessThan(unused, 5_000_000, "the guest was starved for half the window: nothing to shape")
        XCTAssertEqual(rate, 10_000_000 - unused, accuracy: 500_000, "measured \(rate) bit/s over \(window) s")
    }
}
