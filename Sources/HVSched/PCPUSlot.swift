/// One physical-CPU slot of a pool: at most one vCPU thread runs `KVM_RUN` on it at a
/// time, the one the pool granted it to. A slot may be pinned to a host CPU; the vCPU
/// thread holding it then runs there. Mutable state is guarded by the pool lock.
package final class PCPUSlot: @unchecked Sendable {
    /// Host-wide slot number (`--pcpus`, `--pool name:<slots>`).
    package let index: Int
    /// Position in its pool: the `pcpu` argument of `pick_next` and the affinity bit.
    let localIndex: Int
    /// Host CPU the holder is pinned to, or nil for anywhere.
    package let hostCPU: Int?

    // [pool lock]
    /// The vCPU that may run here now.
    package var holder: PoolMember?
    /// Pool-clock time the holder's slice ends.
    package var sliceEnd: UInt64 = 0
    /// Pool-clock time the preemption was requested (nil: not yet).
    var preemptSentAt: UInt64?
    /// Idle slot: when to ask the policy again (nil: on the next event).
    package var reaskAt: UInt64?
    /// The holder was granted by a policy that has since been replaced: it gives the slot
    /// back at once and no decision is made in the pool until every such slot is free.
    var draining = false
    /// Counters for `sched pools` and the benchmark.
    var grants: UInt64 = 0
    var switches: UInt64 = 0
    var lastHolderID: Int32 = -1
    /// Host monotonic ns when the last holder gave the slot back (hand-off cost).
    var releasedAtHost: UInt64 = 0
    /// Pool-clock time the slot became free, and the total time it was free.
    var idleSince: UInt64 = 0
    var idleTotal: UInt64 = 0

    package init(index: Int, localIndex: Int, hostCPU: Int?) {
        self.index = index
        self.localIndex = localIndex
        self.hostCPU = hostCPU
    }
}
