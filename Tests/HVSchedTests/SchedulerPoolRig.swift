import Logging
@testable import HVPluginHost
@testable import HVSched

/// A pool driven by hand: manual clock, fake vCPUs (kicks counted), no threads.
final class SchedulerPoolRig {
    let clock = ManualSchedulerClock(1_000_000_000)
    let pool: SchedulerPool
    var kicks: [Int32: Int] = [:]
    private var members: [Int32: PoolMember] = [:]

    init(slots: Int = 1, policy: SchedulerPolicy = FallbackPolicy(), watchdog: UInt64 = 2_000_000_000) {
        pool = SchedulerPool(name: "test",
                             slots: (0..<slots).map { PCPUSlot(index: $0, localIndex: $0, hostCPU: nil) },
                             policy: policy, clock: clock, watchdogNanoseconds: watchdog,
                             logger: Logger(label: "sched-test"))
    }

    @discardableResult
    func join(_ id: Int32, vm: Int32? = nil, shares: UInt32 = 1000, affinity: UInt64 = 0, maxPercent: UInt32 = 100) throws -> PoolMember {
        let m = try pool.join(id: id, vmID: vm ?? id, vmName: "vm\(vm ?? id)", vcpuIndex: 0,
                              params: SchedulerParams(shares: shares, maxPercent: maxPercent, affinity: affinity),
                              cpuClock: nil, kick: { [unowned self] in self.kicks[id, default: 0] += 1 })
        members[id] = m
        return m
    }

    subscript(_ id: Int32) -> PoolMember { members[id]! }

    func state(_ id: Int32) -> PoolMember.State { pool.state(of: self[id]) }

    /// Which vCPU holds slot `slot` now.
    func holder(_ slot: Int = 0) -> Int32? {
        members.values.first { pool.state(of: $0) == .running(slot) }?.id
    }

    /// Runs the holder of every slot to the end of its slice: advance the clock, let the
    /// timer preempt, and have each preempted vCPU come back with `ran` CPU time.
    func runSlice(_ ns: UInt64 = 10_000_000, ran: UInt64? = nil) {
        clock.advance(by: ns)
        pool.timerTick()
        for m in members.values where m.flagged {
            if case .running = pool.state(of: m) { pool.endSlice(m, ranNanoseconds: ran ?? ns) }
        }
    }
}
