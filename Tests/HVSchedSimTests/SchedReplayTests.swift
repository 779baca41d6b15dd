import Foundation
import Logging
import Testing
@testable import HVSched
@testable import HVSchedSim

/// Recording (a pool driven by hand writes a file) and replaying (a recorded workload's
/// demand under a policy, deterministically, beside what the live run achieved).
@Suite struct SchedReplayTests {
    static func tempPath(_ name: String) -> String { NSTemporaryDirectory() + "hv-replay-\(getpid())-\(name)" }

    @Test func recorderWritesWhatTheReplayReads() throws {
        let clock = ManualSchedulerClock(5_000_000_000)
        let pool = SchedulerPool(name: "p", slots: [PCPUSlot(index: 0, localIndex: 0, hostCPU: nil)], policy: FallbackPolicy(),
                                 clock: clock, logger: Logger(label: "replay-test"))
        let path = Self.tempPath("unit.rec")
        defer { unlink(path) }
        let recorder = try SchedulerRecorder(path: path, pcpus: 1, start: clock.now())
        pool.attach(recorder, index: 0)
        let a = try pool.join(id: 7, vmID: 1, vmName: "alpha", vcpuIndex: 0, params: SchedulerParams(shares: 2000),
                              cpuClock: nil, kick: {})
        let b = try pool.join(id: 8, vmID: 2, vmName: "beta", vcpuIndex: 0, params: SchedulerParams(shares: 1000, maxPercent: 50),
                              cpuClock: nil, kick: {})
        try #require(pool.state(of: a) == .running(0))
        clock.advance(by: 10_000_000)
        pool.timerTick()
        pool.endSlice(a, ranNanoseconds: 9_000_000)
        try #require(pool.state(of: b) == .running(0), "the fallback hands the slot on at the slice end")
        clock.advance(by: 4_000_000)
        pool.block(b, ranNanoseconds: 3_000_000)
        clock.advance(by: 6_000_000)
        pool.wake(b)
        try pool.setParams(a, SchedulerParams(shares: 3000))
        clock.advance(by: 5_000_000)
        pool.leave(a, ranNanoseconds: 5_000_000)
        pool.leave(b, ranNanoseconds: 0)
        try recorder.finish()
        #expect(access(path + ".events", F_OK) != 0, "the side file is removed")

        let rec = try SchedRecording.load(path)
        #expect(rec.pcpus == 1 && rec.duration == 25_000_000)
        #expect(rec.pools == [.init(name: "p", slots: [0], policy: "fallback")])
        #expect(rec.vms.map(\.name) == ["alpha", "beta"] && rec.vms[0].params.shares == 2000 && rec.vms[1].params.maxPercent == 50)
        let kinds = rec.events.map { e -> String in
            switch e.1 {
            case .join: "j"; case .wake: "w"; case .block: "b"; case .yield: "y"; case .sliceEnd: "s"
            case .leave: "l"; case .pick: "p"; case .idle: "i"; case .params: "c"
            }
        }
        #expect(kinds.prefix(6) == ["j", "p", "j", "s", "p", "b"], "\(kinds)")
        #expect(rec.events.contains { $0.0 == 10_000_000 && $0.1 == .sliceEnd(vcpu: 7, ran: 9_000_000) })
        #expect(rec.events.contains { $0.0 == 14_000_000 && $0.1 == .block(vcpu: 8, ran: 3_000_000, burst: 3_000_000) })
        #expect(rec.events.contains { $0.0 == 20_000_000 && $0.1 == .wake(vcpu: 8) })
        #expect(rec.events.contains { $0.1 == .params(vcpu: 7, shares: 3000, min: 0, max: 100) })

        // The demand: beta ran 3 ms, slept 6 ms, then ran to its leave.
        let sc = try rec.scenario(pool: nil)
        #expect(sc.vms.map(\.name) == ["alpha", "beta"])
        #expect(sc.recordedBursts == [[], [.init(run: 3_000_000, sleep: 6_000_000)]])
        #expect(sc.changes.map(\.cpu.shares) == [.custom(3000)])
        let live = try rec.liveResult(pool: nil)
        let got: [Double] = live.vms.map(\.achievedPercent)
        let want: [Double] = [56, 12]             // 14 ms and 3 ms of CPU in 25 ms
        #expect(zip(got, want).allSatisfy { abs($0 - $1) < 1e-9 }, "\(got)")
    }

    /// A recording written by hand: hogs A (1000 shares) and B (3000) and an I/O VM C
    /// that runs 1 ms and sleeps 4 ms, over 2 s on one pCPU.
    static func syntheticRecording() -> String {
        var s = """
            hvsched-record 1
            pcpus 1
            duration 2000000000
            pool 0 default slots 0 policy propshare
            vm 1 A pool 0 vcpus 1 shares 1000 min 0 max 100 affinity 0 htsharing any
            vm 2 B pool 0 vcpus 1 shares 3000 min 0 max 100 affinity 0 htsharing any
            vm 3 C pool 0 vcpus 1 shares 1000 min 0 max 100 affinity 0 htsharing any
            vcpu 0 vm 1 index 0
            vcpu 1 vm 2 index 0
            vcpu 2 vm 3 index 0
            events
            0 j 0
            0 j 1
            0 j 2
            0 p 0 0 2 10000000

            """
        // C: 1 ms bursts, 4 ms sleeps (the schedule between is irrelevant to the replay).
        s += "1000000 b 2 1000000 1000000\n"
        for _ in 0..<399 { s += "4000000 w 2\n1000000 b 2 0 1000000\n" }
        s += "end\n"
        return s
    }

    @Test func replayIsDeterministicAndFollowsThePolicy() throws {
        let rec = try SchedRecording.parse(Self.syntheticRecording(), name: "synthetic.rec")
        let sc = try rec.scenario(pool: "default")
        #expect(sc.recordedBursts[2].count == 400 && sc.recordedBursts[2][0] == .init(run: 1_000_000, sleep: 4_000_000))
        #expect(sc.recordedBursts[2].last?.sleep == .max, "C blocks for good after its last burst")
        let first = try SchedPolicyFixtures.simulate(sc, policy: "propshare")
        let again = try SchedPolicyFixtures.simulate(sc, policy: "propshare")
        #expect(first.timeSeriesCSV() == again.timeSeriesCSV() && first.summaryCSV() == again.summaryCSV())
        let a = SchedPolicyFixtures.vm(first, "A").achievedPercent, b = SchedPolicyFixtures.vm(first, "B").achievedPercent
        let c = SchedPolicyFixtures.vm(first, "C").achievedPercent
        print("propshare replay: A \(a) B \(b) C \(c)")
        #expect(abs(b / a - 3) < 0.1, "B/A = \(b / a) under propshare, shares 3:1")
        #expect(abs(c - 20) < 1, "C asked for 1 ms in 5 ms and got \(c) %")
        let rr = try SchedPolicyFixtures.simulate(sc, policy: "roundrobin")
        let ra = SchedPolicyFixtures.vm(rr, "A").achievedPercent, rb = SchedPolicyFixtures.vm(rr, "B").achievedPercent
        print("roundrobin replay: A \(ra) B \(rb)")
        #expect(abs(rb / ra - 1) < 0.05, "round robin ignores shares: B/A = \(rb / ra)")
    }

    @Test func badRecordingsAreRefusedWithTheLine() {
        let good = Self.syntheticRecording()
        let cases: [(String, String)] = [
            (good.replacingOccurrences(of: "hvsched-record 1", with: "hvsched-record 9"), "synthetic.rec:1: recording format version 9"),
            (String(good.dropLast(4)), "no 'end' line"),
            (good.replacingOccurrences(of: "0 j 2", with: "0 j 5"), "synthetic.rec:14: event 'j' names vCPU '5'"),
            (good.replacingOccurrences(of: "0 p 0 0 2 10000000", with: "0 q 0"), "synthetic.rec:15: unknown event kind 'q'"),
            ("hello\n", "not a scheduler recording"),
        ]
        for (text, message) in cases {
            do {
                _ = try SchedRecording.parse(text, name: "synthetic.rec")
                Issue.record("accepted a bad recording (\(message))")
            } catch {
                #expect("\(error)".contains(message), "\(error)")
            }
        }
    }
}
