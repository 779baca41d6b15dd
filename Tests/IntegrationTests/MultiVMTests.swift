import Foundation
import XCTest

/// Several VMs in one hvhost process, like one ESX host.
final class MultiVMTests: XCTestCase {
    func testTripleFaultInOneVMLeavesTheOthersRunning() throws {
        try HostHarness.requireHost()
        let dir = HostHarness.workDir
        let timer = HostHarness.vmx("multi-timer", guest: "timer", extra: ["hv.serial": "file:\(dir)/multi-timer.log"])
        let crash = HostHarness.vmx("multi-crash", guest: "triple-fault", extra: ["hv.serial": "file:\(dir)/multi-crash.log"])
        let hello = HostHarness.vmx("multi-hello", guest: "hello", extra: ["hv.serial": "file:\(dir)/multi-hello.log"])
        let r = HostHarness.hvhostRun(["run", timer, crash, hello])
        XCTAssertEqual(r.status, 2, "one VM failed, so the host reports failure")
        XCTAssertTrue(r.stderr.contains("multi-crash: triple fault"), r.stderr)
        let timerLog = try String(contentsOfFile: "\(dir)/multi-timer.log", encoding: .utf8)
        let helloLog = try String(contentsOfFile: "\(dir)/multi-hello.log", encoding: .utf8)
        // The timer VM ran its full 2 s measurement after the other VM died.
        XCTAssertTrue(timerLog.contains("lapic: ") && timerLog.contains("EXIT 0"), timerLog)
        XCTAssertTrue(helloLog.contains("Hello from the hvhost test guest") && helloLog.contains("EXIT 0"), helloLog)
        XCTAssertTrue(r.stderr.contains("multi-timer: guest exit code 0"), r.stderr)
    }

    func testSIGTERMPowersEveryVMOffCleanly() throws {
        try HostHarness.requireHost()
        let a = HostHarness.vmx("sig-a", guest: "timer", extra: ["hv.serial": "none"])
        let b = HostHarness.vmx("sig-b", guest: "timer", extra: ["hv.serial": "none"])
        let r = HostHarness.hvhostRun(["run", a, b]) { p in
            usleep(700_000)
            kill(p.processIdentifier, SIGTERM)
        }
        XCTAssertFalse(r.timedOut)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("sig-a: powered off"), r.stderr)
        XCTAssertTrue(r.stderr.contains("sig-b: powered off"), r.stderr)
    }

    func testServiceConsoleListsAndPowersOffVMs() throws {
        try HostHarness.requireHost()
        let socket = HostHarness.workDir + "/console.sock"
        let a = HostHarness.vmx("con-a", guest: "timer", extra: ["hv.serial": "none"])
        let b = HostHarness.vmx("con-b", guest: "timer", extra: ["hv.serial": "none"])
        var listing = HostHarness.Result(status: -1, stdout: "", stderr: "", timedOut: false)
        var unknown = listing, powerOff = listing
        let r = HostHarness.hvhostRun(["run", "--console", socket, a, b]) { _ in
            for _ in 0..<100 where !FileManager.default.fileExists(atPath: socket) { usleep(20_000) }
            usleep(200_000)
            listing = HostHarness.hvhostRun(["console", "--socket", socket, "vms"], timeout: 10)
            unknown = HostHarness.hvhostRun(["console", "--socket", socket, "reboot-the-moon"], timeout: 10)
            powerOff = HostHarness.hvhostRun(["console", "--socket", socket, "poweroff", "con-a"], timeout: 10)
            _ = HostHarness.hvhostRun(["console", "--socket", socket, "poweroff", "con-b"], timeout: 10)
        }
        XCTAssertEqual(listing.status, 0, listing.stderr)
        XCTAssertTrue(listing.stdout.contains("con-a\t64 MiB\t1\t"), listing.stdout)
        XCTAssertTrue(listing.stdout.contains("con-b\t64 MiB\t1\t"), listing.stdout)
        XCTAssertEqual(unknown.status, 1)
        XCTAssertTrue(unknown.stdout.contains("unknown command 'reboot-the-moon'"), unknown.stdout)
        XCTAssertTrue(powerOff.stdout.contains("con-a: powering off"), powerOff.stdout)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("con-a: powered off"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: socket), "the socket is removed at exit")
    }
}
