import Testing
@testable import HVSched
@testable import HVSchedSim

/// The built-in fallback honours reservation (min) and limit (max), not only shares:
/// a pool whose plugin policy misbehaved keeps every VM's entitlement.
@Suite struct SchedFallbackLimitsTests {
    typealias F = SchedPolicyFixtures

    private func simulate(_ text: String) throws -> SchedSimResult {
        let scenario = try SchedSimScenario.parse(text, name: "fallback.sched")
        return try SchedSimulator(scenario: scenario, policy: FallbackPolicy(), seed: 1).run()
    }

    @Test func minReservationUnderContention() throws {
        let r = try SchedSimulator(scenario: F.scenario("min-reservation.sched"), policy: FallbackPolicy(), seed: 1).run()
        #expect(F.vm(r, "A").achievedPercent >= 49.5, "A \(F.vm(r, "A").achievedPercent)")
        #expect(abs(F.vm(r, "B").achievedPercent - 25) < 0.5)
        #expect(abs(F.vm(r, "C").achievedPercent - 25) < 0.5)
        for w in F.windows(r, "A", from: 1, to: 20) { #expect(w.achievedPercent >= 49) }
        #expect(r.counters.invalidPicks == 0)
    }

    @Test func maxCapsEvenWhenThePCPUWouldIdle() throws {
        let r = try SchedSimulator(scenario: F.scenario("max-cap.sched"), policy: FallbackPolicy(), seed: 1).run()
        for w in F.windows(r, "A", from: 0, to: 20) { #expect(w.achievedPercent <= 25.0 + 0.01, "A window \(w.achievedPercent)") }
        for w in F.windows(r, "A", from: 0, to: 10) { #expect(abs(w.achievedPercent - 25) < 0.1) }
        #expect(abs(r.idlePercent - 37.5) < 0.2)
        for w in F.windows(r, "B", from: 11, to: 20) { #expect(abs(w.achievedPercent - 75) < 0.5) }
    }

    @Test func minMaxAndSharesTogetherOnTwoPCPUs() throws {
        let r = try simulate("""
            pcpus 2
            duration 10s
            vm capped shares=high max=30
            vm reserved shares=low min=80
            vm a shares=normal
            vm b shares=normal
            """)
        // Percent of the 2-pCPU pool: capped 15 %, reserved at least 40 %, a and b the rest.
        #expect(F.vm(r, "capped").achievedPercent <= 15.0 + 0.01)
        #expect(abs(F.vm(r, "capped").achievedPercent - 15) < 0.3)
        #expect(F.vm(r, "reserved").achievedPercent >= 39.5)
        let rest = 100 - F.vm(r, "capped").achievedPercent - F.vm(r, "reserved").achievedPercent
        for n in ["a", "b"] { #expect(abs(F.vm(r, n).achievedPercent - rest / 2) < 0.5) }
        #expect(r.counters.invalidPicks == 0 && r.idlePercent < 0.5)
    }
}
