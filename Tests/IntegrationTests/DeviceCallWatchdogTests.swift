import Foundation
import XCTest

/// A device call that does not return (guests/stall reading the blocking-bar fixture's
/// BAR): with one pCPU slot another VM keeps burning, the call is reported with plugin,
/// device and register, and past the fail limit only the culprit VM fails.
final class DeviceCallWatchdogTests: XCTestCase {
    private func stallVM(_ env: SchedulingEnv, _ name: String, _ extra: [String: String]) -> String {
        try? FileManager.default.removeItem(atPath: "\(env.dir)/\(name).log")
        var lines = ["hv.serial": "file:\(env.dir)/\(name).log", "hv.device0.present": "TRUE",
                     "hv.device0.model": "blocking-bar"]
        lines.merge(extra) { $1 }
        return HostHarness.vmx(name, guest: "stall", extra: lines)
    }

    private func waitFor(_ what: String, timeout: TimeInterval = 20, _ done: () throws -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while try !done() {
            guard Date() < deadline else { throw FixtureBuildError(message: "timed out waiting for \(what)") }
            Thread.sleep(forTimeInterval: 0.05)
        }
    }

    /// The burn VM's count rises while the stall VM's BAR read sleeps 3 s.
    private func expectBurnProgress(_ run: SchedulingRun, whileStuck log: @escaping () -> String) throws {
        try waitFor("the stall guest's BAR read") { log().contains("stall: reading BAR0") }
        let before = run.units("sw-burn") ?? 0
        try waitFor("burn progress during the stuck call", timeout: 10) { (run.units("sw-burn") ?? 0) > before + 1 }
        XCTAssertFalse(log().contains("stall: read 0x"), "the call returned before the burn VM was seen to progress")
    }

    func testABARReadThatSleepsGivesItsSlotBackAndIsReported() throws {
        let env = try SchedulingEnv.require(policies: [], guest: "stall")
        let plugin = try HostHarness.buildFixturePlugin("blocking_bar.c", into: env.dir + "/plugins-blocking")
        let vms = [env.burn("sw-burn"), stallVM(env, "sw-sleep", ["hv.device0.stallMs": "3000"])]
        let r = env.run(["--plugin-path", plugin, "--pcpus", "1"], vms) { run in
            try run.waitForBurnLines(["sw-burn"])
            try self.expectBurnProgress(run) { env.log("sw-sleep") }
            try self.waitFor("the call to return") { env.log("sw-sleep").contains("stall: read 0x57a1") }
            try self.waitFor("the stall guest's exit") { try run.console("vms").contains("stopped: guest exit code 0") }
        }
        XCTAssertFalse(r.timedOut, r.stderr)
        let site = "hv.device0 (model 'blocking-bar', plugin 'Blocking BAR'): BAR 0 read at offset 0x0 (4 bytes)"
        XCTAssertTrue(r.stderr.contains("sw-sleep: vCPU 0: device call has not returned for 1"), r.stderr)
        XCTAssertTrue(r.stderr.contains("\(site); its pCPU slot is given back"), r.stderr)
        XCTAssertTrue(r.stderr.contains("sw-sleep: vCPU 0: device call returned after"), r.stderr)
        XCTAssertTrue(r.stderr.contains("sw-sleep: guest exit code 0"), r.stderr)
    }

    func testABARReadThatNeverReturnsFailsItsVMAlone() throws {
        let env = try SchedulingEnv.require(policies: [], guest: "stall")
        let plugin = try HostHarness.buildFixturePlugin("blocking_bar.c", into: env.dir + "/plugins-blocking")
        let vms = [env.burn("sw-burn"), stallVM(env, "sw-loop", ["hv.device0.stall": "loop", "hv.deviceCallLimit": "100/1500"])]
        var stopRequested = Date.distantFuture
        let r = env.run(["--plugin-path", plugin, "--pcpus", "1"], vms, powerOff: false) { run in
            try run.waitForBurnLines(["sw-burn"])
            try self.expectBurnProgress(run) { env.log("sw-loop") }
            try self.waitFor("the stuck VM to fail") { try run.console("vms").contains("failed: vCPU 0: device call did not return") }
            let before = run.units("sw-burn") ?? 0
            try self.waitFor("burn progress after the failure", timeout: 10) { (run.units("sw-burn") ?? 0) > before + 1 }
            stopRequested = Date()
            kill(run.pid, SIGTERM)
        }
        XCTAssertFalse(r.timedOut, r.stderr)
        XCTAssertLessThan(Date().timeIntervalSince(stopRequested), 10, "hvhost took too long to stop")
        XCTAssertEqual(r.status, 2, "one VM failed: \(r.stderr)")
        XCTAssertTrue(r.stderr.contains("sw-loop: failed: vCPU 0: device call did not return within 15"), r.stderr)
        XCTAssertTrue(r.stderr.contains("BAR 0 read at offset 0x0 (4 bytes); the VM is stopped and the vCPU's thread abandoned"), r.stderr)
        XCTAssertTrue(r.stderr.contains("sw-burn: powered off"), r.stderr)
    }

    /// SIGTERM while a call is stuck (below the fail limit): hvhost still ends, after the
    /// fail limit at most, having abandoned the stuck thread.
    func testSIGTERMWhileACallIsStuckEndsTheHost() throws {
        let env = try SchedulingEnv.require(policies: [], guest: "stall")
        let plugin = try HostHarness.buildFixturePlugin("blocking_bar.c", into: env.dir + "/plugins-blocking")
        let vms = [stallVM(env, "sw-term", ["hv.device0.stall": "loop", "hv.deviceCallLimit": "100/2000"])]
        var stopRequested = Date.distantFuture
        let r = env.run(["--plugin-path", plugin, "--pcpus", "1"], vms, powerOff: false) { run in
            try self.waitFor("the stuck call") { env.log("sw-term").contains("stall: reading BAR0") }
            stopRequested = Date()
            kill(run.pid, SIGTERM)
        }
        XCTAssertFalse(r.timedOut, r.stderr)
        XCTAssertLessThan(Date().timeIntervalSince(stopRequested), 10, "hvhost took too long to stop")
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("sw-term: powered off"), r.stderr)
    }

    /// A plugin's BAR handler opening a file on the vCPU thread is caught by the vCPU
    /// seccomp filter (on by default): the host dies of SIGSYS naming the call (openat,
    /// 257); with --no-vcpu-seccomp the same read completes.
    func testAForbiddenSystemCallFromAVCPUThreadIsCaught() throws {
        let env = try SchedulingEnv.require(policies: [], guest: "stall")
        let plugin = try HostHarness.buildFixturePlugin("blocking_bar.c", into: env.dir + "/plugins-blocking")
        let vmx = stallVM(env, "sw-open", ["hv.device0.stall": "open"])
        let caught = HostHarness.hvhostRun(["run", "--plugin-path", plugin, vmx], timeout: 60)
        XCTAssertFalse(caught.timedOut, caught.stderr)
        XCTAssertEqual(caught.status, SIGSYS, "killed by SIGSYS: \(caught.stderr)")
        XCTAssertTrue(caught.stderr.contains("hvhost: seccomp: a vCPU thread (or a device plugin called on it) made system call 257, which vCPU threads may not make"), caught.stderr)
        XCTAssertFalse(env.log("sw-open").contains("stall: read 0x"), env.log("sw-open"))

        let vmx2 = stallVM(env, "sw-open-off", ["hv.device0.stall": "open"])
        let allowed = HostHarness.hvhostRun(["run", "--no-vcpu-seccomp", "--plugin-path", plugin, vmx2], timeout: 60)
        XCTAssertEqual(allowed.status, 1, allowed.stderr)
        XCTAssertTrue(env.log("sw-open-off").contains("stall: read 0x57a1"), env.log("sw-open-off"))
    }
}
