import Glibc
import HVSupport
import Synchronization

/// One vCPU in a scheduler pool: what the pool knows about it and the handle its host
/// thread uses to ask for a slot. Fields marked [pool lock] are guarded by the pool's
/// lock; ``needsPool`` is the lock-free fast path checked before every `KVM_RUN`.
package final class PoolMember: @unchecked Sendable {
    package enum State: Equatable, Sendable, CustomStringConvertible {
        /// Halted (or not started): waits for an interrupt, needs no slot.
        case blocked
        /// Runnable, waiting for a slot.
        case ready
        /// Holds a slot (pool-local index).
        case running(Int)

        package var description: String {
            switch self {
            case .blocked: "blocked"
            case .ready: "ready"
            case .running(let s): "running@\(s)"
            }
        }
    }

    /// Host-assigned vCPU id (unique in the host), as the policy sees it.
    package let id: Int32
    /// Host-assigned VM id: sibling vCPUs share it.
    let vmID: Int32
    let vmName: String
    /// The vCPU's index inside its VM.
    let vcpuIndex: Int
    /// Makes the vCPU leave guest mode promptly (the runner passes its backend vCPU's kick).
    package let kick: () -> Void
    /// The thread's CPU clock, readable from other threads (nil in tests).
    let cpuClock: clockid_t?

    /// True whenever the vCPU's thread must talk to the pool before entering the guest:
    /// it holds no slot, or its slice ended, or its slot is being drained.
    package let needsPool = Atomic<Bool>(true)
    /// Mirrors `slot != nil` (set by the grant, cleared by the member's own release) and
    /// `cancelled`, so a waiting thread wakes and goes without the pool lock.
    let granted = Atomic<Bool>(false)
    let cancelRequested = Atomic<Bool>(false)
    /// Where a thread waiting for a slot sleeps; the grant or a cancel posts it.
    let parker = ThreadParker()

    // [pool lock]
    internal(set) package var params: SchedulerParams
    internal(set) package var state: State = .blocked
    var slot: PCPUSlot?
    /// The VM is stopping: a waiting `acquire` returns.
    var cancelled = false
    /// Pool-clock time it last became ready (valid in `.ready`).
    package var readySince: UInt64 = 0
    /// Pool-clock time it last became blocked (for "active" in entitlement).
    var blockedSince: UInt64 = 0
    /// Decisions the policy made (for any slot) since it became ready.
    var picksWhileReady = 0
    var starvationReported = false
    /// Totals: wall time ready, CPU time accounted to the policy, grants.
    var readyTotal: UInt64 = 0
    /// Wall time holding a slot: total, and since when for the current grant.
    var heldTotal: UInt64 = 0
    var heldSince: UInt64 = 0
    var accountedTotal: UInt64 = 0
    /// `accountedTotal` at the last wake: the CPU time of the current run burst is the
    /// difference (recorded at the block).
    var burstStart: UInt64 = 0
    package var grantCount: UInt64 = 0
    /// Hand-off measurement: when the previous holder released the slot it was just
    /// granted (host ns), until its thread picks the grant up.
    var handoffFrom: UInt64?
    /// Host ns when ``SchedulerPool/wake(_:)`` made it runnable, until its thread picks
    /// up the next grant (0: not waiting after a wake); written under the pool lock
    /// before the grant, read and cleared by the vCPU's thread after it.
    var wokeAtHost: UInt64 = 0
    /// Thread CPU time at leave, once the thread is gone.
    var finalCPUTime: UInt64?

    // Owned by the vCPU's own thread.
    /// Thread CPU time when the current slot was granted.
    package var cpuAtGrant: UInt64 = 0
    /// Host CPU the thread is pinned to now (nil: not pinned); `pinned` false = never set.
    package var pinnedTo: Int?
    package var pinned = false

    package init(id: Int32, vmID: Int32, vmName: String, vcpuIndex: Int, params: SchedulerParams,
         cpuClock: clockid_t?, kick: @escaping () -> Void) {
        self.id = id
        self.vmID = vmID
        self.vmName = vmName
        self.vcpuIndex = vcpuIndex
        self.params = params
        self.cpuClock = cpuClock
        self.kick = kick
    }

    /// Thread CPU time so far (nil when unknown). [pool lock] for the final value.
    package var cpuTime: UInt64? {
        if let finalCPUTime { return finalCPUTime }
        guard let cpuClock else { return nil }
        return HostThread.cpuTime(of: cpuClock)
    }
}
