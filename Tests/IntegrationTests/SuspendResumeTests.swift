import Foundation
import XCTest

/// ESX-style suspend and resume through the service console and `hvhost resume`: the
/// guest continues where it was (its memory, vCPUs, chipset, PCI and plugin devices
/// come back), on the same virtual switch as its peers.
final class SuspendResumeTests: XCTestCase {
    private static let dir: String = {
        let d = HostHarness.workDir + "/suspend"
        try? FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }()

    private func fresh(_ names: String...) {
        for n in names {
            try? FileManager.default.removeItem(atPath: Self.dir + "/" + n)
            try? FileManager.default.removeItem(atPath: Self.dir + "/" + n + ".tmp")
        }
    }

    private func console(_ socket: String, _ words: String...) -> HostHarness.Result {
        HostHarness.hvhostRun(["console", "--socket", socket] + words, timeout: 60)
    }

    /// The counts of the burn guest's `burn: <units>` lines, in order.
    private func burnCounts(_ log: String) -> [UInt64] {
        log.split(separator: "\n").compactMap { line in
            line.hasPrefix("burn: ") ? UInt64(line.dropFirst(6)) : nil
        }
    }

    private func occurrences(_ needle: String, in text: String) -> Int { text.components(separatedBy: needle).count - 1 }

    // MARK: burn

    /// A CPU-bound guest suspended by `console suspend` and continued by `hvhost resume`:
    /// its unit count goes on from where it was instead of starting from zero. Then
    /// corrupt, cut-short and foreign files are refused with a message, and a VM cannot
    /// be resumed next to itself.
    func testSuspendedBurnGuestContinuesItsCountAfterResume() throws {
        try HostHarness.requireHost()
        fresh("burn.log", "burn.hvsusp", "burn-corrupt.hvsusp", "burn-short.hvsusp")
        let log = Self.dir + "/burn.log", file = Self.dir + "/burn.hvsusp"
        let socket = Self.dir + "/burn-1.sock", socket2 = Self.dir + "/burn-2.sock"
        let vmx = HostHarness.vmx("susp-burn", guest: "burn", extra: ["hv.serial": "file:\(log)", "hv.cmdline": "seconds=0"])

        var suspend = HostHarness.Result(status: -1, stdout: "", stderr: "", timedOut: false)
        let first = HostHarness.hvhostRun(["run", "--console", socket, vmx], timeout: 90) { _ in
            self.waitForSocket(socket)
            guard self.waitForLog(log, { self.burnCounts($0).count >= 2 }) else { return }
            suspend = self.console(socket, "suspend", "susp-burn", file)
        }
        XCTAssertEqual(suspend.status, 0, suspend.stdout + suspend.stderr)
        XCTAssertTrue(suspend.stdout.hasPrefix("susp-burn: suspended to \(file) ("), suspend.stdout)
        XCTAssertFalse(first.timedOut, first.stderr)
        XCTAssertEqual(first.status, 0, "the host's only VM was suspended:\n\(first.stderr)")
        XCTAssertTrue(first.stderr.contains("susp-burn: suspended to \(file)"), first.stderr)
        let before = burnCounts(readLog(log))
        let last = try XCTUnwrap(before.last)

        var twin = suspend
        let second = HostHarness.hvhostRun(["resume", "--console", socket2, file], timeout: 90) { _ in
            self.waitForSocket(socket2)
            _ = self.waitForLog(log) { self.burnCounts($0).count >= before.count + 2 }
            twin = self.console(socket2, "resume", file)
            _ = self.console(socket2, "poweroff", "susp-burn")
        }
        XCTAssertFalse(second.timedOut, second.stderr)
        XCTAssertEqual(second.status, 0, second.stderr)
        XCTAssertTrue(second.stderr.contains("susp-burn: resumed from \(file) (64 MiB, 1 vCPU)"), second.stderr)
        XCTAssertEqual(twin.status, 1)
        XCTAssertTrue(twin.stdout.contains("a VM named 'susp-burn' is already running on this host"), twin.stdout)

        let text = readLog(log)
        let after = burnCounts(text)
        XCTAssertGreaterThanOrEqual(after.count, before.count + 2, text)
        let firstResumed = try XCTUnwrap(after.dropFirst(before.count).first)
        XCTAssertGreaterThan(firstResumed, last, "the count went on from \(last) instead of restarting:\n\(text)")
        XCTAssertEqual(after, after.sorted(), text)
        XCTAssertEqual(occurrences("burn: seconds=", in: text), 1, "the guest did not boot again:\n\(text)")
        XCTAssertEqual(occurrences("rt: entry=", in: text), 1, text)

        // A damaged file is refused before anything is created.
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: file)))
        let corrupt = Self.dir + "/burn-corrupt.hvsusp", short = Self.dir + "/burn-short.hvsusp"
        bytes[bytes.count / 2] ^= 0x40
        FileManager.default.createFile(atPath: corrupt, contents: Data(bytes))
        FileManager.default.createFile(atPath: short, contents: Data(bytes.prefix(bytes.count / 3)))
        for (path, why) in [(corrupt, "checksum mismatch"), (short, "checksum mismatch"),
                            (vmx, "not a suspend file (no HVSUSPND header)")] {
            let r = HostHarness.hvhostRun(["resume", path], timeout: 30)
            XCTAssertEqual(r.status, 2, r.stderr)
            XCTAssertTrue(r.stderr.contains("cannot resume: \(path): \(why)"), r.stderr)
        }
    }

    // MARK: net-ping

    /// Two VMs on the "susp-lab" switch: A pings B once a second. A is suspended after its
    /// second reply and resumed into the same host next to B: its sequence continues (3..6
    /// answered, no new boot, no new ARP) and B answers all six.
    func testSuspendedPingerContinuesItsSequenceOnTheSameSwitch() throws {
        try HostHarness.requireHost()
        let hvhostDir = (HostHarness.hvhost as NSString).deletingLastPathComponent
        guard FileManager.default.fileExists(atPath: hvhostDir + "/libVlance.so") else {
            XCTFail("libVlance.so is not built next to hvhost: run `swift build`")
            return
        }
        fresh("ping-a.log", "ping-b.log", "ping-a.hvsusp")
        let logA = Self.dir + "/ping-a.log", logB = Self.dir + "/ping-b.log"
        let file = Self.dir + "/ping-a.hvsusp", socket = Self.dir + "/ping.sock"
        func nic(_ name: String, _ cmdline: String, _ log: String) -> String {
            HostHarness.vmx(name, guest: "net-ping", extra: [
                "hv.cmdline": cmdline, "hv.serial": "file:\(log)", "ethernet0.present": "TRUE",
                "ethernet0.virtualDev": "vlance", "ethernet0.networkName": "susp-lab"])
        }
        let a = nic("susp-a", "ip=10.0.0.1 peer=10.0.0.2 role=ping count=6 interval=1000", logA)
        let b = nic("susp-b", "ip=10.0.0.2 role=respond count=6 timeout=90", logB)
        var suspend = HostHarness.Result(status: -1, stdout: "", stderr: "", timedOut: false)
        var listing = suspend, resume = suspend
        let r = HostHarness.hvhostRun(["run", "--console", socket, a, b], timeout: 120) { _ in
            self.waitForSocket(socket)
            guard self.waitForLog(logA, { $0.contains("ping: 10.0.0.2 seq=2 ok\n") }) else { return }
            suspend = self.console(socket, "suspend", "susp-a", file)
            listing = self.console(socket, "vms")
            resume = self.console(socket, "resume", file)
        }
        XCTAssertFalse(r.timedOut, r.stderr)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(suspend.stdout.hasPrefix("susp-a: suspended to \(file)"), suspend.stdout + suspend.stderr)
        XCTAssertTrue(listing.stdout.contains("susp-a\t64 MiB\t1\t"), listing.stdout)
        XCTAssertTrue(listing.stdout.contains("\tstopped: suspended to \(file)"), listing.stdout)
        XCTAssertTrue(listing.stdout.range(of: #"susp-b\t64 MiB\t1\t\d+\trunning"#, options: .regularExpression) != nil,
                      listing.stdout)
        XCTAssertEqual(resume.stdout, "susp-a: resumed from \(file)\n", resume.stderr)

        let textA = readLog(logA), textB = readLog(logB)
        for seq in 1...6 {
            XCTAssertEqual(occurrences("ping: 10.0.0.2 seq=\(seq) ok\n", in: textA), 1, textA)
        }
        XCTAssertTrue(textA.contains("ping: 6/6 replies"), textA)
        XCTAssertTrue(textA.contains("EXIT 0"), textA)
        XCTAssertEqual(occurrences("pcnet: started", in: textA), 1, "A booted again:\n\(textA)")
        XCTAssertEqual(occurrences("arp: 10.0.0.2 is at", in: textA), 1, textA)
        XCTAssertTrue(textB.contains("respond: answered 6 echo requests"), textB)
        XCTAssertTrue(r.stderr.contains("susp-a: suspended to \(file)"), r.stderr)
        XCTAssertTrue(r.stderr.contains("susp-a: resumed from \(file)"), r.stderr)
        XCTAssertTrue(r.stderr.contains("susp-a: guest exit code 0") && r.stderr.contains("susp-b: guest exit code 0"), r.stderr)
    }

    // MARK: refusal

    /// A VM with a device that cannot save its state is refused, naming the device, and
    /// keeps running; no file is left behind.
    func testSuspendRefusesADeviceWithoutSaveStateAndTheVMKeepsRunning() throws {
        try HostHarness.requireHost()
        let plugins = try HostHarness.buildFixturePlugin("stateless.c", into: Self.dir + "/plugins-stateless")
        fresh("stateless.log", "stateless.hvsusp")
        let log = Self.dir + "/stateless.log", file = Self.dir + "/stateless.hvsusp", socket = Self.dir + "/stateless.sock"
        let vmx = HostHarness.vmx("susp-stateless", guest: "burn", extra: [
            "hv.serial": "file:\(log)", "hv.cmdline": "seconds=0",
            "hv.device0.present": "TRUE", "hv.device0.model": "stateless"])
        var refused = HostHarness.Result(status: -1, stdout: "", stderr: "", timedOut: false)
        var listing = refused
        var countAtRefusal = 0
        let r = HostHarness.hvhostRun(["run", "--plugin-path", (plugins as NSString).deletingLastPathComponent,
                                       "--console", socket, vmx], timeout: 90) { _ in
            self.waitForSocket(socket)
            guard self.waitForLog(log, { self.burnCounts($0).count >= 1 }) else { return }
            refused = self.console(socket, "suspend", "susp-stateless", file)
            countAtRefusal = self.burnCounts(self.readLog(log)).count
            _ = self.waitForLog(log) { self.burnCounts($0).count >= countAtRefusal + 2 }
            listing = self.console(socket, "vms")
            _ = self.console(socket, "poweroff", "susp-stateless")
        }
        XCTAssertEqual(refused.status, 1)
        XCTAssertEqual(refused.stdout, "error: cannot suspend susp-stateless: hv.device0 (model 'stateless', plugin Stateless Device) has no save_state/load_state; the VM keeps running\n")
        XCTAssertFalse(FileManager.default.fileExists(atPath: file))
        XCTAssertFalse(FileManager.default.fileExists(atPath: file + ".tmp"))
        XCTAssertTrue(listing.stdout.range(of: #"susp-stateless\t64 MiB\t1\t\d+\trunning"#, options: .regularExpression) != nil,
                      listing.stdout)
        XCTAssertFalse(r.stderr.contains("paused"), "nothing stopped:\n\(r.stderr)")
        XCTAssertEqual(r.status, 0, r.stderr)
    }
}
