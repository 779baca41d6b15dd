import Foundation
import XCTest

/// Builds the test guests and the example plugin once per test process, and runs
/// `hvhost` and QEMU as child processes with a timeout.
enum HostHarness {
    static let repoRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    /// The hvhost built next to this test bundle.
    static let hvhost: String = {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? ""
        var dir = URL(fileURLWithPath: exe).deletingLastPathComponent()
        if dir.lastPathComponent.hasSuffix(".xctest") { dir.deleteLastPathComponent() }
        return dir.appendingPathComponent("hvhost").path
    }()

    static let workDir: String = {
        let dir = NSTemporaryDirectory() + "hvhost-tests-\(getpid())"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }()

    static let pluginDir = workDir + "/plugins"

    /// `make -C guests` and the example plugin; nil on success, else the build output.
    private static let buildResult: String? = {
        try? FileManager.default.createDirectory(atPath: pluginDir, withIntermediateDirectories: true)
        for args in [["-C", repoRoot + "/guests"],
                     ["-C", repoRoot + "/Plugins/Examples/EduDevice", "OUT=" + pluginDir]] {
            let r = run("/usr/bin/make", args, timeout: 300)
            if r.status != 0 { return "make \(args.joined(separator: " ")) failed:\n\(r.stdout)\n\(r.stderr)" }
        }
        return nil
    }()

    static func guest(_ name: String) -> String { repoRoot + "/guests/build/\(name).elf" }

    /// Skips without KVM, fails when the guests or hvhost could not be built.
    static func requireHost(file: StaticString = #filePath, line: UInt = #line) throws {
        guard access("/dev/kvm", R_OK | W_OK) == 0 else {
            throw XCTSkip("/dev/kvm is not usable here (\(String(cString: strerror(errno)))): VM tests need KVM")
        }
        if let failure = buildResult { XCTFail(failure, file: file, line: line); throw XCTSkip("build failed") }
        guard FileManager.default.isExecutableFile(atPath: hvhost) else {
            XCTFail("hvhost is not built at \(hvhost): run `swift build` first", file: file, line: line)
            throw XCTSkip("no hvhost")
        }
    }

    static func requireQEMU() throws -> String {
        for path in ["/usr/bin/qemu-system-x86_64", "/usr/local/bin/qemu-system-x86_64"]
        where FileManager.default.isExecutableFile(atPath: path) {
            guard access("/dev/kvm", R_OK | W_OK) == 0 else { throw XCTSkip("QEMU cross-check needs /dev/kvm") }
            if let failure = buildResult { XCTFail(failure); throw XCTSkip("build failed") }
            return path
        }
        throw XCTSkip("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86): QEMU cross-check skipped")
    }

    /// Writes a .vmx into the work directory and returns its path.
    static func writeVMX(_ name: String, _ lines: [String: String]) -> String {
        let path = workDir + "/\(name).vmx"
        let text = lines.sorted { $0.key < $1.key }.map { "\($0.key) = \"\($0.value)\"" }.joined(separator: "\n") + "\n"
        FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
        return path
    }

    static func vmx(_ name: String, guest: String, extra: [String: String] = [:]) -> String {
        var lines = ["displayName": name, "memsize": "64", "hv.kernel": HostHarness.guest(guest)]
        lines.merge(extra) { $1 }
        return writeVMX(name, lines)
    }

    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
        var timedOut: Bool
    }

    static func hvhostRun(_ args: [String], timeout: TimeInterval = 60, afterStart: ((Process) -> Void)? = nil) -> Result {
        run(hvhost, args, timeout: timeout, afterStart: afterStart)
    }

    static func run(_ executable: String, _ args: [String], timeout: TimeInterval,
                    afterStart: ((Process) -> Void)? = nil) -> Result {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = FileHandle.nullDevice
        var outData = Data(), errData = Data()
        let group = DispatchGroup()
        group.enter(); group.enter()
        DispatchQueue.global().async { outData = out.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        DispatchQueue.global().async { errData = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        do { try p.run() } catch {
            return Result(status: -1, stdout: "", stderr: "cannot start \(executable): \(error)", timedOut: false)
        }
        afterStart?(p)
        let deadline = Date().addingTimeInterval(timeout)
        var timedOut = false
        while p.isRunning {
            if Date() > deadline { timedOut = true; kill(p.processIdentifier, SIGKILL); break }
            usleep(10_000)
        }
        p.waitUntilExit()
        group.wait()
        return Result(status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                      stderr: String(decoding: errData, as: UTF8.self), timedOut: timedOut)
    }

    /// Compiles a C plugin from Tests/IntegrationTests/Fixtures (or a path relative to
    /// it) into `dir`.
    static func buildFixturePlugin(_ source: String, into dir: String) throws -> String {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let name = ((source as NSString).lastPathComponent as NSString).deletingPathExtension
        let output = dir + "/lib\(name).so"
        let r = run("/usr/bin/cc", ["-std=c99", "-Wall", "-Werror", "-shared", "-fPIC",
                                    "-I", repoRoot + "/Sources/PluginABI/include",
                                    "-o", output, repoRoot + "/Tests/IntegrationTests/Fixtures/" + source], timeout: 60)
        guard r.status == 0 else { throw FixtureBuildError(message: "cc \(source) failed: \(r.stderr)") }
        return output
    }
}

struct FixtureBuildError: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}

/// Serial logs and console sockets as the integration tests wait on them.
extension XCTestCase {
    func readLog(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }

    /// Polls the serial log until `done` holds for its text; fails the test and returns
    /// false after `timeout`.
    @discardableResult
    func waitForLog(_ path: String, timeout: TimeInterval = 60, _ done: (String) -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if done(readLog(path)) { return true }
            usleep(10_000)
        }
        XCTFail("timed out waiting on \(path):\n\(readLog(path))")
        return false
    }

    /// Waits (up to 10 s) for hvhost to create its console socket.
    func waitForSocket(_ socket: String) {
        for _ in 0..<1000 where !FileManager.default.fileExists(atPath: socket) { usleep(10_000) }
    }
}
