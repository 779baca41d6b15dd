import Foundation
import HVSched
import XCTest

/// Wake-to-run latency measured live by the VMkernel: a mostly idle `tick` guest (HLT
/// between 100 Hz LAPIC timer interrupts) shares one pCPU slot with three `burn` hogs.
/// propshare preempts a hog when the idle VM wakes (its `preempt` op), so the idle VM's
/// p99 stays far below a 10 ms slice; the hogs still split the rest evenly.
final class SchedulingLatencyTests: XCTestCase {
    /// The live p99 budget. The simulator asserts ≤ 1 ms (SchedPropShareLatencyTests);
    /// live, a preemption is a signal to the hog's thread and a thread hand-off on a host
    /// whose 2 cores are shared with the build and other tests, so the bound is looser,
    /// but still under the 10 ms slice a wake waits for without preemption (measured here:
    /// p50 ~0.1 ms, p99 ~3.8 ms); the median must meet the 1 ms goal.
    static let p99Budget: UInt64 = 8_000_000
    static let p50Budget: UInt64 = 1_000_000

    func testIdleVMWakesQuicklyAgainstThreeHogsOnOneSlot() throws {
        let env = try SchedulingEnv.require(policies: ["propshare"])
        guard FileManager.default.fileExists(atPath: HostHarness.guest("tick")) else {
            throw XCTSkip("the tick guest is not built yet (make -C guests); latency test skipped")
        }
        try? FileManager.default.removeItem(atPath: "\(env.dir)/lat-ui.log")
        let ui = HostHarness.vmx("lat-ui", guest: "tick", extra: ["hv.serial": "file:\(env.dir)/lat-ui.log"])
        let hogs = ["lat-h1", "lat-h2", "lat-h3"]
        var wake: (p50: Double, p99: Double, wakes: Double)?
        var run: [String: Double] = [:]
        var table = "", top = ""
        let r = env.run(["--pcpus", "1", "--pool", "default:0:propshare"], hogs.map { env.burn($0) } + [ui]) { live in
            try live.waitForBurnLines(hogs)
            try Self.waitFor("tick: 200", in: { env.log("lat-ui") })
            let before = try live.stats()
            Thread.sleep(forTimeInterval: 5)
            run = try live.runPercent(since: before)
            let row = try XCTUnwrap(VCPUStats.parseRaw(try live.console("sched stats raw")).first { $0.fields["vm"] == "lat-ui" })
            wake = (row.number("wake50") ?? -1, row.number("wake99") ?? -1, row.number("wakes") ?? 0)
            table = try live.console("sched stats")
            top = HostHarness.hvhostRun(["top", "--socket", live.socket, "--interval", "0.5", "--count", "1"], timeout: 20).stdout
        }
        XCTAssertEqual(r.status, 0, r.stderr)
        let w = try XCTUnwrap(wake)
        print("live wake-to-run of the idle VM against three hogs on one slot: p50 \(Int(w.p50 / 1000)) us, p99 \(Int(w.p99 / 1000)) us over the last \(min(Int(w.wakes), 4096)) of \(Int(w.wakes)) wake-ups; %RUN \(run)")
        print(table)
        XCTAssertGreaterThan(w.wakes, 500, "the tick VM woke \(w.wakes) times")
        XCTAssertGreaterThan(w.p99, 0)
        XCTAssertLessThanOrEqual(w.p99, Double(Self.p99Budget), "idle VM's wake p99 \(w.p99) ns")
        XCTAssertLessThanOrEqual(w.p50, Double(Self.p50Budget), "idle VM's wake p50 \(w.p50) ns")
        // The hogs still share evenly (each ~1/3 of what the idle VM leaves).
        let hogRuns = try hogs.map { try XCTUnwrap(run[$0]) }
        let mean = hogRuns.reduce(0, +) / 3
        for (h, v) in zip(hogs, hogRuns) { XCTAssertEqual(v, mean, accuracy: mean * 0.05, "\(h): %RUN \(v), hogs \(hogRuns)") }
        XCTAssertTrue(table.contains("WAKE99us"), table)
        XCTAssertTrue(top.contains("WAKE99us") && top.contains("lat-ui"), top)
    }

    static func waitFor(_ text: String, in log: () -> String, timeout: TimeInterval = 30) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while !log().contains(text) {
            guard Date() < deadline else { throw FixtureBuildError(message: "no '\(text)' within \(timeout) s:\n\(log().suffix(500))") }
            Thread.sleep(forTimeInterval: 0.1)
        }
    }
}
