import Foundation
import Logging
import Synchronization
import Testing
@testable import HVPluginHost
@testable import HVSched

@Suite struct SchedulerPoolTests {
    @Test func theFirstVCPUGetsTheSlotAndTheOthersWait() throws {
        let rig = SchedulerPoolRig()
        let a = try rig.join(1)
        try rig.join(2)
        #expect(rig.state(1) == .running(0))
        #expect(rig.state(2) == .ready)
        #expect(!a.flagged, "the holder enters the guest without the pool")
        #expect(rig[2].flagged)
    }

    @Test func theTimerPreemptsAtSliceEndAndTheSlotChangesHands() throws {
        let rig = SchedulerPoolRig()
        try rig.join(1); try rig.join(2)
        rig.clock.advance(by: FallbackPolicy.slice - 1)
        rig.pool.timerTick()
        #expect(rig.kicks[1, default: 0] == 0, "no preemption before the slice ends")
        rig.clock.advance(by: 1)
        rig.pool.timerTick()
        #expect(rig.kicks[1] == 1)
        #expect(rig[1].flagged)
        #expect(rig.state(1) == .running(0), "the holder keeps the slot until it comes back")
        rig.pool.endSlice(rig[1], ranNanoseconds: FallbackPolicy.slice)
        #expect(rig.state(1) == .ready)
        #expect(rig.state(2) == .running(0))
        let c = rig.pool.snapshot().counters
        #expect(c.preemptions == 1)
    }

    @Test func aStaleNeedsPoolFlagKeepsTheSlot() throws {
        let rig = SchedulerPoolRig()
        let a = try rig.join(1)
        try rig.join(2)
        a.needsPool.store(true, ordering: .releasing)
        let slot = rig.pool.reschedule(a, ranNanoseconds: 5)      // slice not over: returns at once
        #expect(slot?.localIndex == 0)
        #expect(!a.flagged)
        #expect(rig.state(1) == .running(0))
    }

    @Test func sharesDivideTheSlotInProportion() throws {
        let rig = SchedulerPoolRig()
        try rig.join(1, shares: 1000); try rig.join(2, shares: 2000); try rig.join(3, shares: 1000)
        var slices: [Int32: Int] = [:]
        for _ in 0..<400 {
            slices[rig.holder()!, default: 0] += 1
            rig.runSlice()
        }
        // Stride scheduling: within one slice of the exact split.
        #expect(abs(slices[1, default: 0] - 100) <= 1 && abs(slices[2, default: 0] - 200) <= 1
                && abs(slices[3, default: 0] - 100) <= 1, "\(slices)")
    }

    @Test func haltReleasesTheSlotAndAnInterruptWakes() throws {
        let rig = SchedulerPoolRig()
        let a = try rig.join(1)
        try rig.join(2)
        rig.pool.block(a, ranNanoseconds: 1_000)
        #expect(rig.state(1) == .blocked)
        #expect(rig.state(2) == .running(0))
        for _ in 0..<5 { rig.runSlice() }
        #expect(rig.state(2) == .running(0), "alone, it keeps being re-granted")
        rig.pool.wake(a)
        #expect(rig.state(1) == .ready)
        rig.runSlice()
        #expect(rig.state(1) == .running(0))
    }

    @Test func leavingReDividesAtOnce() throws {
        let rig = SchedulerPoolRig()
        let a = try rig.join(1)
        try rig.join(2)
        rig.pool.leave(a, ranNanoseconds: 1_000)
        #expect(rig.state(2) == .running(0))
        #expect(rig.pool.memberCount == 1)
        rig.pool.wake(a)      // a late interrupt for a vCPU that left changes nothing
        #expect(rig.pool.memberCount == 1)
    }

    @Test func affinityIsHonouredAcrossSlots() throws {
        let rig = SchedulerPoolRig(slots: 2)
        try rig.join(1, affinity: 0b10); try rig.join(2, affinity: 0b10); try rig.join(3)
        for _ in 0..<20 {
            for id: Int32 in [1, 2] {
                if case .running(let s) = rig.state(id) { #expect(s == 1) }
            }
            rig.runSlice()
        }
    }

    @Test func cancelEndsAWaitForASlot() throws {
        let rig = SchedulerPoolRig()
        try rig.join(1)
        let b = try rig.join(2)
        let done = SchedulerTestCounter()
        let t = Thread {
            #expect(rig.pool.acquire(b) == nil)
            done.set(1)
        }
        t.start()
        usleep(20_000)
        #expect(done.value == 0)
        rig.pool.cancel(b)
        for _ in 0..<200 where done.value == 0 { usleep(5_000) }
        #expect(done.value == 1)
    }

    @Test func admissionControlRefusesReservationsBeyondCapacity() throws {
        let rig = SchedulerPoolRig(slots: 1)
        try rig.pool.reserve(vm: 1, percent: 60, vmName: "a")
        #expect(throws: SchedulerPolicyError.self) { try rig.pool.reserve(vm: 2, percent: 50, vmName: "b") }
        try rig.pool.reserve(vm: 2, percent: 40, vmName: "b")
        rig.pool.unreserve(vm: 1)
        try rig.pool.reserve(vm: 3, percent: 60, vmName: "c")
    }

    /// Real threads: several "vCPU threads" contend for one slot through acquire,
    /// reschedule, block and wake while a timer thread preempts them. At most one holds
    /// the slot at any time and every one makes progress.
    @Test func threadsNeverShareASlotAndAllProgress() throws {
        let pool = SchedulerPool(name: "threads", slots: [PCPUSlot(index: 0, localIndex: 0, hostCPU: nil)],
                                 policy: FallbackPolicy(), clock: MonotonicSchedulerClock(),
                                 logger: Logger(label: "sched-test"))
        pool.start()
        defer { pool.stop() }
        let inside = SchedulerTestCounter(), overlap = SchedulerTestCounter(), stop = SchedulerTestCounter(), finished = SchedulerTestCounter()
        let counts = (0..<4).map { _ in SchedulerTestCounter() }
        var threads: [Thread] = []
        for i in 0..<4 {
            let t = Thread {
                let m = try! pool.join(id: Int32(i), vmID: Int32(i), vmName: "t\(i)", vcpuIndex: 0,
                                       params: SchedulerParams(), kick: {})
                var n = 0
                while stop.value == 0 {
                    if m.needsPool.load(ordering: .acquiring) {
                        guard pool.reschedule(m, ranNanoseconds: 100_000) != nil else { break }
                    }
                    if inside.add(1) != 1 { overlap.set(1) }
                    counts[i].add(1)
                    usleep(50)
                    inside.add(-1)
                    n += 1
                    if n % 7 == 0 {                 // "HLT" now and then
                        pool.block(m, ranNanoseconds: 50_000)
                        usleep(200)
                        pool.wake(m)
                    }
                }
                pool.leave(m, ranNanoseconds: 0)
                finished.add(1)
            }
            threads.append(t)
            t.start()
        }
        usleep(400_000)
        stop.set(1)
        for m in pool.allMembers { pool.cancel(m) }
        for _ in 0..<400 where finished.value < 4 { usleep(5_000) }
        #expect(finished.value == 4)
        #expect(overlap.value == 0, "two threads held the one slot at once")
        for c in counts { #expect(c.value > 0) }
        #expect(pool.memberCount == 0)
    }
}

@Suite struct SchedulerEntitlementTests {
    private func ent(_ capacity: Double, _ d: [(Double, Double, Double, Bool)]) -> [Double] {
        SchedulerEntitlement.compute(capacity: capacity, demands: d.map {
            .init(shares: $0.0, minPercent: $0.1, maxPercent: $0.2, active: $0.3)
        }).map { ($0 * 100).rounded() / 100 }
    }

    @Test func sharesDivideTheCapacity() {
        #expect(ent(100, [(1000, 0, 100, true), (2000, 0, 100, true), (1000, 0, 100, true)]) == [25, 50, 25])
        #expect(ent(100, [(1000, 0, 100, true), (1000, 0, 100, true), (1000, 0, 100, true)]) == [33.33, 33.33, 33.33])
    }

    @Test func reservationsComeFirst() {
        #expect(ent(100, [(1000, 50, 100, true), (1000, 0, 100, true), (1000, 0, 100, true)]) == [50, 25, 25])
    }

    @Test func limitsCapAndTheRestIsRedistributed() {
        #expect(ent(100, [(1000, 0, 25, true)]) == [25])
        #expect(ent(100, [(4000, 0, 25, true), (1000, 0, 100, true)]) == [25, 75])
    }

    @Test func idleVCPUsAreEntitledToNothing() {
        #expect(ent(100, [(1000, 0, 100, true), (1000, 0, 100, false)]) == [100, 0])
    }

    @Test func oneVCPUUsesAtMostOnePCPU() {
        #expect(ent(200, [(1000, 0, 100, true)]) == [100])
        #expect(ent(200, [(1000, 0, 100, true), (3000, 0, 100, true), (1000, 0, 100, true)]) == [50, 100, 50])
    }

    @Test func oversubscribedReservationsScaleDown() {
        #expect(ent(100, [(1000, 80, 100, true), (1000, 80, 100, true)]) == [50, 50])
    }
}

@Suite struct SchedulerConfigurationTests {
    @Test func theDefaultIsOnePoolOfEveryHostCPUWithTheFallback() throws {
        let c = try SchedulerConfiguration.parse(pcpus: nil, pools: [], hostCPUs: 2)
        #expect(c.slots == [.init(index: 0, hostCPU: nil), .init(index: 1, hostCPU: nil)])
        #expect(c.pools == [.init(name: "default", slots: [0, 1], policy: nil)])
    }

    @Test func slotsCanBePinnedAndSplitIntoPools() throws {
        let c = try SchedulerConfiguration.parse(pcpus: "3@0-1", pools: ["a:0:propshare", "b:1-2"], hostCPUs: 2)
        #expect(c.slots.map(\.hostCPU) == [0, 1, 0])
        #expect(c.pools == [.init(name: "a", slots: [0], policy: "propshare"), .init(name: "b", slots: [1, 2], policy: nil)])
    }

    @Test(arguments: [
        ("0", [String](), "--pcpus 0: expected a slot count"),
        ("2@5", [], "host CPU 5 does not exist"),
        ("2", ["default:0-2"], "slot 2 does not exist"),
        ("2", ["a:0", "b:0"], "slot 0 is already in pool 'a'"),
        ("2", ["a:0", "a:1"], "pool 'a' is defined twice"),
        ("2", ["bad name:0"], "must be 1-64 letters"),
        ("2", ["x"], "expected NAME:SLOTS[:POLICY]"),
        ("2", ["x:zero"], "is not a slot list"),
    ])
    func badFlagsAreExplained(pcpus: String, pools: [String], message: String) {
        #expect {
            _ = try SchedulerConfiguration.parse(pcpus: pcpus, pools: pools, hostCPUs: 2)
        } throws: { error in
            "\(error)".contains(message)
        }
    }

    @Test func schedulerBuildsPoolsAndNamesUnknownPolicies() throws {
        let config = try SchedulerConfiguration.parse(pcpus: "2", pools: ["a:0", "b:1:nope"], hostCPUs: 2)
        #expect {
            _ = try Scheduler(configuration: config, resolvePolicy: { name in
                throw SchedulerPolicyError("no plugin provides scheduler policy '\(name)'")
            }, logger: Logger(label: "t"))
        } throws: { "\($0)".contains("scheduler policy 'nope'") }
        let ok = try Scheduler(configuration: .parse(pcpus: "2", pools: ["a:0", "b:1:fallback"], hostCPUs: 2),
                               logger: Logger(label: "t"))
        #expect(ok.pools.map(\.name) == ["a", "b"])
        #expect(ok.pool(named: "b")?.policyName == "fallback")
        #expect(ok.pool(named: "b")?.slots.map(\.localIndex) == [0])
    }
}

@Suite struct SchedulerStatsTests {
    @Test func theTableAggregatesVCPUsPerVM() {
        func row(_ vm: String, _ id: Int32, used: Double, ready: Double, ent: Double) -> VCPUStatsRow {
            VCPUStatsRow(pool: "default", vm: vm, vmID: 1, vcpu: id, vcpuIndex: Int(id), state: "ready",
                         params: SchedulerParams(shares: 1000, minPercent: 10, maxPercent: 90),
                         cpuNanoseconds: 0, accountedNanoseconds: 0, readyNanoseconds: 0, runNanoseconds: 0, grants: 0,
                         usedPercent: used, runPercent: used + 1, readyPercent: ready, entitlementPercent: ent)
        }
        let lines = VCPUStats.vmLines([row("smp", 0, used: 40, ready: 10, ent: 50), row("smp", 1, used: 30, ready: 5, ent: 50),
                                       row("one", 2, used: 20, ready: 1, ent: 25)])
        #expect(lines.count == 2)
        #expect(lines[0].vm == "smp" && lines[0].vcpus == 2 && lines[0].usedPercent == 70 && lines[0].shares == 2000)
        let table = VCPUStats.table(lines).split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
        #expect(table[0] == ["VM", "POOL", "NVCPU", "%USED", "%RUN", "%RDY", "%ENT", "SHARES", "MIN", "MAX", "WAKE50us", "WAKE99us", "STATE"])
        #expect(table[1] == ["smp", "default", "2", "70.0", "72.0", "15.0", "100.0", "2000", "10%", "90%", "-", "-", "ready,ready"])
        #expect(table[2] == ["one", "default", "1", "20.0", "21.0", "1.0", "25.0", "1000", "10%", "90%", "-", "-", "ready"])
    }

    @Test func rawLinesRoundTrip() throws {
        let rig = SchedulerPoolRig()
        try rig.join(7, shares: 1500)
        let raw = VCPUStats.rawLines([rig.pool.snapshot()]).joined(separator: "\n")
        let parsed = VCPUStats.parseRaw(raw)
        #expect(parsed.count == 1)
        #expect(parsed[0].vcpu == 7)
        #expect(parsed[0].fields["vm"] == "vm7")
        #expect(parsed[0].number("shares") == 1500)
        #expect(parsed[0].number("ent") == 100)
        #expect(parsed[0].fields["state"] == "running@0")
        #expect(parsed[0].number("run") == 0)          // the manual clock has not moved
        rig.clock.advance(by: 5_000_000)
        #expect(VCPUStats.parseRaw(VCPUStats.rawLines([rig.pool.snapshot()]).joined())[0].number("run") == 5_000_000)
    }
}

/// An atomic integer that closures can share.
final class SchedulerTestCounter: @unchecked Sendable {
    private let atomic = Atomic<Int>(0)
    var value: Int { atomic.load(ordering: .acquiring) }
    func set(_ v: Int) { atomic.store(v, ordering: .releasing) }
    @discardableResult
    func add(_ d: Int) -> Int { atomic.wrappingAdd(d, ordering: .acquiringAndReleasing).newValue }
}

extension PoolMember {
    var flagged: Bool { needsPool.load(ordering: .acquiring) }
}

/// The fallback with a `preempt` answer set by the test (every call is recorded).
final class PreemptingTestPolicy: SchedulerPolicy {
    private let inner = FallbackPolicy()
    var mask: UInt64 = 0
    private(set) var preemptCalls: [UInt64] = []

    var name: String { "preempt-test" }
    var origin: String { "test" }
    var isFallback: Bool { false }
    func addVCPU(_ vcpu: Int32, vm: Int32, params: SchedulerParams) throws { try inner.addVCPU(vcpu, vm: vm, params: params) }
    func removeVCPU(_ vcpu: Int32) { inner.removeVCPU(vcpu) }
    func wake(_ vcpu: Int32, now: UInt64) { inner.wake(vcpu, now: now) }
    func block(_ vcpu: Int32, now: UInt64) { inner.block(vcpu, now: now) }
    func yield(_ vcpu: Int32, now: UInt64) { inner.yield(vcpu, now: now) }
    func pickNext(pcpu: UInt32, now: UInt64) -> SchedulerPick { inner.pickNext(pcpu: pcpu, now: now) }
    func account(_ vcpu: Int32, ranNanoseconds: UInt64) { inner.account(vcpu, ranNanoseconds: ranNanoseconds) }
    func setParams(_ vcpu: Int32, params: SchedulerParams) throws { try inner.setParams(vcpu, params: params) }
    func preempt(now: UInt64) -> UInt64 {
        preemptCalls.append(now)
        return mask
    }
    func dump() -> String? { nil }
    func shutdown() { inner.shutdown() }
}

@Suite struct SchedulerPoolPreemptTests {
    /// Two slots held by vCPUs 1 and 2, vCPU 3 blocked.
    private func rigWithTwoRunningAndOneBlocked() throws -> (SchedulerPoolRig, PreemptingTestPolicy) {
        let policy = PreemptingTestPolicy()
        let rig = SchedulerPoolRig(slots: 2, policy: policy)
        try rig.join(1); try rig.join(2); try rig.join(3)
        #expect(policy.preemptCalls.count == 3, "asked after every vcpu_add + wake")
        #expect(rig.state(1) == .running(0) && rig.state(2) == .running(1))
        rig.pool.block(rig[3], ranNanoseconds: 0)
        #expect(rig.state(3) == .blocked)
        return (rig, policy)
    }

    @Test func aPreemptMaskKicksTheNamedSlotAndItIsReDecided() throws {
        let (rig, policy) = try rigWithTwoRunningAndOneBlocked()
        rig.clock.advance(by: 1_000_000)                    // well inside the 10 ms slices
        policy.mask = 0b10
        rig.pool.wake(rig[3])
        #expect(policy.preemptCalls.count == 4)
        #expect(rig.kicks[2] == 1, "the holder of slot 1 is kicked")
        #expect(rig.kicks[1, default: 0] == 0, "slot 0 is left alone")
        #expect(rig[2].flagged && !rig[1].flagged)
        policy.mask = 0
        // The kicked vCPU comes back: accounted and the slot is asked again, like a slice end.
        rig.pool.endSlice(rig[2], ranNanoseconds: 1_000_000)
        #expect(rig.state(3) == .running(1), "the woken vCPU gets the preempted slot")
        #expect(rig.state(2) == .ready)
        #expect(rig.state(1) == .running(0))
        let c = rig.pool.snapshot().counters
        #expect(c.wakePreemptions == 1 && c.preemptions == 1)
    }

    @Test func bitsBeyondTheSlotsOrForIdleSlotsAreIgnored() throws {
        let (rig, policy) = try rigWithTwoRunningAndOneBlocked()
        rig.clock.advance(by: 1_000_000)
        policy.mask = ~UInt64(0b11)                         // every bit but the pool's two slots
        rig.pool.wake(rig[3])
        #expect(rig.kicks.values.reduce(0, +) == 0)
        #expect(!rig[1].flagged && !rig[2].flagged)
        #expect(rig.state(1) == .running(0) && rig.state(2) == .running(1) && rig.state(3) == .ready)
        #expect(rig.pool.snapshot().counters.wakePreemptions == 0)
        #expect(!rig.pool.isUsingFallback)
        // An idle slot named: nothing to stop, the slot is simply decided.
        rig.pool.block(rig[1], ranNanoseconds: 1_000_000)  // slot 0 goes to vCPU 3
        rig.pool.block(rig[3], ranNanoseconds: 1_000_000)  // slot 0 idles
        #expect(rig.holder(0) == nil)
        policy.mask = 0b01
        rig.pool.wake(rig[1])
        #expect(rig.kicks.values.reduce(0, +) == 0)
        #expect(rig.state(1) == .running(0))
    }

    @Test func aPolicyWithoutPreemptNeverKicksOnWake() throws {
        let rig = SchedulerPoolRig(slots: 1)                // the fallback: default preempt = 0
        try rig.join(1)
        let b = try rig.join(2)
        rig.pool.block(b, ranNanoseconds: 0)
        rig.pool.wake(b)
        #expect(rig.kicks.values.reduce(0, +) == 0)
        #expect(rig.state(1) == .running(0))
    }
}
