import Testing
@testable import HVPluginHost
@testable import HVSched
@testable import HVSchedSim

@Suite struct SchedSimScenarioTests {
    @Test func parsesEveryKeyword() throws {
        let s = try SchedSimScenario.parse("""
            # a comment
            title "two VMs"
            pcpus 4
            duration 1.5s
            window 250ms
            tick 500us
            quantum 5ms
            seed 42
            policy cosched-strict
            vm web vcpus=2 shares=high min=10 max=80% affinity=0-2,3 htsharing=internal workload=io run=2ms sleep=8ms dist=uniform arrive=100ms leave=1s
            vm db shares=1234   # trailing comment
            at 500ms set db shares=low max=50
            """, name: "x.sched")
        #expect(s.title == "two VMs")
        #expect(s.pcpus == 4 && s.duration == 1_500_000_000 && s.window == 250_000_000)
        #expect(s.tick == 500_000 && s.quantum == 5_000_000 && s.seed == 42 && s.policy == "cosched-strict")
        let web = s.vms[0]
        #expect(web.name == "web" && web.vcpus == 2 && web.cpu.shares == .high)
        #expect(web.cpu.minPercent == 10 && web.cpu.maxPercent == 80 && web.cpu.htSharing == .internal)
        #expect(web.cpu.affinity == .cpus([0, 1, 2, 3]))
        #expect(web.workload == .io(run: 2_000_000, sleep: 8_000_000, dist: .uniform))
        #expect(web.arrive == 100_000_000 && web.leave == 1_000_000_000)
        // hv_sched_params per vCPU: "high" is 2000 per vCPU; affinity as a mask.
        #expect(web.params.shares == 2000 && web.params.affinity == 0xF)
        #expect(s.vms[1].cpu.shares == .custom(1234) && s.vms[1].workload == .cpu)
        #expect(s.changes.count == 1 && s.changes[0].time == 500_000_000)
        #expect(s.changes[0].cpu.shares == .low && s.changes[0].cpu.maxPercent == 50)
    }

    @Test(arguments: [
        ("pcpus 0\nvm a", 1, "pcpus must be"),
        ("vm a shares=zero", 1, "shares must be"),
        ("pcpus 2\nvm a\nvm a", 3, "defined twice"),
        ("vm a min=70 max=50", 1, "above max"),
        ("vm a workload=io run=2ms", 1, "needs run=DURATION and sleep=DURATION"),
        ("duration 5x\nvm a", 1, "not a positive duration"),
        ("pcpus 2\nvm a affinity=3", 2, "beyond the 2"),
        ("vm a leave=1s arrive=2s", 1, "leaves"),
        ("vm a\nat 1s set b shares=1", 2, "not defined above"),
        ("vm a\nat 1s set a run=1ms", 2, "changes shares"),
        ("frobnicate 3\nvm a", 1, "unknown keyword"),
        ("vm a colour=red", 1, "unknown key 'colour'"),
        ("duration 1s\nvm a arrive=2s", 2, "after the scenario ends"),
        ("# nothing", 0, "no 'vm' lines"),
    ])
    func errorsNameFileAndLine(_ text: String, _ line: Int, _ fragment: String) {
        do {
            _ = try SchedSimScenario.parse(text, name: "bad.sched")
            Issue.record("parsed: \(text)")
        } catch {
            #expect(error.line == line, "\(error)")
            #expect(error.description.hasPrefix(line > 0 ? "bad.sched:\(line): " : "bad.sched: "), "\(error)")
            #expect(error.description.contains(fragment), "\(error)")
        }
    }

    @Test func durations() {
        #expect(SchedSimScenario.parseDuration("10s") == 10_000_000_000)
        #expect(SchedSimScenario.parseDuration("2.5ms") == 2_500_000)
        #expect(SchedSimScenario.parseDuration("250us") == 250_000)
        #expect(SchedSimScenario.parseDuration("1000ns") == 1000)
        #expect(SchedSimScenario.parseDuration("77") == 77)
        #expect(SchedSimScenario.parseDuration("0.000000001s") == 1)
        #expect(SchedSimScenario.parseDuration("ms") == nil)
        #expect(SchedSimScenario.parseDuration("1.s") == nil)
        #expect(SchedSimScenario.parseDuration("-1s") == nil)
        #expect(SchedSimScenario.parseDuration("99999999999999s") == nil)
        #expect(SchedSimScenario.formatDuration(10_000_000_000) == "10s")
        #expect(SchedSimScenario.formatDuration(2_500_000) == "2.5ms")
        #expect(SchedSimScenario.formatDuration(1_234) == "1.234us")
        #expect(SchedSimScenario.formatDuration(12) == "12ns")
    }
}
