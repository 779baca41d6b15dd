import Testing
@testable import HVPluginHost
@testable import HVSched
@testable import HVSchedSim

/// roundrobin, the baseline: equal turns whatever the shares, affinity honoured.
@Suite struct SchedPolicyRoundRobinTests {
    typealias F = SchedPolicyFixtures

    @Test func equalSplitWhateverTheShares() throws {
        let r = try F.simulate(try F.scenario("shares-1-2-1.sched"), policy: "roundrobin")
        for v in r.vms { #expect(abs(v.achievedPercent - 100.0 / 3) < 0.2, "\(v.name): \(v.achievedPercent)") }
        // Each vCPU waits exactly two slices for its next turn.
        for v in r.vms { #expect(v.maxWait <= 20_000_000) }
    }

    @Test func equalSplitOnTwoPCPUs() throws {
        let text = """
            pcpus 2
            duration 10s
            vm a
            vm b
            vm c
            vm d vcpus=2
            """
        let r = try F.simulate(text, policy: "roundrobin")
        #expect(abs(F.vm(r, "a").achievedPercent - 20) < 0.3)
        #expect(abs(F.vm(r, "d").achievedPercent - 40) < 0.6)
        #expect(r.idlePercent < 0.01)
    }

    @Test func honoursAffinity() throws {
        let r = try F.simulate(try F.scenario("affinity.sched"), policy: "roundrobin")
        #expect(r.counters.affinityViolations == 0 && r.counters.invalidPicks == 0)
    }

    @Test func idlesUntilTheNextWake() throws {
        let text = """
            pcpus 2
            duration 2s
            vm io workload=io run=1ms sleep=9ms dist=fixed
            """
        let r = try F.simulate(text, policy: "roundrobin")
        // A woken vCPU finds an idle pCPU at once.
        #expect(F.vm(r, "io").wakeMax == 0)
        #expect(abs(F.vm(r, "io").achievedPercent - 5) < 0.1)
    }
}
