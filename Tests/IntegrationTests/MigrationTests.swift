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

    /// The VMotion link goes silent mid-copy (a relay between the hosts stops passing
    /// bytes either way but keeps both connections open, as a pulled cable does): the
    /// source's stream blocks; `migrate cancel` ends it at once and the VM keeps running
    /// on the source, every page intact.
    func testSilentLinkMidCopyIsCancelledAndTheVMKeepsRunning() throws {
        try HostHarness.requireHost()
        fresh("silent.log", "silent-src.sock", "silent-dst.sock")
        let log = Self.dir + "/silent.log", src = Self.dir + "/silent-src.sock", dstSocket = Self.dir + "/silent-dst.sock"
        let dstPort = port()
        let vmx = HostHarness.vmx("mig-silent", guest: "dirty", extra: [
            "hv.serial": "file:\(log)", "hv.cmdline": "mib=32", "memsize": "128"])
        let (dst, dstErr) = try startDestination("tcp:127.0.0.1:\(dstPort)", console: dstSocket)
        defer { if dst.isRunning { dst.terminate() } }
        let relay = try SilentableRelay(to: UInt16(dstPort))
        defer { relay.close() }
        let address = "tcp:127.0.0.1:\(relay.port)"

        let outcome = NSLock()
        nonisolated(unsafe) var migrate: HostHarness.Result?
        var cancel = ""
        var atCancel = 0
        let source = HostHarness.hvhostRun(["run", "--console", src, vmx], timeout: 120) { _ in
            self.waitForSocket(src)
            guard self.waitForLog(log, { self.dirtyProgress($0).count >= 1 }) else { return }
            let client = Thread {
                let r = HostHarness.hvhostRun(["migrate", "--socket", src, "mig-silent", address, "--max-bandwidth", "2"],
                                              timeout: 90)
                outcome.withLock { migrate = r }
            }
            client.start()
            self.waitForLog(dstErr) { $0.contains("receiving memory") }
            relay.goSilent()
            cancel = HostHarness.hvhostRun(["console", "--socket", src, "migrate", "cancel", "mig-silent"], timeout: 30).stdout
            while outcome.withLock({ migrate == nil }) { usleep(20_000) }
            atCancel = self.dirtyProgress(self.readLog(log)).count
            self.waitForLog(log) { self.dirtyProgress($0).count >= atCancel + 2 }
            _ = HostHarness.hvhostRun(["console", "--socket", src, "poweroff", "mig-silent"], timeout: 30)
        }
        XCTAssertEqual(cancel, "mig-silent: cancelling the migration to \(address)\n")
        let result = try XCTUnwrap(outcome.withLock { migrate })
        XCTAssertEqual(result.status, 1, result.stdout)
        XCTAssertTrue(result.stdout.contains("mig-silent -> \(address): cancelled; mig-silent keeps running here"), result.stdout)
        XCTAssertEqual(source.status, 0, source.stderr)
        XCTAssertTrue(source.stderr.contains("mig-silent: powered off"), source.stderr)
        XCTAssertGreaterThan(relay.bytesPassed, 0)
        XCTAssertFalse(readLog(log).contains("MISMATCH"), readLog(log))
    }
}

/// A TCP relay on loopback for one connection that can go silent: it stops reading and
/// writing in both directions but keeps both sockets open, so the sender's buffers fill
/// and nothing arrives or is refused (a pulled cable, not a reset).
private final class SilentableRelay: @unchecked Sendable {
    let port: UInt16
    private let listener: Int32
    private let lock = NSLock()
    private var silent = false
    private var passed = 0
    private var fds: [Int32] = []
    private var closed = false

    var bytesPassed: Int { lock.withLock { passed } }

    init(to target: UInt16) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        guard bound == 0, listen(fd, 1) == 0 else { throw FixtureBuildError(message: "relay: bind/listen failed (errno \(errno))") }
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        listener = fd
        port = UInt16(bigEndian: addr.sin_port)
        Thread { [self] in accept(target: target) }.start()
    }

    func goSilent() { lock.withLock { silent = true } }

    func close() {
        let all: [Int32] = lock.withLock { defer { closed = true; fds = [] }; return closed ? [] : fds + [listener] }
        for fd in all { shutdown(fd, Int32(SHUT_RDWR)); Glibc.close(fd) }
    }

    private func accept(target: UInt16) {
        let client = Glibc.accept(listener, nil, nil)
        guard client >= 0 else { return }
        let upstream = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = target.bigEndian
        let connected = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(upstream, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        lock.withLock { fds += [client, upstream] }
        guard connected == 0 else { return }
        Thread { [self] in pump(from: client, to: upstream) }.start()
        pump(from: upstream, to: client)
    }

    private func pump(from: Int32, to: Int32) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            if lock.withLock({ silent || closed }) {
                if lock.withLock({ closed }) { return }
                usleep(10_000)
                continue
            }
            // Short waits, so that going silent takes effect between reads.
            var p = pollfd(fd: from, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 20) >= 0 else { return }
            guard p.revents != 0 else { continue }
            if lock.withLock({ silent }) { continue }
            let n = read(from, &buffer, buffer.count)
            guard n > 0 else { return }
            var off = 0
            while off < n {
                let w = buffer.withUnsafeBytes { write(to, $0.baseAddress! + off, n - off) }
                guard w > 0 else { return }
                off += w
            }
            lock.withLock { passed += n }
        }
    }
}
