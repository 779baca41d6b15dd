import Foundation
import Glibc
import XCTest

/// Uplink behaviour beyond the basics in UplinkTests: a VGT guest's own tags on the wire,
/// failback, and the shaper's burst at peak rate.
final class UplinkTeamingTests: XCTestCase {
    private func read(_ path: String) -> String {
        (try? String(contentsOfFile: path, encoding: .utf8)) ?? "(no serial log at \(path))"
    }

    private func nicVMX(_ name: String, cmdline: String, network: String) -> (vmx: String, log: String) {
        let log = HostHarness.workDir + "/\(name).log"
        try? FileManager.default.removeItem(atPath: log)
        return (HostHarness.vmx(name, guest: "net-ping", extra: [
            "hv.cmdline": cmdline, "hv.serial": "file:\(log)", "ethernet0.present": "TRUE",
            "ethernet0.virtualDev": "vlance", "ethernet0.networkName": network]), log)
    }

    private func requirePlugins() throws {
        try HostHarness.requireHost()
        let dir = (HostHarness.hvhost as NSString).deletingLastPathComponent
        for lib in ["libVlance.so", "libTeamingStandard.so"] where !FileManager.default.fileExists(atPath: dir + "/" + lib) {
            XCTFail("\(lib) is not built next to hvhost (\(dir)): run `swift build`")
            throw XCTSkip("no \(lib)")
        }
    }

    private func console(_ socket: String, _ words: [String]) -> String {
        HostHarness.hvhostRun(["console", "--socket", socket] + words, timeout: 20).stdout
    }

    // MARK: VGT

    /// The 802.1Q VID of a tagged frame, nil for an untagged one.
    private static func vid(_ f: [UInt8]) -> UInt16? {
        guard f.count >= 18, FrameCapture.etherType(f) == 0x8100 else { return nil }
        return (UInt16(f[14]) << 8 | UInt16(f[15])) & 0x0FFF
    }

    /// The frame's type after its tag.
    private static func innerType(_ f: [UInt8]) -> UInt16 { UInt16(f[16]) << 8 | UInt16(f[17]) }

    /// A tagged ARP reply "10.9.0.1 is at 02:00:00:00:00:01" to the request `request`.
    private static func arpReply(to request: [UInt8]) -> [UInt8] {
        let me: [UInt8] = [2, 0, 0, 0, 0, 1]
        let asker = Array(request[6..<12])
        var f = asker + me + Array(request[12..<16]) + [0x08, 0x06]
        f += [0, 1, 8, 0, 6, 4, 0, 2] + me + Array(request[18 + 24..<18 + 28]) + asker + Array(request[18 + 14..<18 + 18])
        return f + [UInt8](repeating: 0, count: max(0, 64 - f.count))
    }

    /// A tagged ICMP echo reply to the tagged echo request `request` (same tag, id, data).
    private static func echoReply(to request: [UInt8]) -> [UInt8] {
        var f = Array(request[6..<12]) + [2, 0, 0, 0, 0, 1] + Array(request[12...])
        let ip = 18, ihl = Int(f[ip] & 0x0F) * 4
        let total = Int(f[ip + 2]) << 8 | Int(f[ip + 3])
        for i in 0..<4 { f.swapAt(ip + 12 + i, ip + 16 + i) }
        f[ip + 10] = 0; f[ip + 11] = 0
        let ipSum = ICMPEcho.checksum(Array(f[ip..<ip + ihl]))
        f[ip + 10] = UInt8(ipSum >> 8); f[ip + 11] = UInt8(ipSum & 0xFF)
        let icmp = ip + ihl
        f[icmp] = 0
        f[icmp + 2] = 0; f[icmp + 3] = 0
        let sum = ICMPEcho.checksum(Array(f[icmp..<ip + total]))
        f[icmp + 2] = UInt8(sum >> 8); f[icmp + 3] = UInt8(sum & 0xFF)
        return f
    }

    /// A guest on a VGT port group (VLAN 4095) tags its own frames with VID 10: its ARP
    /// requests and echo requests reach the wire tagged 10, untouched by the switch, and
    /// the far side's tagged replies reach it with their tags, so its pings succeed.
    func testVGTGuestPingsWithItsOwnTags() throws {
        try requirePlugins()
        let ns = try NetNamespace()
        defer { ns.remove() }
        let uplink = try ns.addVeth("t", farEnd: "eth0")
        let wire = try FrameCapture(ns, interface: "eth0")
        let vm = nicVMX("vgt-ping", cmdline: "ip=10.9.0.2 peer=10.9.0.1 role=ping count=3 vlan=10", network: "trunk")
        var tagged = 0, untagged = 0
        let r = HostHarness.hvhostRun(["run", "--switch", "phys:uplinks=\(uplink)", "--portgroup", "trunk:phys:4095", vm.vmx],
                                      timeout: 150) { process in
            while process.isRunning {
                guard let f = wire.next(timeout: 0.5, where: { FrameCapture.source($0) != "02:00:00:00:00:01" }) else { continue }
                guard let vid = Self.vid(f) else {
                    if FrameCapture.etherType(f) == 0x0806 || FrameCapture.etherType(f) == 0x0800 { untagged += 1}
                    continue
                }
                guard vid == 10, f.count >= 18 + 28 else { continue }
                tagged += 1
                switch Self.innerType(f) {
                case 0x0806 where f[18 + 7] == 1 && Array(f[18 + 24..<18 + 28]) == [10, 9, 0, 1]:
                    wire.send(Self.arpReply(to: f))
                case 0x0800 where f[18 + 9] == 1 && f[18 + 20] == 8 && Array(f[18 + 16..<18 + 20]) == [10, 9, 0, 1]:
                    wire.send(Self.echoReply(to: f))
                default: break
                }
            }
        }
        let log = read(vm.log)
        XCTAssertFalse(r.timedOut, r.stderr)
        XCTAssertTrue(r.stderr.contains("vgt-ping: guest exit code 0"), log + r.stderr)
        XCTAssertTrue(log.contains("arp: 10.9.0.1 is at 02:00:00:00:00:01"), log)
        XCTAssertTrue(log.contains("ping: 3/3 replies"), log)
        XCTAssertGreaterThanOrEqual(tagged, 4, "the guest's ARP and echo requests carry VID 10 on the wire")
        XCTAssertEqual(untagged, 0, "a VGT guest's frames leave as the guest tagged them")
    }

    // MARK: Failback

    /// A namespace with a Linux bridge and two veth pairs into it (e0, e1); 10.78.0.1/24 on
    /// the bridge. Returns the host ends.
    private func bridgedTeam(_ ns: NetNamespace) throws -> [String] {
        try ns.inside(["link", "add", "br0", "type", "bridge"])
        var hostEnds: [String] = []
        for i in 0..<2 {
            hostEnds.append(try ns.addVeth("f\(i)", farEnd: "e\(i)"))
            try ns.inside(["link", "set", "e\(i)", "master", "br0"])
        }
        try ns.inside(["addr", "add", "10.78.0.1/24", "dev", "br0"])
        try ns.inside(["link", "set", "br0", "up"])
        return hostEnds
    }

    /// Explicit failover order, failback on (ESX's default) and off. The guest's pings
    /// move to uplink 1 when uplink 0's far end goes down. When it comes back: with
    /// failback the traffic returns to uplink 0, announced there by a RARP; without, uplink
    /// 0 is held on standby (`net team`) and the traffic stays on uplink 1.
    func testFailbackReturnsTrafficToTheFirstUplinkOnlyWhenEnabled() throws {
        try requirePlugins()
        for failback in [true, false] {
            let ns = try NetNamespace()
            defer { ns.remove() }
            let team = try bridgedTeam(ns)
            let first = try FrameCapture(ns, interface: "e0"), second = try FrameCapture(ns, interface: "e1")
            let socket = HostHarness.workDir + "/failback-\(failback).sock"
            try? FileManager.default.removeItem(atPath: socket)
            let name = "failback-\(failback ? "yes" : "no")"
            let vm = nicVMX(name, cmdline: "ip=10.78.0.2 peer=10.78.0.1 role=ping count=100000 interval=20", network: "team")
            let fromGuest: ([UInt8]) -> Bool = { FrameCapture.ipSource($0) == "10.78.0.2" }
            var failure = "", returned: [UInt8]?, rarp: [UInt8]?, standby = "", stayed: [UInt8]?, onFirst: [UInt8]?
            let r = HostHarness.hvhostRun(["run", "--console", socket,
                                           "--switch", "team:uplinks=\(team[0]),\(team[1]):teaming=failover:failback=\(failback ? "yes" : "no")",
                                           vm.vmx], timeout: 150) { process in
                defer { kill(process.processIdentifier, SIGTERM) }
                guard first.next(timeout: 90, where: fromGuest) != nil else { failure = "no echo request on uplink 0"; return }
                do { try ns.inside(["link", "set", "e0", "down"]) } catch { failure = "\(error)"; return }
                guard second.next(timeout: 10, where: fromGuest) != nil else { failure = "no failover to uplink 1"; return }
                do { try ns.inside(["link", "set", "e0", "up"]) } catch { failure = "\(error)"; return }
                if failback {
                    rarp = first.next(timeout: 10) { FrameCapture.etherType($0) == 0x8035 }
                    returned = first.next(timeout: 10, where: fromGuest)
                } else {
                    // Wait for the switch to see the carrier come back, then watch both links.
                    let deadline = Date().addingTimeInterval(30)
                    while Date() < deadline {
                        standby = self.console(socket, ["net", "team", "team"])
                        if standby.contains("\(team[0])\tstandby") { break }
                    }
                    onFirst = first.next(timeout: 1.5, where: fromGuest)
                    stayed = second.next(timeout: 5, where: fromGuest)
                }
            }
            let log = read(vm.log)
            XCTAssertEqual(failure, "", name + ": " + log + r.stderr)
            XCTAssertFalse(r.timedOut, r.stderr)
            if failback {
                XCTAssertNotNil(rarp, "no RARP on uplink 0 after failback\n" + r.stderr)
                XCTAssertNotNil(returned, "the traffic did not return to uplink 0\n" + r.stderr)
                XCTAssertTrue(r.stderr.contains("uplink \(team[0]) link up; 1 port(s) moved"), r.stderr)
            } else {
                XCTAssertTrue(standby.contains("\(team[0])\tstandby"), "uplink 0 is held on standby:\n" + standby)
                XCTAssertNil(onFirst.map(FrameCapture.source), "traffic went back to uplink 0 with failback off")
                XCTAssertNotNil(stayed, "the traffic stays on uplink 1\n" + r.stderr)
            }
        }
    }

    // MARK: Shaping burst

    /// Shaped to 2 Mbit/s average, 40 Mbit/s peak, 400 kB burst: a flood of full-size
    /// frames starts with a full bucket, so its first 400 kB cross at about the peak rate,
    /// then the rate falls to the average. Timed from the receive timestamps of a capture
    /// socket on the namespace's end.
    func testBurstPassesAtPeakRateThenTheAverageHolds() throws {
        try requirePlugins()
        let ns = try NetNamespace()
        defer { ns.remove() }
        let uplink = try ns.addVeth("b", farEnd: "eth0")
        try ns.inside(["addr", "add", "10.79.0.1/24", "dev", "eth0"])
        let wire = try FrameCapture(ns, interface: "eth0")
        let log = HostHarness.workDir + "/burst-flood.log"
        try? FileManager.default.removeItem(atPath: log)
        let vmx = HostHarness.vmx("burst-flood", guest: "net-ping", extra: [
            "hv.cmdline": "ip=10.79.0.2 peer=10.79.0.1 role=flood size=1514 count=100000000", "hv.serial": "file:\(log)",
            "ethernet0.present": "TRUE", "ethernet0.virtualDev": "vlance", "ethernet0.networkName": "phys",
            "ethernet0.shaping.average": "2000000", "ethernet0.shaping.peak": "40000000", "ethernet0.shaping.burst": "400000"])
        var arrivals: [(at: TimeInterval, bytes: Int)] = []
        let r = HostHarness.hvhostRun(["run", "--switch", "phys:uplinks=\(uplink)", vmx], timeout: 150) { process in
            defer { kill(process.processIdentifier, SIGTERM) }
            let isFlood: ([UInt8]) -> Bool = { FrameCapture.ipSource($0) == "10.79.0.2" && $0.count > 1000 }
            guard let firstFrame = wire.nextTimed(timeout: 90, where: isFlood) else { return }
            arrivals.append((firstFrame.at, firstFrame.frame.count))
            // 400 kB at peak, then 2 s at the average (500 kB).
            let end = firstFrame.at + 2.2
            while let next = wire.nextTimed(timeout: 3, where: isFlood), next.at < end {
                arrivals.append((next.at, next.frame.count))
            }
        }
        XCTAssertFalse(r.timedOut, r.stderr)
        guard arrivals.count > 10 else { return XCTFail("the flood did not reach the namespace\n" + read(log) + r.stderr) }
        let start = arrivals[0].at
        var sent = 0, burstEnd: TimeInterval?
        for a in arrivals {
            sent += a.bytes
            if burstEnd == nil && sent >= 360_000 { burstEnd = a.at - start }
        }
        let burstSeconds = try XCTUnwrap(burstEnd, "fewer than 360 kB arrived")
        let burstRate = 360_000 * 8 / burstSeconds
        let tail = arrivals.filter { $0.at - start >= 1.0 && $0.at - start < 2.0 }.reduce(0) { $0 + $1.bytes }
        print("shaping burst: first 360 kB at \(Int(burstRate)) bit/s (peak 40000000); then \(tail * 8) bit/s (average 2000000)")
        XCTAssertGreaterThan(burstRate, 10_000_000, "the burst is well above the average")
        XCTAssertLessThan(burstRate, 44_000_000, "the burst is held to the peak rate")
        XCTAssertEqual(Double(tail * 8), 2_000_000, accuracy: 400_000, "after the burst, the average holds")
    }
}

extension FrameCapture {
    /// The next matching frame with its kernel receive time (CLOCK_REALTIME seconds, from
    /// SIOCGSTAMP), so a slow reader still times the wire correctly.
    func nextTimed(timeout: TimeInterval, where match: ([UInt8]) -> Bool) -> (frame: [UInt8], at: TimeInterval)? {
        guard let frame = next(timeout: timeout, where: match) else { return nil }
        var tv = timeval()
        guard ioctl(descriptor, 0x8906, &tv) == 0 else { return nil }   // SIOCGSTAMP
        return (frame, TimeInterval(tv.tv_sec) + TimeInterval(tv.tv_usec) / 1e6)
    }
}
