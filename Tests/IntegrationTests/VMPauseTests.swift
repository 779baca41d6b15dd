import Foundation
import HVBackendKVM
import HVHostIO
import HVKernel
import HVSupport
import Logging
import XCTest

/// `VirtualMachine.pause`/`resume` on a running burn guest, in this process: while paused
/// no vCPU runs (no exits, no serial output) and the VM clock stands still; after resume
/// the guest goes on and the clock continues from where it stopped.
final class VMPauseTests: XCTestCase {
    func testPausedVMRunsNothingAndItsClockStandsStill() throws {
        try HostHarness.requireHost()
        let log = HostHarness.workDir + "/pause-burn.log"
        try? FileManager.default.removeItem(atPath: log)
        let vmx = HostHarness.vmx("pause-burn", guest: "burn", extra: ["hv.serial": "file:\(log)", "hv.cmdline": "seconds=0"])
        let services = HostServices(kvm: try KVMSystem(), switches: SwitchRegistry(), diskQueue: DiskIOQueue(name: "pause-disk"),
                                    resolveModel: { d in throw VMError("no plugins here (\(d.prefix))") })
        var logger = Logger(label: "pause-test")
        logger.logLevel = .warning
        let vm = try VirtualMachine(configuration: VMConfiguration(contentsOf: vmx), host: services, logger: logger)
        vm.start()
        defer {
            vm.stop(.poweredOff)
            vm.waitUntilStopped()
        }
        func lines() -> Int {
            ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n").filter { $0.hasPrefix("burn: ") }.count
        }
        func waitForLines(_ n: Int) -> Bool {
            let deadline = Date().addingTimeInterval(30)
            while lines() < n && Date() < deadline { usleep(10_000) }
            return lines() >= n
        }
        XCTAssertTrue(waitForLines(2))

        try vm.pause()
        XCTAssertTrue(vm.isPaused)
        XCTAssertThrowsError(try vm.pause()) { XCTAssertEqual("\($0)", "pause-burn is already paused") }
        let clock = vm.clock.now(), exits = vm.exitCount, printed = lines()
        usleep(1_500_000)     // host time passes; nothing in the VM may
        XCTAssertEqual(vm.clock.now(), clock, "the VM clock stands still while paused")
        XCTAssertEqual(vm.exitCount, exits, "no vCPU ran while paused")
        XCTAssertEqual(lines(), printed, "no output while paused (the guest prints every RTC second)")

        let resumedAt = VMClock.hostNanoseconds()
        vm.resume()
        XCTAssertFalse(vm.isPaused)
        XCTAssertTrue(waitForLines(printed + 1), "the guest runs again")
        let advanced = vm.clock.now() - clock, wall = VMClock.hostNanoseconds() - resumedAt
        XCTAssertLessThanOrEqual(advanced, wall + 50_000_000, "the clock went on from where it stopped, without the pause")
    }
}
