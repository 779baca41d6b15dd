import Foundation
import XCTest

/// `hvhost plugins` and `validate` read plugin metadata in a child process: a library
/// whose constructor crashes or hangs is listed as failed (naming what it did) and the
/// command still answers; mutated copies of a real plugin never take it down.
final class PluginIsolationTests: XCTestCase {
    static let hostile = #"""
        #include "hvplugin.h"
        #include <signal.h>
        #include <unistd.h>
        __attribute__((constructor)) static void misbehave(void) {
        #ifdef CRASH
            raise(SIGSEGV);
        #else
            for (;;) pause();
        #endif
        }
        const hv_plugin_entry *hv_plugin_entry_v1(void) { return 0; }
        """#

    private func hostileDirectory() throws -> String {
        let dir = HostHarness.workDir + "/isolation"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try Self.hostile.write(toFile: dir + "/hostile.c", atomically: true, encoding: .utf8)
        for (name, flag) in [("libacrash.so", "-DCRASH"), ("libbhang.so", "-DHANG")] {
            let r = HostHarness.run("/usr/bin/cc", ["-std=c99", "-shared", "-fPIC", flag, "-I",
                                                    HostHarness.repoRoot + "/Sources/PluginABI/include",
                                                    "-o", dir + "/" + name, dir + "/hostile.c"], timeout: 60)
            guard r.status == 0 else { throw FixtureBuildError(message: "cc \(name): \(r.stderr)") }
        }
        _ = try HostHarness.buildFixturePlugin("stateless.c", into: dir)
        return dir
    }

    private func withTimeout<T>(_ ms: Int, _ body: () throws -> T) rethrows -> T {
        setenv("HV_METADATA_TIMEOUT_MS", String(ms), 1)
        defer { unsetenv("HV_METADATA_TIMEOUT_MS") }
        return try body()
    }

    func testACrashingAndAHangingConstructorDoNotTakeThePluginsCommandDown() throws {
        try HostHarness.requireHost()
        let dir = try hostileDirectory()
        let r = withTimeout(2000) { HostHarness.hvhostRun(["plugins", "--plugin-path", dir], timeout: 60) }
        XCTAssertFalse(r.timedOut)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("\(dir)/libacrash.so: loading it crashed (Segmentation fault); not loaded"), r.stdout)
        XCTAssertTrue(r.stdout.contains("\(dir)/libbhang.so: loading it did not finish within 2000 ms; not loaded"), r.stdout)
        XCTAssertTrue(r.stdout.contains("org.test.stateless"), "the good plugin is still listed:\n\(r.stdout)")
    }

    func testValidateStillChecksAFileNextToACrashingPlugin() throws {
        try HostHarness.requireHost()
        let dir = try hostileDirectory()
        let vmx = HostHarness.vmx("isolated", guest: "hello", extra: ["hv.device0.present": "TRUE", "hv.device0.model": "stateless"])
        let r = withTimeout(2000) { HostHarness.hvhostRun(["validate", "--plugin-path", dir, vmx], timeout: 60) }
        XCTAssertFalse(r.timedOut)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("\(vmx): OK (isolated: "), r.stdout + r.stderr)
    }

    /// Copies of a real plugin with mutated ELF and section headers: `hvhost plugins`
    /// answers with each one listed or refused.
    func testMutatedPluginsNeverTakeThePluginsCommandDown() throws {
        try HostHarness.requireHost()
        let dir = HostHarness.workDir + "/isolation-fuzz"
        try? FileManager.default.removeItem(atPath: dir)
        let good = try HostHarness.buildFixturePlugin("stateless.c", into: dir + "-seed")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let original = try [UInt8](Data(contentsOf: URL(fileURLWithPath: good)))
        var state: UInt64 = 0xf00d
        func next() -> UInt64 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return state >> 17
        }
        let count = 24
        for i in 0..<count {
            var bytes = original
            for _ in 0..<(1 + Int(next() % 3)) {
                let offset = next() % 2 == 0 ? Int(next() % 64) : Int(next() % UInt64(bytes.count))
                bytes[offset] = UInt8(truncatingIfNeeded: next())
            }
            try Data(bytes).write(to: URL(fileURLWithPath: dir + String(format: "/libm%02d.so", i)))
        }
        let r = withTimeout(3000) { HostHarness.hvhostRun(["plugins", "--plugin-path", dir], timeout: 120) }
        XCTAssertFalse(r.timedOut)
        XCTAssertEqual(r.status, 0, r.stderr)
        for i in 0..<count {
            XCTAssertTrue(r.stdout.contains(dir + String(format: "/libm%02d.so", i)), "libm\(i) neither listed nor refused:\n\(r.stdout)")
        }
    }
}
