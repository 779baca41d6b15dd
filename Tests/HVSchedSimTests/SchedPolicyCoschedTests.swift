import Testing
@testable import HVPluginHost
@testable import HVSched
@testable import HVSchedSim

/// cosched-strict and cosched-relaxed: skew between the two vCPUs of a VM stays within
/// the 5 ms threshold, measured by the simulator (not taken from the policy).
@Suite struct SchedPolicyCoschedTests {
    typealias F = SchedPolicyFixtures
    static let threshold: UInt64 = 5_000_000

    /// Mixes that separate siblings: uneven shares, sleepers, three pCPUs, pins.
    static let mixes: [String] = [
        """
        pcpus 2
        duration 6s
        quantum 5ms
        vm smp vcpus=2 shares=2000
        vm s1 shares=1500
        vm s2 shares=700
        """,
        """
        pcpus 3
        duration 6s
        quantum 5ms
        vm smp vcpus=2 shares=2000
        vm s1 shares=1500
        vm s2 shares=700
        vm io workload=io run=3ms sleep=5ms
        """,
        """
        pcpus 2
        duration 6s
        quantum 5ms
        vm smp vcpus=2 shares=2000 workload=io run=4ms sleep=2ms
        vm s1 shares=1000
        vm s2 shares=1000 workload=io run=3ms sleep=3ms
        """,
        """
        pcpus 4
        duration 6s
        quantum 5ms
        vm a vcpus=2 shares=3000
        vm b vcpus=2 shares=1000 affinity=1-3
        vm c shares=800 workload=io run=700us sleep=1300us
        vm d vcpus=2 shares=low arrive=1s leave=4s
        vm e shares=2500
        """,
    ]

    @Test(arguments: 0..<4)
    func strictKeepsSkewWithinTheThreshold(_ mix: Int) throws {
        for seed in [1, 2, 3] as [UInt64] {
            let r = try F.simulate(Self.mixes[mix], policy: "cosched-strict", seed: seed)
            #expect(r.counters.invalidPicks == 0, "\(r.problems)")
            let skew = try #require(r.maxSkew)
            #expect(skew <= Self.threshold, "mix \(mix) seed \(seed): skew \(skew) ns")
            for v in r.vms { #expect(v.maxWait < 500_000_000, "\(v.name) waited \(v.maxWait) ns") }
        }
    }

    @Test(arguments: 0..<4)
    func relaxedKeepsDriftWithinTheThreshold(_ mix: Int) throws {
        for seed in [1, 2, 3] as [UInt64] {
            let r = try F.simulate(Self.mixes[mix], policy: "cosched-relaxed", seed: seed)
            #expect(r.counters.invalidPicks == 0, "\(r.problems)")
            let drift = try #require(r.maxDrift)
            #expect(drift <= Self.threshold, "mix \(mix) seed \(seed): drift \(drift) ns")
        }
    }

    @Test func strictCoStopsAndCoStartsWhileProportionalShareDoesNot() throws {
        let strict = try F.simulate(Self.mixes[0], policy: "cosched-strict")
        let dump = try #require(strict.policyState)
        #expect(dump.contains("co-stops") && !dump.contains("co-stops 0,"), "\(dump)")
        #expect(!dump.contains("co-starts 0,"), "\(dump)")
        // Without co-scheduling the siblings drift apart by whole slices.
        let plain = try F.simulate(Self.mixes[0], policy: "propshare")
        #expect(try #require(plain.maxSkew) > Self.threshold)
    }

    @Test func gangsShareFairlyWhenTheyFit() throws {
        let r = try F.simulate(try F.scenario("cosched-2way.sched"), policy: "cosched-strict")
        #expect(abs(F.vm(r, "smp").achievedPercent - 50) < 0.3)
        #expect(abs(F.vm(r, "solo1").achievedPercent - 25) < 0.3)
        #expect(r.maxSkew == 0)
    }

    @Test func aPairPinnedToOnePCPUStillRuns() throws {
        // It can never be co-started: strict mode treats it the relaxed way.
        let text = """
            pcpus 2
            duration 4s
            quantum 5ms
            vm pinned vcpus=2 affinity=1
            vm other
            """
        for policy in ["cosched-strict", "cosched-relaxed"] {
            let r = try F.simulate(text, policy: policy)
            #expect(F.vm(r, "pinned").achievedPercent > 20, "\(policy)")
            #expect(try #require(r.maxDrift) <= Self.threshold)
            #expect(r.counters.affinityViolations == 0)
        }
    }
}
