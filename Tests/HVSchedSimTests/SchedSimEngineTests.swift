import Testing
@testable import HVPluginHost
@testable import HVSched
@testable import HVSchedSim

/// The simulator itself: determinism, the entitlement model, what it measures, and that
/// it catches a policy breaking the host's rules.
@Suite struct SchedSimEngineTests {
    typealias F = SchedPolicyFixtures

    static let ioMix = """
        pcpus 2
        duration 3s
        vm batch shares=2000
        vm web workload=io run=2ms sleep=8ms
        vm db workload=io run=1ms sleep=4ms dist=uniform
        vm late shares=500 arrive=1s leave=2500ms
        """

    @Test func sameSeedSameCSVBytes() throws {
        for policy in ["propshare", "roundrobin", "cosched-strict"] {
            let a = try F.simulate(Self.ioMix, policy: policy, seed: 7)
            let b = try F.simulate(Self.ioMix, policy: policy, seed: 7)
            #expect(Array(a.timeSeriesCSV().utf8) == Array(b.timeSeriesCSV().utf8))
            #expect(Array(a.summaryCSV().utf8) == Array(b.summaryCSV().utf8))
            #expect(a.summaryTable() == b.summaryTable())
        }
    }

    @Test func differentSeedDifferentIOBoundRun() throws {
        let a = try F.simulate(Self.ioMix, seed: 7)
        let b = try F.simulate(Self.ioMix, seed: 8)
        #expect(a.timeSeriesCSV() != b.timeSeriesCSV())
        #expect(a.summaryCSV() != b.summaryCSV())
        // CPU-bound only: nothing is random, the seed does not matter.
        let cpu = "pcpus 1\nduration 2s\nvm a\nvm b shares=2000\n"
        #expect(try F.simulate(cpu, seed: 1).timeSeriesCSV() == F.simulate(cpu, seed: 2).timeSeriesCSV())
    }

    @Test func csvShapes() throws {
        let r = try F.simulate("pcpus 1\nduration 2500ms\nwindow 1s\nvm a\nvm b\n")
        let lines = r.timeSeriesCSV().split(separator: "\n")
        #expect(lines[0] == "time_s,vm,entitled_pct,achieved_pct,max_pair_error_q")
        // Windows end at 1, 2 and the last, partial one at 2.5 s; one row per VM each.
        #expect(lines.count == 1 + 3 * 2)
        #expect(lines[1].hasPrefix("1.000,a,50.000,50.000,"))
        #expect(lines.last!.hasPrefix("2.500,b,50.000,"))
        let summary = r.summaryCSV()
        #expect(summary.hasPrefix("vm,vcpus,shares,min_pct,max_pct,"))
        #expect(summary.contains("\nmetric,value\npolicy,propshare\n"))
        #expect(summary.contains("\ninvalid_picks,0\n"))
    }

    @Test func entitlementWaterFilling() {
        typealias E = SchedSimEntitlement
        func rates(_ c: [E.Claim], _ cap: Double) -> [Double] { E.divide(c, capacity: cap).map(\.rate) }
        func close(_ a: [Double], _ b: [Double]) -> Bool { zip(a, b).allSatisfy { abs($0 - $1) < 1e-6 } }
        let cpu = { (s: Double) in E.Claim(shares: s, min: 0, max: 1, demand: 1) }
        #expect(close(rates([cpu(1000), cpu(2000), cpu(1000)], 1), [0.25, 0.5, 0.25]))
        // One vCPU cannot use more than one pCPU: the rest goes to the others.
        #expect(close(rates([cpu(1000), cpu(2000), cpu(1000)], 2), [0.5, 1, 0.5]))
        // min is a floor, the rest is divided by shares among the others.
        #expect(close(rates([E.Claim(shares: 1000, min: 0.5, max: 1, demand: 1), cpu(1000), cpu(1000)], 1),
                      [0.5, 0.25, 0.25]))
        // max and demand are ceilings; what they leave is redistributed (work-conserving).
        #expect(close(rates([E.Claim(shares: 1000, min: 0, max: 0.25, demand: 1), cpu(1000)], 1), [0.25, 0.75]))
        #expect(close(rates([E.Claim(shares: 1000, min: 0, max: 1, demand: 0.1), cpu(1000)], 1), [0.1, 0.9]))
        // Everything fits: everyone gets what it asks for and the rest idles.
        #expect(close(rates([E.Claim(shares: 1, min: 0, max: 0.25, demand: 1)], 1), [0.25]))
        // htsharing none costs a whole core.
        #expect(close(rates([E.Claim(shares: 1000, min: 0, max: 1, demand: 1, cost: 2), cpu(1000), cpu(1000)], 2),
                      [0.5, 0.5, 0.5]))
        let shares = E.divide([E.Claim(shares: 1000, min: 0.5, max: 1, demand: 1), cpu(1000), cpu(1000)], capacity: 1)
        #expect(shares.map(\.byShares) == [false, true, true])
    }

    @Test func measuresWakeLatencyAndWaits() throws {
        // One pCPU, a CPU hog and a sleeper: the sleeper waits for the hog's slice to end
        // (the host asks only free pCPUs on a wake), at most one 10 ms slice.
        let r = try F.simulate("pcpus 1\nduration 2s\nvm hog\nvm io workload=io run=1ms sleep=9ms dist=exp\n")
        let io = F.vm(r, "io")
        #expect(io.wakeups > 100)
        let p50 = try #require(io.wakeP50), p99 = try #require(io.wakeP99), mx = try #require(io.wakeMax)
        #expect(p50 <= p99 && p99 <= mx && mx <= 10_000_000)
        #expect(F.vm(r, "hog").maxWait <= 10_000_000)
    }

    @Test func runsTheBuiltInFallbackPolicy() throws {
        let scenario = try F.scenario("shares-1-2-1.sched")
        let r = try SchedSimulator(scenario: scenario, policy: FallbackPolicy(), seed: 1).run()
        #expect(r.policy == "fallback")
        #expect(abs(F.vm(r, "B").achievedPercent - 50) < 0.3)
    }

    @Test func catchesPicksTheHostWouldRefuse() throws {
        // Always picks vCPU 0 for 100 ms, on any pCPU, whatever its state or affinity.
        final class Stubborn: SchedulerPolicy {
            var name: String { "stubborn" }
            var origin: String { "test" }
            var isFallback: Bool { false }
            func addVCPU(_ vcpu: Int32, vm: Int32, params: SchedulerParams) throws {}
            func removeVCPU(_ vcpu: Int32) {}
            func wake(_ vcpu: Int32, now: UInt64) {}
            func block(_ vcpu: Int32, now: UInt64) {}
            func yield(_ vcpu: Int32, now: UInt64) {}
            func pickNext(pcpu: UInt32, now: UInt64) -> SchedulerPick { SchedulerPick(vcpu: 0, sliceNanoseconds: 100_000_000) }
            func account(_ vcpu: Int32, ranNanoseconds: UInt64) {}
            func setParams(_ vcpu: Int32, params: SchedulerParams) throws {}
            func dump() -> String? { nil }
            func shutdown() {}
        }
        let s = try SchedSimScenario.parse("pcpus 2\nduration 100ms\nvm a affinity=1\nvm b\n", name: "t")
        let r = try SchedSimulator(scenario: s, policy: Stubborn(), seed: 1).run()
        #expect(r.counters.affinityViolations > 0)
        #expect(r.counters.invalidPicks >= r.counters.affinityViolations)
        #expect(r.problems.contains { $0.contains("affinity 0x2 does not allow") })
        #expect(r.problems.contains { $0.contains("which is running on pcpu 1") })
        #expect(r.summaryTable().contains("invalid: "))
    }

    @Test func policyRefusingAVCPUIsAnError() throws {
        let s = try SchedSimScenario.parse("pcpus 2\nduration 1s\nvm big vcpus=3\n", name: "t.sched")
        let error = #expect(throws: SchedSimError.self) { try F.simulate(s, policy: "cosched-strict") }
        #expect(error?.description.contains("refused VM 'big' vCPU 2 (scenario line 3)") == true, "\(String(describing: error))")
    }

    @Test func traceShowsEveryCall() throws {
        let s = try SchedSimScenario.parse("pcpus 1\nduration 30ms\nvm a workload=io run=5ms sleep=5ms dist=fixed\n", name: "t")
        let sim = SchedSimulator(scenario: s, policy: try F.policy("propshare", pcpus: 1), seed: 1)
        var lines: [String] = []
        sim.trace = { lines.append($0) }
        _ = try sim.run()
        #expect(lines.first?.hasPrefix("0.000000 add+wake vcpu 0 (a/0)") == true)
        #expect(lines.contains("0.000000 pick pcpu 0 -> vcpu 0 slice 10ms"))
        #expect(lines.contains("0.005000 account vcpu 0 (a/0) ran 5ms on pcpu 0"))
        #expect(lines.contains("0.005000 block vcpu 0 (a/0)"))
        #expect(lines.contains("0.010000 wake vcpu 0 (a/0)"))
    }

    @Test func splitMix64IsTheReferenceSequence() {
        // Reference values of SplitMix64 seeded with 0 (Vigna's splitmix64.c).
        var g = SplitMix64(seed: 0)
        #expect(g.next() == 0xE220_A839_7B1D_CDAF)
        #expect(g.next() == 0x6E78_9E6A_A1B9_65F4)
        #expect(g.next() == 0x06C4_5D18_8009_454F)
    }
}
