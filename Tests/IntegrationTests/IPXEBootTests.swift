import Foundation
import Glibc
import XCTest

/// Network boot with a real client: Debian's `ipxe.lkrn` handed to SeaBIOS as a Linux
/// kernel (fw_cfg and linuxboot_dma.bin) drives our NICs with iPXE's own drivers (pcnet32
/// for Vlance, vmxnet3 for Vmxnet) and fetches a test guest from Debian's dnsmasq in a
/// network namespace behind an AF_PACKET uplink. The guest is the multiboot probe from guests/kformats, which prints what
/// iPXE's multiboot loader handed it and exits 0 only when it is all as specified.
///
/// Slow tier (`HV_SLOW_TESTS=1`): iPXE's 32-bit code is emulated on this host's KVM,
/// about 50 s per boot. The script is on the command line with a static address: iPXE's
/// DHCP waits stretch unpredictably here (see the README's firmware notes).
final class IPXEBootTests: XCTestCase {
    static let ipxe = "/usr/lib/ipxe/ipxe.lkrn"
    static let dnsmasq = "/usr/sbin/dnsmasq"
    static let image = "kformat-multiboot.elf"
    /// The issue's budget for one network boot.
    static let budget: TimeInterval = 120

    /// `ipxe.lkrn` runs its command line as a script: a static address, then a chain load.
    func testIPXEChainsAGuestOverTFTPThroughVlance() throws {
        try chainLoad(nic: "vlance")
    }

    func testIPXEChainsAGuestOverTFTPThroughVmxnet() throws {
        try chainLoad(nic: "vmxnet")
    }

    private func chainLoad(nic: String) throws {
        try requireTools()
        let server = try TFTPServer(name: "ipxe-\(nic)")
        defer { server.stop() }
        let script = ["echo hv-ipxe: script running", "set net0/ip \(server.prefix).2", "set net0/netmask 255.255.255.0",
                      "ifopen net0", "echo hv-ipxe: net0 ${net0/mac} up",
                      "chain tftp://\(server.prefix).1/\(Self.image) probe=ipxe-chain"].joined(separator: " && ")
        let vmx = HostHarness.writeVMX("ipxe-\(nic)", [
            "displayName": "ipxe-\(nic)", "memsize": "64", "hv.kernel": Self.ipxe, "hv.cmdline": script,
            "hv.firmware": FirmwareBootTests.seabios, "hv.serial": "stdout",
            "ethernet0.present": "TRUE", "ethernet0.virtualDev": nic, "ethernet0.networkName": "phys",
        ])
        let (r, serial) = boot(vmx, uplink: server.uplink, what: "ipxe.lkrn over \(nic)")
        let tail = String(serial.suffix(2000)) + r.stderr
        XCTAssertTrue(serial.contains("hv-ipxe: net0 00:50:56:"), tail)
        XCTAssertTrue(serial.contains("cmdline=tftp://\(server.prefix).1/\(Self.image) probe=ipxe-chain"), tail)
        XCTAssertTrue(server.log.contains("sent \(server.root)/\(Self.image) to \(server.prefix).2"), server.log)
    }

    private func requireTools() throws {
        guard ProcessInfo.processInfo.environment["HV_SLOW_TESTS"] == "1" else {
            throw XCTSkip("slow tier: set HV_SLOW_TESTS=1 (iPXE boots take about 50 s each here)")
        }
        try HostHarness.requireHost()
        for (path, package) in [(Self.dnsmasq, "dnsmasq-base"), (FirmwareBootTests.seabios, "seabios"), (Self.ipxe, "ipxe"),
                                ("/usr/share/qemu/linuxboot_dma.bin", "qemu-system-data")]
        where !FileManager.default.fileExists(atPath: path) {
            throw XCTSkip("\(path) is missing (apt-get install \(package))")
        }
    }

    /// Runs the VM to its guest's exit; checks the probe's verdict and the time budget.
    private func boot(_ vmx: String, uplink: String, what: String,
                      file: StaticString = #filePath, line: UInt = #line) -> (HostHarness.Result, String) {
        let poweredOn = Date()
        let r = HostHarness.hvhostRun(["run", "--switch", "phys:uplinks=\(uplink)", vmx], timeout: Self.budget + 30)
        let seconds = Date().timeIntervalSince(poweredOn)
        print("\(what): power-on to the chained guest's exit in \(String(format: "%.1f", seconds)) s")
        let serial = r.stdout.replacingOccurrences(of: "\r", with: "")
        let tail = String(serial.suffix(2000)) + r.stderr
        XCTAssertFalse(r.timedOut, tail, file: file, line: line)
        XCTAssertEqual(r.status, 1, tail, file: file, line: line)          // the probe's exit 0
        XCTAssertTrue(serial.contains("kformat: multiboot magic ok"), tail, file: file, line: line)
        XCTAssertTrue(serial.contains("kformat: ok"), tail, file: file, line: line)
        XCTAssertLessThanOrEqual(seconds, Self.budget, file: file, line: line)
        return (r, serial)
    }

    /// dnsmasq in a namespace of its own on `prefix`.1/24, serving the probe by TFTP. It daemonizes (as a
    /// Process child of the test it kept hvhost's exit from being reaped) and is stopped
    /// through its pid file.
    private final class TFTPServer {
        let namespace: NetNamespace
        let uplink: String
        let prefix = "10.81.0"
        let root: String
        private let logPath: String
        private let pidPath: String
        var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

        init(name: String) throws {
            namespace = try NetNamespace()
            uplink = try namespace.addVeth("x", farEnd: "eth0")
            try namespace.inside(["addr", "add", "\(prefix).1/24", "dev", "eth0"])
            let dir = HostHarness.workDir + "/\(name)"
            root = dir + "/tftp"
            logPath = dir + "/dnsmasq.log"
            pidPath = dir + "/dnsmasq.pid"
            try? FileManager.default.removeItem(atPath: dir)
            try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: HostHarness.repoRoot + "/guests/build/\(IPXEBootTests.image)",
                                             toPath: root + "/\(IPXEBootTests.image)")
            let args = ["netns", "exec", namespace.name, IPXEBootTests.dnsmasq, "--port=0", "--enable-tftp",
                        "--tftp-root=\(root)", "--interface=eth0", "--bind-interfaces", "--user=root",
                        "--pid-file=\(pidPath)", "--log-facility=\(logPath)"]
            let started = HostHarness.run("/usr/sbin/ip", args, timeout: 10)
            guard started.status == 0 else {
                namespace.remove()
                throw NSError(domain: "dnsmasq did not start: \(started.stderr)", code: Int(started.status))
            }
        }

        func stop() {
            if let pid = Int32(((try? String(contentsOfFile: pidPath, encoding: .utf8)) ?? "")
                .trimmingCharacters(in: .whitespacesAndNewlines)) {
                kill(pid, SIGTERM)
            }
            namespace.remove()
        }
    }
}
