import Foundation
import Synchronization
import XCTest
@testable import HVBackendKVM
@testable import HVDevices
@testable import HVHostIO
@testable import HVKernel
@testable import HVMemory
@testable import HVSched
@testable import HVSupport

/// The service console over a real Unix socket, and the virtual-switch commands.
final class ConsoleTests: XCTestCase {
    var console: ServiceConsole!
    var path: String!

    override func setUpWithError() throws {
        path = NSTemporaryDirectory() + "hv-console-\(getpid())-\(UUID().uuidString.prefix(6)).sock"
        console = try ServiceConsole(path: path)
        console.start()
    }

    override func tearDown() { console.stop() }

    func testRequestsOverTheSocket() throws {
        console.register("echo", summary: "echo words") { $0.joined(separator: "+") }
        XCTAssertEqual(try ServiceConsole.request("echo a b c", at: path), "a+b+c\n")
        XCTAssertTrue(try ServiceConsole.request("help", at: path).contains("echo\techo words"))
        XCTAssertTrue(try ServiceConsole.request("nope", at: path).hasPrefix("error: unknown command 'nope'"))
        console.register("fail", summary: "throws") { _ in throw ServiceConsole.CommandError("it broke") }
        XCTAssertEqual(try ServiceConsole.request("fail", at: path), "error: it broke\n")
        XCTAssertThrowsError(try ServiceConsole.request("help", at: path + ".missing"))
    }

    // MARK: Serving clients

    /// A connected client socket (the test closes it), with a 10 s receive timeout so a
    /// console that never answers fails the test instead of hanging it.
    private func connectClient(to path: String) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in path.utf8.enumerated() { raw[i] = b }
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else {
            let e = errno
            close(fd)
            throw ServiceConsole.CommandError("connect \(path): \(String(cString: strerror(e)))")
        }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        return fd
    }

    private func send(_ text: String, on fd: Int32) {
        let bytes = Array(text.utf8)
        XCTAssertEqual(bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }, bytes.count)
    }

    /// Everything until the console closes the connection (or 10 s pass).
    private func readReply(_ fd: Int32) -> String {
        var reply: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            reply += buffer[0..<n]
        }
        return String(decoding: reply, as: UTF8.self)
    }

    /// True while the console keeps `fd` open without having written anything.
    private func isWaiting(_ fd: Int32) -> Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&p, 1, 0) == 0
    }

    /// A command that stops the host while it runs (suspending the host's last VM does)
    /// still gets its reply out; an idle client is let go at once.
    func testStopLetsARunningCommandReply() throws {
        let idle = try connectClient(to: path)
        defer { close(idle) }
        console.register("last", summary: "stops the console, then answers") { [console, path] _ in
            let stopper = HostThread.spawn(name: "stopper") { console!.stop() }
            pthread_detach(stopper)
            // Answer only once the console has stopped listening: stop() is under way.
            let deadline = VMClock.hostNanoseconds() + 10_000_000_000
            while (try? ServiceConsole.request("help", at: path!)) != nil, VMClock.hostNanoseconds() < deadline {}
            return "done"
        }
        let fd = try connectClient(to: path)
        defer { close(fd) }
        send("last\n", on: fd)
        XCTAssertEqual(readReply(fd), "done\n")
        XCTAssertEqual(readReply(idle), "", "the idle client sees end of input")
    }

    /// Idle clients and a client trickling its request hold no one up: with a request
    /// timeout of 60 s, a one-at-a-time console would make the next client wait minutes.
    func testIdleAndSlowClientsDoNotDelayOthers() throws {
        let slowPath = path + ".slow"
        let slow = try ServiceConsole(path: slowPath, requestTimeoutSeconds: 60)
        slow.register("echo", summary: "echo words") { $0.joined(separator: "+") }
        slow.start()
        defer { slow.stop() }
        let idle = try (0..<5).map { _ in try connectClient(to: slowPath) }
        defer { idle.forEach { close($0) } }
        let trickle = try connectClient(to: slowPath)
        defer { close(trickle) }
        send("ec", on: trickle)

        let other = try connectClient(to: slowPath)
        defer { close(other) }
        send("echo a b\n", on: other)
        XCTAssertEqual(readReply(other), "a+b\n")
        XCTAssertTrue(idle.allSatisfy(isWaiting), "the idle clients are still being served")
        XCTAssertTrue(isWaiting(trickle))
        send("ho slow\n", on: trickle)
        XCTAssertEqual(readReply(trickle), "slow\n")
    }

    /// More clients at once than the console serves concurrently: the rest wait in the
    /// listen backlog and every one gets its answer.
    func testManyClientsAtOnceAllGetAnswers() throws {
        console.register("echo", summary: "echo words") { $0.joined(separator: "+") }
        let count = 3 * ServiceConsole.maximumConcurrentClients
        let clients = try (0..<count).map { _ in try connectClient(to: path) }
        defer { clients.forEach { close($0) } }
        for (i, fd) in clients.enumerated() { send("echo \(i)\n", on: fd) }
        for (i, fd) in clients.enumerated() {
            XCTAssertEqual(readReply(fd), "\(i)\n")
        }
    }

    /// A thousand clients connected at once all get their answers: the backlog
    /// (SOMAXCONN) holds the ones beyond the concurrent limit, none is refused.
    func testAThousandConcurrentClientsAllGetAnswers() throws {
        console.register("echo", summary: "echo words") { $0.joined(separator: "+") }
        let clients = try (0..<1000).map { _ in try connectClient(to: path) }
        defer { clients.forEach { close($0) } }
        for (i, fd) in clients.enumerated() { send("echo \(i)\n", on: fd) }
        var answered = 0
        for (i, fd) in clients.enumerated() where readReply(fd) == "\(i)\n" { answered += 1 }
        XCTAssertEqual(answered, 1000)
    }

    /// A slow-loris client (one byte every 20 ms, never finishing in time) delays other
    /// clients' requests by less than 100 ms (the median of 20 timed requests).
    func testASlowLorisClientDelaysOthersByLessThan100ms() throws {
        console.register("echo", summary: "echo words") { $0.joined(separator: "+") }
        let loris = try connectClient(to: path)
        defer { close(loris) }
        let stop = Atomic(false)
        let trickler = Thread {
            let byte: [UInt8] = [UInt8(ascii: "x")]
            while !stop.load(ordering: .relaxed) {
                _ = byte.withUnsafeBytes { write(loris, $0.baseAddress, 1) }
                usleep(20_000)
            }
        }
        trickler.start()
        defer { stop.store(true, ordering: .relaxed) }
        var latencies: [Double] = []
        for i in 0..<20 {
            let started = Date()
            let fd = try connectClient(to: path)
            send("echo \(i)\n", on: fd)
            XCTAssertEqual(readReply(fd), "\(i)\n")
            close(fd)
            latencies.append(Date().timeIntervalSince(started) * 1000)
        }
        latencies.sort()
        print("console latency beside a slow-loris client: median \(latencies[10]) ms, max \(latencies[19]) ms")
        XCTAssertLessThan(latencies[10], 100)
    }

    func testARequestNotFinishedInTimeIsDropped() throws {
        let strictPath = path + ".strict"
        let strict = try ServiceConsole(path: strictPath, requestTimeoutSeconds: 0.2)
        strict.start()
        defer { strict.stop() }
        let fd = try connectClient(to: strictPath)
        defer { close(fd) }
        send("hel", on: fd)
        XCTAssertEqual(readReply(fd), "error: no complete request line within 0.2 s\n")
        XCTAssertTrue(try ServiceConsole.request("help", at: strictPath).contains("help\tlist commands"))
    }

    func testAnOversizeRequestIsRefused() throws {
        let fd = try connectClient(to: path)
        defer { close(fd) }
        send(String(repeating: "a", count: ServiceConsole.maximumRequestBytes + 100), on: fd)
        XCTAssertEqual(readReply(fd), "error: request longer than \(ServiceConsole.maximumRequestBytes) bytes\n")
    }

    // MARK: The socket and who may use it

    func testTheSocketIsTheOwnersAlone() throws {
        var st = stat()
        XCTAssertEqual(lstat(path, &st), 0)
        XCTAssertEqual(st.st_mode & S_IFMT, S_IFSOCK)
        XCTAssertEqual(st.st_mode & 0o777, 0o600)
        XCTAssertEqual(st.st_uid, geteuid())
    }

    func testAFileThatIsNotASocketIsNeverReplaced() throws {
        let file = path + ".file"
        XCTAssertTrue(FileManager.default.createFile(atPath: file, contents: Data("keep me".utf8)))
        defer { unlink(file) }
        XCTAssertThrowsError(try ServiceConsole(path: file)) { error in
            XCTAssertTrue("\(error)".hasPrefix("\(file) exists and is not a socket (a regular file); refusing to replace it"), "\(error)")
        }
        XCTAssertEqual(try String(contentsOfFile: file, encoding: .utf8), "keep me")
        let dir = path + ".dir"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: false)
        defer { rmdir(dir) }
        XCTAssertThrowsError(try ServiceConsole(path: dir)) { error in
            XCTAssertTrue("\(error)".contains("is not a socket (a directory)"), "\(error)")
        }
    }

    func testALiveConsoleIsNotTakenOver() throws {
        console.register("who", summary: "which console") { _ in "first" }
        XCTAssertThrowsError(try ServiceConsole(path: path)) { error in
            XCTAssertTrue("\(error)".hasPrefix("another process is serving a console at \(path!)"), "\(error)")
        }
        XCTAssertEqual(try ServiceConsole.request("who", at: path), "first\n")
    }

    /// A socket left by a host that died (nothing listens) is replaced.
    func testAStaleSocketIsReplaced() throws {
        let stale = path + ".stale"
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in stale.utf8.enumerated() { raw[i] = b }
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        XCTAssertEqual(rc, 0)
        close(fd)
        let successor = try ServiceConsole(path: stale)
        successor.start()
        defer { successor.stop() }
        XCTAssertTrue(try ServiceConsole.request("help", at: stale).contains("help\tlist commands"))
    }

    /// Stopping removes the socket only if it is still the one this console bound: a
    /// socket someone else put at the path stays.
    func testStopLeavesAnotherSocketAlone() throws {
        unlink(path)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in path.utf8.enumerated() { raw[i] = b }
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        XCTAssertEqual(rc, 0)
        var before = stat(), after = stat()
        XCTAssertEqual(lstat(path, &before), 0)
        console.stop()
        XCTAssertEqual(lstat(path, &after), 0, "the other socket is still there")
        XCTAssertEqual(before.st_ino, after.st_ino)
    }

    /// While a console lives its lock refuses a second one on the path, even with the
    /// socket file gone (a host still starting, or a removed socket); once it stops the
    /// path is free again.
    func testTheLockBesideTheSocketRefusesASecondHost() throws {
        unlink(path)
        XCTAssertThrowsError(try ServiceConsole(path: path)) { error in
            XCTAssertTrue("\(error)".contains("it holds \(path!).lock"), "\(error)")
        }
        console.stop()
        let next = try ServiceConsole(path: path)
        next.stop()
    }

    func testOnlyRootOrTheHostsUserIsAllowed() {
        XCTAssertTrue(ServiceConsole.isAllowed(peerUID: 0, hostUID: 1000))
        XCTAssertTrue(ServiceConsole.isAllowed(peerUID: 1000, hostUID: 1000))
        XCTAssertFalse(ServiceConsole.isAllowed(peerUID: 1001, hostUID: 1000))
        XCTAssertFalse(ServiceConsole.isAllowed(peerUID: 65534, hostUID: 0))
    }

    /// Another user, run through setpriv: the socket's mode keeps it out, and when an
    /// operator loosens the mode the peer-credential check still refuses it.
    func testAnotherUserIsRefused() throws {
        guard geteuid() == 0 else { throw XCTSkip("needs root to run a client as another user") }
        let setpriv = "/usr/bin/setpriv", perl = "/usr/bin/perl"
        for tool in [setpriv, perl] where !FileManager.default.isExecutableFile(atPath: tool) {
            throw XCTSkip("\(tool) is not installed")
        }
        let client = #"""
            use Socket;
            socket(my $s, AF_UNIX, SOCK_STREAM, 0) or die "socket: $!\n";
            connect($s, pack_sockaddr_un($ARGV[0])) or die "connect: $!\n";
            syswrite($s, "help\n");
            while (sysread($s, my $b, 4096)) { print $b }
            """#
        func runAsNobody() throws -> String {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: setpriv)
            p.arguments = ["--reuid=65534", "--regid=65534", "--clear-groups", perl, "-e", client, path]
            let out = Pipe()
            p.standardOutput = out
            p.standardError = out
            try p.run()
            let data = out.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            return String(decoding: data, as: UTF8.self)
        }
        XCTAssertEqual(try runAsNobody(), "connect: Permission denied\n")
        XCTAssertEqual(chmod(path, 0o666), 0)
        XCTAssertEqual(try runAsNobody(), "error: permission denied: uid 65534 is neither root nor the host's user (uid 0)\n")
        XCTAssertTrue(try ServiceConsole.request("help", at: path).contains("help\tlist commands"), "root still is")
    }

    /// `--console-group`: the socket is 0660 in the group, a member (another uid) is
    /// answered, a non-member is kept out by the mode.
    func testAConsoleGroupLetsItsMembersIn() throws {
        guard geteuid() == 0 else { throw XCTSkip("needs root to run clients as other users") }
        let setpriv = "/usr/bin/setpriv", perl = "/usr/bin/perl"
        for tool in [setpriv, perl] where !FileManager.default.isExecutableFile(atPath: tool) {
            throw XCTSkip("\(tool) is not installed")
        }
        let groupPath = path + ".group"
        let grouped = try ServiceConsole(path: groupPath, group: 65534)
        grouped.start()
        defer { grouped.stop() }
        var st = stat()
        XCTAssertEqual(lstat(groupPath, &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o660)
        XCTAssertEqual(st.st_gid, 65534)
        let client = #"""
            use Socket;
            socket(my $s, AF_UNIX, SOCK_STREAM, 0) or die "socket: $!\n";
            connect($s, pack_sockaddr_un($ARGV[0])) or die "connect: $!\n";
            syswrite($s, "help\n");
            while (sysread($s, my $b, 4096)) { print $b }
            """#
        func run(uid: Int, gid: Int) throws -> String {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: setpriv)
            p.arguments = ["--reuid=\(uid)", "--regid=\(gid)", "--clear-groups", perl, "-e", client, groupPath]
            let out = Pipe()
            p.standardOutput = out
            p.standardError = out
            try p.run()
            let data = out.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            return String(decoding: data, as: UTF8.self)
        }
        XCTAssertTrue(try run(uid: 4242, gid: 65534).contains("help\tlist commands"), "a member of the group")
        XCTAssertEqual(try run(uid: 4242, gid: 4242), "connect: Permission denied\n", "not in the group")
        XCTAssertEqual(chmod(groupPath, 0o666), 0)
        XCTAssertEqual(try run(uid: 4242, gid: 4242),
                       "error: permission denied: uid 4242 is neither root, the host's user (uid 0) nor in the console group (gid 65534)\n")
    }

    func testNetPortsCountersAndLinkControl() throws {
        let switches = SwitchRegistry()
        let lab = switches.virtualSwitch(named: "lab")
        let received = LockedCount()
        let a = lab.makePort(name: "vm1.ethernet0", mac: [0x00, 0x50, 0x56, 0, 0, 1], receive: { _ in .taken }, linkChanged: { _ in })
        let b = lab.makePort(name: "vm2.ethernet0", mac: [0x00, 0x50, 0x56, 0, 0, 2], receive: { _ in received.add(); return .taken },
                             linkChanged: { _ in })
        defer { for p in [a, b] { lab.removePort(p) } }
        _ = switches.virtualSwitch(named: "other")
        console.registerNetCommands(switches)

        XCTAssertEqual(a.send([UInt8](repeating: 0xFF, count: 6) + [0x00, 0x50, 0x56, 0, 0, 1, 0x08, 0x00] + [UInt8](repeating: 0, count: 46)), .sent)
        XCTAssertTrue(lab.waitUntilDelivered())
        let switchesText = console.execute("net switches")
        XCTAssertTrue(switchesText.contains("lab\t2") && switchesText.contains("other\t0"), switchesText)
        let ports = console.execute("net ports lab")
        XCTAssertTrue(ports.contains("lab\tvm1.ethernet0\t00:50:56:00:00:01\tup\t1\t60\t0\t0"), ports)
        XCTAssertTrue(ports.contains("lab\tvm2.ethernet0\t00:50:56:00:00:02\tup\t0\t0\t1\t60"), ports)

        XCTAssertEqual(console.execute("net link vm2 ethernet0 down"), "vm2.ethernet0: link down")
        XCTAssertEqual(a.send([UInt8](repeating: 0xFF, count: 60)), .sent)
        XCTAssertTrue(lab.waitUntilDelivered())
        XCTAssertEqual(received.value, 1, "a port whose link is down receives nothing")
        XCTAssertTrue(console.execute("net ports").contains("vm2.ethernet0\t00:50:56:00:00:02\tdown"))
        XCTAssertEqual(console.execute("net link vm2 ethernet0 up"), "vm2.ethernet0: link up")
        XCTAssertTrue(console.execute("net link vm9 ethernet0 up").hasPrefix("error: no port 'vm9.ethernet0'"))
        XCTAssertTrue(console.execute("net link vm2 ethernet0 sideways").hasPrefix("error: usage"))
    }
}

extension ConsoleTests {
    /// `net shape` sets a port's outbound shaping live, reports its counters and turns it off.
    func testNetShapeSetsShapingLive() throws {
        let switches = SwitchRegistry()
        let lab = switches.virtualSwitch(named: "shape-lab")
        let a = lab.makePort(name: "vm1.ethernet0", mac: [0x00, 0x50, 0x56, 0, 0, 1], receive: { _ in .taken }, linkChanged: { _ in })
        let b = lab.makePort(name: "vm2.ethernet0", mac: [0x00, 0x50, 0x56, 0, 0, 2], receive: { _ in .taken }, linkChanged: { _ in })
        defer { for p in [a, b] { lab.removePort(p) } }
        console.registerNetCommands(switches)
        XCTAssertEqual(console.execute("net shape vm1 ethernet0"), "vm1.ethernet0: not shaped")
        XCTAssertEqual(console.execute("net shape vm1 ethernet0 8000 8000 1518"),
                       "vm1.ethernet0: average 8000 bit/s, peak 8000 bit/s, burst 1518 B")
        // A 1518-byte burst: the first 60-byte frames fit (25 of them), then the bucket is dry.
        let frame = [UInt8](repeating: 0xFF, count: 6) + [0x00, 0x50, 0x56, 0, 0, 1, 0x08, 0x00] + [UInt8](repeating: 0, count: 46)
        for _ in 0..<40 { XCTAssertEqual(a.send(frame), .sent) }
        XCTAssertTrue(lab.waitUntilDelivered())
        XCTAssertEqual(b.counters.rxFrames, 25)
        XCTAssertEqual(a.counters.txShaped, 15)
        XCTAssertTrue(console.execute("net shape vm1 ethernet0").contains("passed 25 frames/1500 B, dropped 15 frames"))
        XCTAssertTrue(console.execute("net ports shape-lab").contains("vm1.ethernet0\t00:50:56:00:00:01\tup\t25\t1500\t0\t0\t15\t0\t0\t15"))
        XCTAssertTrue(console.execute("net shape vm1 ethernet0 9000 8000 1518").hasPrefix("error: shaping: the peak rate"))
        XCTAssertEqual(console.execute("net shape vm1 ethernet0 off"), "vm1.ethernet0: shaping off")
        XCTAssertEqual(a.send(frame), .sent)
        XCTAssertTrue(lab.waitUntilDelivered())
        XCTAssertEqual(b.counters.rxFrames, 26)
    }
}

final class LockedCount: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    func add() { lock.withLock { n += 1 } }
    var value: Int { lock.withLock { n } }
}
