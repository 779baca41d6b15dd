import Foundation
import XCTest

/// The `net-ping` guest (a PCnet driver + ARP/IPv4/ICMP, guests/net-ping) over the Vlance
/// plugin and the VMkernel's virtual switches, and the same guest over QEMU's own pcnet.
final class NetworkTests: XCTestCase {
    private static let guestArgs = ["-enable-kvm", "-M", "pc", "-m", "64", "-cpu", "max,arch-capabilities=off",
                                    "-display", "none", "-no-reboot", "-nodefaults", "-serial", "stdio",
                                    "-device", "isa-debug-exit,iobase=0x501,iosize=2"]

    /// A TCP port on 127.0.0.1 that was free a moment ago.
    private func freeLoopbackPort() throws -> UInt16 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw XCTSkip("socket(): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                bind(fd, sa, len) == 0 && getsockname(fd, sa, &len) == 0
            }
        }
        guard ok else { throw XCTSkip("cannot bind a loopback port: \(String(cString: strerror(errno)))") }
        return UInt16(bigEndian: addr.sin_port)
    }

    /// Polls /proc/net/tcp until a socket listens on 127.0.0.1:`port` (at most 60 s).
    private static func waitUntilListening(port: UInt16) -> Bool {
        let local = String(format: "0100007F:%04X", port)
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            if let table = try? String(contentsOfFile: "/proc/net/tcp", encoding: .utf8),
               table.split(separator: "\n").contains(where: {
                   let f = $0.split(separator: " ")
                   return f.count > 3 && f[1] == local && f[3] == "0A"   // state 0A = LISTEN
               }) {
                return true
            }
            usleep(10_000)
        }
        return false
    }

    private func qemuArgs(netdev: String, mac: String, append: String) -> [String] {
        Self.guestArgs + ["-netdev", "socket,id=n0,\(netdev)", "-device", "pcnet,netdev=n0,mac=\(mac)",
                          "-kernel", HostHarness.guest("net-ping"), "-append", append]
    }

    /// Reference run: pinger and responder in two QEMUs joined by a socket netdev on loopback.
    /// A guest that passes against QEMU's pcnet checks the guest driver, and so our Vlance.
    func testPingBetweenTwoQEMUPCnetGuests() throws {
        let qemu = try HostHarness.requireQEMU()
        let port = try freeLoopbackPort()
        var pinger = HostHarness.Result(status: -1, stdout: "", stderr: "", timedOut: false)
        // The responder listens; once it runs, the pinger connects (both finish on their own).
        let responder = HostHarness.run(
            qemu, qemuArgs(netdev: "listen=127.0.0.1:\(port)", mac: "52:54:00:12:34:02",
                           append: "ip=10.0.0.2 role=respond count=5 timeout=40"), timeout: 90) { _ in
            // Connecting early would fail: wait until QEMU's socket listens (a probe
            // connection would take its one accept).
            XCTAssertTrue(Self.waitUntilListening(port: port), "QEMU never listened on 127.0.0.1:\(port)")
            pinger = HostHarness.run(qemu, self.qemuArgs(netdev: "connect=127.0.0.1:\(port)", mac: "52:54:00:12:34:01",
                                                         append: "ip=10.0.0.1 peer=10.0.0.2 role=ping count=5"),
                                     timeout: 90)
        }
        XCTAssertEqual(pinger.status, 1, "pinger: " + pinger.stdout + pinger.stderr)
        XCTAssertTrue(pinger.stdout.contains("pcnet: mac 52:54:00:12:34:01 aprom signature 5757"), pinger.stdout)
        XCTAssertTrue(pinger.stdout.contains("arp: 10.0.0.2 is at 52:54:00:12:34:02"), pinger.stdout)
        for seq in 1...5 {
            XCTAssertTrue(pinger.stdout.contains("ping: 10.0.0.2 seq=\(seq) ok\n"), pinger.stdout)
        }
        XCTAssertTrue(pinger.stdout.contains("ping: 5/5 replies"), pinger.stdout)
        XCTAssertEqual(responder.status, 1, "responder: " + responder.stdout + responder.stderr)
        XCTAssertTrue(responder.stdout.contains("respond: answered 5 echo requests"), responder.stdout)
    }

    private func nicVMX(_ name: String, cmdline: String, network: String,
                        extra: [String: String] = [:]) -> (vmx: String, log: String) {
        let log = HostHarness.workDir + "/\(name).log"
        try? FileManager.default.removeItem(atPath: log)
        var keys = ["hv.cmdline": cmdline, "hv.serial": "file:\(log)",
                    "ethernet0.present": "TRUE", "ethernet0.virtualDev": "vlance",
                    "ethernet0.networkName": network]
        keys.merge(extra) { $1 }
        return (HostHarness.vmx(name, guest: "net-ping", extra: keys), log)
    }

    /// The Vlance plugin next to hvhost (SwiftPM builds it as a product of this package).
    private func requireVlance() throws {
        try HostHarness.requireHost()
        let dir = (HostHarness.hvhost as NSString).deletingLastPathComponent
        guard FileManager.default.fileExists(atPath: dir + "/libVlance.so") else {
            XCTFail("libVlance.so is not built next to hvhost (\(dir)): run `swift build`")
            throw XCTSkip("no Vlance plugin")
        }
    }

    private func read(_ path: String) -> String {
        (try? String(contentsOfFile: path, encoding: .utf8)) ?? "(no serial log at \(path))"
    }

    /// VMs in one host: A pings B across the "lab" switch; C sniffs promiscuously on
    /// "other" and must see nothing of it. D sniffs on "lab" as the control: it must see
    /// A's ARP broadcasts (a learning switch sends it none of the unicast).
    ///
    /// Ordered by events on the serial ports of A, C and D (`go=serial`, `stop=serial`):
    /// the sniffers start listening, A starts only once both say they listen, and they
    /// stop only once A is done, so both watch all of A's traffic however slowly each
    /// VM boots.
    func testPingAcrossTheLabSwitchAndIsolationFromOtherNetwork() throws {
        try requireVlance()
        func socketPath(_ name: String) -> String {
            let path = HostHarness.workDir + "/\(name).sock"
            try? FileManager.default.removeItem(atPath: path)
            return path
        }
        let sockA = socketPath("net-a"), sockC = socketPath("net-c"), sockD = socketPath("net-d")
        let a = nicVMX("net-a", cmdline: "ip=10.0.0.1 peer=10.0.0.2 role=ping count=5 go=serial", network: "lab",
                       extra: ["hv.serial": "unix:" + sockA])
        let b = nicVMX("net-b", cmdline: "ip=10.0.0.2 role=respond count=5 timeout=120", network: "lab")
        let c = nicVMX("net-c", cmdline: "role=sniff go=serial stop=serial", network: "other",
                       extra: ["hv.serial": "unix:" + sockC])
        let d = nicVMX("net-d", cmdline: "role=sniff go=serial stop=serial", network: "lab",
                       extra: ["hv.serial": "unix:" + sockD])
        let waitLimit: TimeInterval = 60
        var serialA: SerialSocketClient?, serialC: SerialSocketClient?, serialD: SerialSocketClient?
        var sequenceFailure: Error?
        let r = HostHarness.hvhostRun(["run", a.vmx, b.vmx, c.vmx, d.vmx], timeout: 150) { process in
            do {
                let ca = try SerialSocketClient(path: sockA, timeout: waitLimit)
                let cc = try SerialSocketClient(path: sockC, timeout: waitLimit)
                let cd = try SerialSocketClient(path: sockD, timeout: waitLimit)
                (serialA, serialC, serialD) = (ca, cc, cd)
                for sniffer in [cc, cd] {
                    try sniffer.waitFor("net: waiting for a byte on the serial port", timeout: waitLimit)
                    try sniffer.send(UInt8(ascii: "g"))
                }
                for sniffer in [cc, cd] {
                    try sniffer.waitFor("sniff: listening until a byte arrives", timeout: waitLimit)
                }
                try ca.waitFor("net: waiting for a byte on the serial port", timeout: waitLimit)
                try ca.send(UInt8(ascii: "g"))
                // A has its 5 replies (B sent them before): all of the traffic is over.
                try ca.waitFor("EXIT ", timeout: waitLimit)
                for sniffer in [cc, cd] { try sniffer.send(UInt8(ascii: "s")) }
                for sniffer in [cc, cd] { try sniffer.waitFor("EXIT ", timeout: waitLimit) }
            } catch {
                sequenceFailure = error
                kill(process.processIdentifier, SIGTERM)
            }
        }
        if let sequenceFailure { XCTFail("\(sequenceFailure)\nhvhost stderr:\n\(r.stderr)") }
        let logA = serialA?.text ?? "", logB = read(b.log), logC = serialC?.text ?? "", logD = serialD?.text ?? ""
        XCTAssertFalse(r.timedOut, r.stderr)
        XCTAssertEqual(r.status, 0, r.stderr)
        for seq in 1...5 {
            XCTAssertTrue(logA.contains("ping: 10.0.0.2 seq=\(seq) ok\n"), logA)
        }
        XCTAssertTrue(logA.contains("ping: 5/5 replies"), logA)
        XCTAssertTrue(logA.contains("EXIT 0"), logA)
        XCTAssertTrue(logB.contains("arp: who-has 10.0.0.2 tell 10.0.0.1"), logB)
        XCTAssertTrue(logB.contains("respond: answered 5 echo requests"), logB)
        XCTAssertTrue(logB.contains("EXIT 0"), logB)
        XCTAssertTrue(logC.contains("(promiscuous)"), logC)
        XCTAssertTrue(logC.contains("sniff: 0 frames\n"), "a frame leaked onto network 'other':\n" + logC)
        XCTAssertTrue(logC.contains("EXIT 0"), logC)
        let macA = logA.range(of: #"(?<=net: pcnet mac )[0-9a-f:]{17}"#, options: .regularExpression)
            .map { String(logA[$0]) } ?? "?"
        XCTAssertTrue(logD.contains("sniff: frame 1: \(macA) > ff:ff:ff:ff:ff:ff type 0x0806"),
                      "the control sniffer on 'lab' did not see A's ARP request:\n" + logD)
        XCTAssertFalse(logD.contains("sniff: 0 frames"), logD)
        for vm in ["net-a", "net-b", "net-c", "net-d"] {
            XCTAssertTrue(r.stderr.contains("\(vm): guest exit code 0"), r.stderr)
        }
    }

    /// `ethernet0.addressType = "static"`: the guest reads the address from the APROM, the
    /// chip uses it (CSR12-14 after INIT) and the peer learns it by ARP.
    func testStaticMACIsTheGuestsAddress() throws {
        try requireVlance()
        let a = nicVMX("mac-a", cmdline: "ip=10.0.0.1 peer=10.0.0.2 role=ping count=1", network: "mac-lab")
        let b = nicVMX("mac-b", cmdline: "ip=10.0.0.2 role=respond count=1 timeout=30", network: "mac-lab",
                       extra: ["ethernet0.addressType": "static", "ethernet0.address": "00:50:56:00:00:42"])
        let r = HostHarness.hvhostRun(["run", a.vmx, b.vmx], timeout: 90)
        let logA = read(a.log), logB = read(b.log)
        XCTAssertFalse(r.timedOut, r.stderr)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(logB.contains("pcnet: mac 00:50:56:00:00:42 aprom signature 5757\n"), logB)
        XCTAssertTrue(logB.contains("padr 00:50:56:00:00:42\n"), logB)
        XCTAssertTrue(logA.contains("arp: 10.0.0.2 is at 00:50:56:00:00:42"), logA)
        XCTAssertTrue(logA.contains("ping: 1/1 replies"), logA)
        // A's address was generated by the host: VMware's OUI, outside the static range.
        XCTAssertNotNil(logA.range(of: #"pcnet: mac 00:50:56:[89ab][0-9a-f]:[0-9a-f]{2}:[0-9a-f]{2} "#,
                                   options: .regularExpression), logA)
    }

    /// Up to four vNICs per VM, each a PCI function of its own on its own switch port;
    /// a fifth is a configuration error.
    func testFourNICsPerVMAndNoFifth() throws {
        try HostHarness.requireHost()
        var extra: [String: String] = [:]
        for n in 0..<4 {
            extra["ethernet\(n).present"] = "TRUE"
            extra["ethernet\(n).networkName"] = "net\(n)"
        }
        let r = HostHarness.hvhostRun(["run", HostHarness.vmx("fournics", guest: "pci-scan", extra: extra)])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertEqual(r.stdout.components(separatedBy: " 1022:2000 class 0200 ").count - 1, 4, r.stdout)
        XCTAssertTrue(r.stdout.contains("pci: 6 functions"), r.stdout)
        extra["ethernet4.present"] = "TRUE"
        let five = HostHarness.hvhostRun(["run", HostHarness.vmx("fivenics", guest: "pci-scan", extra: extra)])
        XCTAssertEqual(five.status, 2)
        XCTAssertTrue(five.stderr.contains("ethernet4"), five.stderr)
    }
}
