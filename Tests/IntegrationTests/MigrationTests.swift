import Foundation
import XCTest

/// Live migration (VMotion) between two hvhost processes on loopback: `hvhost run
/// --incoming` on the destination, `hvhost migrate` against the source's console.
final class MigrationTests: XCTestCase {
    private static let dir: String = {
        let d = HostHarness.workDir + "/migration"
        try? FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }()
    /// A port per test, away from other tests' ports.
    private static let ports = NSLock()
    nonisolated(unsafe) private static var nextPort = 47_100 + Int(getpid() % 500) * 4

    private func port() -> Int {
        Self.ports.lock()
        defer { Self.ports.unlock() }
        Self.nextPort += 1
        return Self.nextPort
    }

    private func lines(_ log: String, prefix: String) -> [String] {
        log.split(separator: "\n").filter { $0.hasPrefix(prefix) }.map(String.init)
    }

    private func burnCounts(_ log: String) -> [UInt64] { lines(log, prefix: "burn: ").compactMap { UInt64($0.dropFirst(6)) } }

    /// `dirty: pass P pages N` -> N.
    private func dirtyProgress(_ log: String) -> [UInt64] {
        lines(log, prefix: "dirty: pass ").compactMap { $0.split(separator: " ").last.flatMap { UInt64($0) } }
    }

    /// Starts the destination host in the background; returns the process and its stderr file.
    private func startDestination(_ address: String, console: String, extra: [String] = []) throws -> (Process, String) {
        let err = Self.dir + "/dst-\(UUID().uuidString.prefix(8)).err"
        FileManager.default.createFile(atPath: err, contents: nil)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: HostHarness.hvhost)
        p.arguments = ["run", "--incoming", address, "--console", console] + extra
        p.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: err))
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        return (p, err)
    }

    private func waitForExit(_ p: Process, timeout: TimeInterval = 60) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(20_000) }
        if p.isRunning { p.terminate(); return false }
        return true
    }

    private func fresh(_ names: String...) {
        for n in names { try? FileManager.default.removeItem(atPath: Self.dir + "/" + n) }
    }

    // MARK: burn

    /// A CPU-bound guest moves to another host: its unit count goes on from where it was
    /// (no reboot, no reset), the source host reports the move and exits, the destination
    /// runs the VM until it is powered off there.
    func testBurnGuestCountKeepsIncreasingAcrossTheMove() throws {
        try HostHarness.requireHost()
        fresh("burn.log", "burn-src.sock", "burn-dst.sock")
        let log = Self.dir + "/burn.log", src = Self.dir + "/burn-src.sock", dstSocket = Self.dir + "/burn-dst.sock"
        let address = "tcp:127.0.0.1:\(port())"
        let vmx = HostHarness.vmx("mig-burn", guest: "burn", extra: ["hv.serial": "file:\(log)", "hv.cmdline": "seconds=0"])
        let (dst, dstErr) = try startDestination(address, console: dstSocket)
        defer { if dst.isRunning { dst.terminate() } }

        var migrate = HostHarness.Result(status: -1, stdout: "", stderr: "", timedOut: false)
        var before: [UInt64] = []
        let source = HostHarness.hvhostRun(["run", "--console", src, vmx], timeout: 120) { _ in
            self.waitForSocket(src)
            guard self.waitForLog(log, { self.burnCounts($0).count >= 2 }) else { return }
            before = self.burnCounts(self.readLog(log))
            migrate = HostHarness.hvhostRun(["migrate", "--socket", src, "mig-burn", address], timeout: 90)
        }
        XCTAssertEqual(migrate.status, 0, migrate.stdout + migrate.stderr)
        XCTAssertTrue(migrate.stdout.contains("mig-burn -> \(address): completed"), migrate.stdout)
        XCTAssertFalse(source.timedOut, source.stderr)
        XCTAssertEqual(source.status, 0, source.stderr)
        XCTAssertTrue(source.stderr.contains("mig-burn: migrated to \(address)"), source.stderr)
        XCTAssertTrue(source.stderr.range(of: #"completed in \d+ ms, \d+ round\(s\), .* downtime [0-9.]+ ms"#,
                                          options: .regularExpression) != nil, source.stderr)

        waitForLog(log) { self.burnCounts($0).count >= before.count + 3 }
        let off = HostHarness.hvhostRun(["console", "--socket", dstSocket, "poweroff", "mig-burn"], timeout: 30)
        XCTAssertEqual(off.status, 0, off.stdout)
        XCTAssertTrue(waitForExit(dst))
        XCTAssertEqual(dst.terminationStatus, 0, readLog(dstErr))
        let dstText = readLog(dstErr)
        XCTAssertTrue(dstText.contains("mig-burn: resumed from incoming migration from 127.0.0.1:"), dstText)

        let text = readLog(log)
        let after = burnCounts(text)
        XCTAssertEqual(after, after.sorted(), "the count went back:\n\(text)")
        let last = try XCTUnwrap(before.last)
        XCTAssertGreaterThan(try XCTUnwrap(after.last), last + 2, text)
        XCTAssertEqual(text.components(separatedBy: "burn: seconds=").count - 1, 1, "the guest booted again:\n\(text)")
    }

    // MARK: dirtying guest

    /// A guest that rewrites 32 MiB as fast as it can, over a link held to 32 MiB/s,
    /// never converges: after 4 rounds the VM switches over with what is left dirty.
    /// Every page arrives intact (the guest checks each page's previous pass) and its
    /// progress goes on on the destination.
    func testDirtyingGuestMovesIntactAfterItsRoundLimit() throws {
        try HostHarness.requireHost()
        fresh("dirty.log", "dirty-src.sock", "dirty-dst.sock")
        let log = Self.dir + "/dirty.log", src = Self.dir + "/dirty-src.sock", dstSocket = Self.dir + "/dirty-dst.sock"
        let address = "tcp:127.0.0.1:\(port())"
        let vmx = HostHarness.vmx("mig-dirty", guest: "dirty", extra: [
            "hv.serial": "file:\(log)", "hv.cmdline": "mib=32", "memsize": "128"])
        let (dst, dstErr) = try startDestination(address, console: dstSocket)
        defer { if dst.isRunning { dst.terminate() } }

        var migrate = HostHarness.Result(status: -1, stdout: "", stderr: "", timedOut: false)
        var before = 0
        let source = HostHarness.hvhostRun(["run", "--console", src, vmx], timeout: 150) { _ in
            self.waitForSocket(src)
            guard self.waitForLog(log, { self.dirtyProgress($0).count >= 2 }) else { return }
            before = self.dirtyProgress(self.readLog(log)).count
            migrate = HostHarness.hvhostRun(["migrate", "--socket", src, "mig-dirty", address, "--max-bandwidth", "32",
                                             "--max-rounds", "4", "--no-auto-converge"], timeout: 120)
        }
        XCTAssertEqual(migrate.status, 0, migrate.stdout + migrate.stderr)
        XCTAssertEqual(source.status, 0, source.stderr)
        XCTAssertTrue(source.stderr.contains("completed in ") && source.stderr.contains(" 4 round(s)"), source.stderr)
        XCTAssertTrue(source.stderr.contains("mig-dirty: migrated to \(address)"), source.stderr)

        waitForLog(log) { self.dirtyProgress($0).count >= before + 3 }
        _ = HostHarness.hvhostRun(["console", "--socket", dstSocket, "poweroff", "mig-dirty"], timeout: 30)
        XCTAssertTrue(waitForExit(dst))
        let text = readLog(log)
        XCTAssertFalse(text.contains("MISMATCH"), "a page arrived stale:\n\(text)")
        let progress = dirtyProgress(text)
        XCTAssertEqual(progress, progress.sorted(), text)
        XCTAssertTrue(readLog(dstErr).contains("mig-dirty: resumed from incoming migration"), readLog(dstErr))
    }

    /// The same guest without a round limit: auto-converge throttles its vCPUs until
    /// what is left fits the downtime target, and every page arrives intact.
    func testDirtyingGuestConvergesWithAutoConverge() throws {
        try HostHarness.requireHost()
        fresh("converge.log", "converge-src.sock", "converge-dst.sock")
        let log = Self.dir + "/converge.log", src = Self.dir + "/converge-src.sock", dstSocket = Self.dir + "/converge-dst.sock"
        let address = "tcp:127.0.0.1:\(port())"
        let vmx = HostHarness.vmx("mig-converge", guest: "dirty", extra: [
            "hv.serial": "file:\(log)", "hv.cmdline": "mib=32", "memsize": "128"])
        let (dst, dstErr) = try startDestination(address, console: dstSocket)
        defer { if dst.isRunning { dst.terminate() } }

        var migrate = HostHarness.Result(status: -1, stdout: "", stderr: "", timedOut: false)
        var before = 0
        let source = HostHarness.hvhostRun(["run", "--console", src, vmx], timeout: 150) { _ in
            self.waitForSocket(src)
            guard self.waitForLog(log, { self.dirtyProgress($0).count >= 2 }) else { return }
            before = self.dirtyProgress(self.readLog(log)).count
            migrate = HostHarness.hvhostRun(["migrate", "--socket", src, "mig-converge", address, "--max-bandwidth", "32"],
                                            timeout: 120)
        }
        XCTAssertEqual(migrate.status, 0, migrate.stdout + migrate.stderr)
        XCTAssertEqual(source.status, 0, source.stderr)
        XCTAssertTrue(source.stderr.contains("throttling its vCPUs"), "auto-converge never throttled:\n\(source.stderr)")
        XCTAssertTrue(source.stderr.contains("mig-converge: migrated to \(address)"), source.stderr)
        XCTAssertFalse(source.stderr.contains(" 60 round(s)"), "it only switched over at the round limit:\n\(source.stderr)")

        waitForLog(log) { self.dirtyProgress($0).count >= before + 3 }
        _ = HostHarness.hvhostRun(["console", "--socket", dstSocket, "poweroff", "mig-converge"], timeout: 30)
        XCTAssertTrue(waitForExit(dst))
        let text = readLog(log)
        XCTAssertFalse(text.contains("MISMATCH"), "a page arrived stale:\n\(text)")
        XCTAssertTrue(readLog(dstErr).contains("mig-converge: resumed from incoming migration"), readLog(dstErr))
    }

    // MARK: failures

    /// The destination lacks the plugin of one of the VM's devices: it refuses before the
    /// source copies anything, naming the device, and the VM keeps running on the source.
    func testDestinationWithoutThePluginRefusesAndTheSourceKeepsRunning() throws {
        try HostHarness.requireHost()
        let plugin = try HostHarness.buildFixturePlugin("stateful.c", into: Self.dir + "/plugins-stateful")
        fresh("refuse.log", "refuse-src.sock", "refuse-dst.sock")
        let log = Self.dir + "/refuse.log", src = Self.dir + "/refuse-src.sock", dstSocket = Self.dir + "/refuse-dst.sock"
        let address = "tcp:127.0.0.1:\(port())"
        let vmx = HostHarness.vmx("mig-refuse", guest: "burn", extra: [
            "hv.serial": "file:\(log)", "hv.cmdline": "seconds=0",
            "hv.device0.present": "TRUE", "hv.device0.model": "stateful"])
        let (dst, dstErr) = try startDestination(address, console: dstSocket)
        defer { if dst.isRunning { dst.terminate() } }

        var migrate = HostHarness.Result(status: -1, stdout: "", stderr: "", timedOut: false)
        var countAtRefusal = 0
        let source = HostHarness.hvhostRun(["run", "--plugin-path", (plugin as NSString).deletingLastPathComponent,
                                            "--console", src, vmx], timeout: 120) { _ in
            self.waitForSocket(src)
            guard self.waitForLog(log, { self.burnCounts($0).count >= 1 }) else { return }
            migrate = HostHarness.hvhostRun(["migrate", "--socket", src, "mig-refuse", address], timeout: 60)
            countAtRefusal = self.burnCounts(self.readLog(log)).count
            self.waitForLog(log) { self.burnCounts($0).count >= countAtRefusal + 2 }
            _ = HostHarness.hvhostRun(["console", "--socket", src, "poweroff", "mig-refuse"], timeout: 30)
        }
        XCTAssertEqual(migrate.status, 1, migrate.stdout)
        XCTAssertTrue(migrate.stdout.contains("failed: the destination \(address) refused: hv.device0 cannot be created on this host: ")
                      && migrate.stdout.contains("no plugin provides device model 'stateful'"), migrate.stdout)
        XCTAssertTrue(migrate.stdout.contains("mig-refuse keeps running here"), migrate.stdout)
        XCTAssertEqual(source.status, 0, source.stderr)
        XCTAssertFalse(source.stderr.contains("mig-refuse: paused"), "the source stopped:\n\(source.stderr)")
        XCTAssertTrue(source.stderr.contains("mig-refuse: powered off"), source.stderr)
        XCTAssertTrue(waitForExit(dst))
        XCTAssertEqual(dst.terminationStatus, 2, readLog(dstErr))
        XCTAssertTrue(readLog(dstErr).contains("refused mig-refuse: hv.device0 cannot be created on this host"), readLog(dstErr))
    }

    /// The destination dies while memory is being copied (a slow link): the migration
    /// fails and the VM keeps running on the source, its guest making progress.
    func testDestinationKilledMidCopyLeavesTheVMRunningOnTheSource() throws {
        try HostHarness.requireHost()
        fresh("killed.log", "killed-src.sock", "killed-dst.sock")
        let log = Self.dir + "/killed.log", src = Self.dir + "/killed-src.sock", dstSocket = Self.dir + "/killed-dst.sock"
        let address = "tcp:127.0.0.1:\(port())"
        let vmx = HostHarness.vmx("mig-killed", guest: "dirty", extra: [
            "hv.serial": "file:\(log)", "hv.cmdline": "mib=32", "memsize": "128"])
        let (dst, dstErr) = try startDestination(address, console: dstSocket)
        defer { if dst.isRunning { dst.terminate() } }

        let outcome = NSLock()
        nonisolated(unsafe) var migrate: HostHarness.Result?
        var atFailure = 0
        let source = HostHarness.hvhostRun(["run", "--console", src, vmx], timeout: 120) { _ in
            self.waitForSocket(src)
            guard self.waitForLog(log, { self.dirtyProgress($0).count >= 1 }) else { return }
            let client = Thread {
                let r = HostHarness.hvhostRun(["migrate", "--socket", src, "mig-killed", address, "--max-bandwidth", "2"],
                                              timeout: 90)
                outcome.withLock { migrate = r }
            }
            client.start()
            self.waitForLog(dstErr) { $0.contains("receiving memory") }
            kill(dst.processIdentifier, SIGKILL)
            while outcome.withLock({ migrate == nil }) { usleep(20_000) }
            atFailure = self.dirtyProgress(self.readLog(log)).count
            self.waitForLog(log) { self.dirtyProgress($0).count >= atFailure + 2 }
            _ = HostHarness.hvhostRun(["console", "--socket", src, "poweroff", "mig-killed"], timeout: 30)
        }
        let result = try XCTUnwrap(outcome.withLock { migrate })
        XCTAssertEqual(result.status, 1, result.stdout)
        XCTAssertTrue(result.stdout.contains("failed: ") && result.stdout.contains("mig-killed keeps running here"), result.stdout)
        XCTAssertEqual(source.status, 0, source.stderr)
        XCTAssertTrue(source.stderr.contains("mig-killed: powered off"), source.stderr)
        XCTAssertFalse(readLog(log).contains("MISMATCH"), readLog(log))
    }
}
