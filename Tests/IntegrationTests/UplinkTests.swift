import Foundation
import Glibc
import XCTest

/// Switches with uplinks into a network namespace the test makes: veth pairs stand in for
/// physical NICs, the namespace for the physical network.
final class UplinkTests: XCTestCase {
    private func read(_ path: String) -> String {
        (try? String(contentsOfFile: path, encoding: .utf8)) ?? "(no serial log at \(path))"
    }

    private func nicVMX(_ name: String, cmdline: String, network: String) -> (vmx: String, log: String) {
        let log = HostHarness.workDir + "/\(name).log"
        try? FileManager.default.removeItem(atPath: log)
        return (HostHarness.vmx(name, guest: "net-ping", extra: [
            "hv.cmdline": cmdline, "hv.serial": "file:\(log)",
            "ethernet0.present": "TRUE", "ethernet0.virtualDev": "vlance", "ethernet0.networkName": network,
        ]), log)
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
