import Glibc
import HVSupport
import Logging
import Synchronization

/// A pool of pCPU slots run by one policy (Xen cpupool style).
///
/// **Granting.** A vCPU thread enters `KVM_RUN` only while it holds a slot. It asks with
/// ``acquire(_:)``; the pool makes decisions with its lock held: it calls the policy's
/// `pick_next` for a free slot, validates the answer (a vCPU of this pool, runnable, not
/// running on another slot, allowed there by its affinity, a slice in ``validSlices``),
/// and hands the slot over by setting the chosen vCPU's `granted` flag and unparking it. The
/// holder runs without touching the pool again (one atomic load per entry:
/// ``PoolMember/needsPool``) until its slice ends, it halts, or the pool drains it.
///
/// **Preemption.** The pool timer thread (``start()``) wakes at the earliest slice end,
/// sets the holder's `needsPool` and kicks it (`immediate_exit` + SIGUSR1). The vCPU
/// thread comes back through ``reschedule(_:ranNanoseconds:)``: the pool accounts the
/// CPU time its thread used (read from the thread's CPU clock by the caller), releases
/// the slot, asks the policy again and waits if someone else was chosen. After every
/// wake the policy's `preempt` may name slots whose holder should stop before its slice
/// ends; those are preempted the same way at once.
///
/// **Block and wake.** HLT releases the slot (``block(_:ranNanoseconds:)``); an
/// interrupt makes the vCPU runnable again (``wake(_:)``), and free slots are
/// re-decided. Joining (``join``) and leaving (``leave(_:ranNanoseconds:)``, at
/// power-off) re-divide the pool at once.
///
/// **Fallback and watchdog.** A pick that fails validation, a runnable vCPU left
/// without a slot for longer than the watchdog while the policy kept deciding, or a
/// policy call that overran ``policyCallDeadline`` (plugin calls run on the policy's own
/// thread; the caller stops waiting at the deadline, so a `pick_next` that never returns
/// holds the pool lock no longer than that and the stuck thread is abandoned) replaces
/// the policy by the built-in ``FallbackPolicy``: one log line names the pool, the
/// policy, its plugin and what it did. Replacing a policy (also at the operator's
/// request, ``replacePolicy(with:)``) re-adds every vCPU with its parameters to the new
/// instance, then drains the slots the old one granted before the new one decides.
///
/// **Locking.** One mutex per pool guards every field marked [pool lock] in the pool,
/// its ``PCPUSlot``s and ``PoolMember``s, and every call into the policy. Lock order:
/// nothing is called with the pool lock held except the policy and `kick`.
package final class SchedulerPool: @unchecked Sendable {
    /// Slices a pick may ask for.
    package static let validSlices: ClosedRange<UInt64> = 10_000...1_000_000_000
    /// An idle pick with a zero slice while vCPUs wait is asked again after this.
    package static let idleReask: UInt64 = 10_000_000
    /// A preempted holder that has not given its slot back is kicked again this often.
    static let rekick: UInt64 = 10_000_000
    /// How often the watchdog looks and statistics are sampled.
    static let watchdogPeriod: UInt64 = 100_000_000
    static let samplePeriod: UInt64 = 1_000_000_000

    package let name: String
    package let slots: [PCPUSlot]
    /// Where the slots sit on the host, as every policy instance of the pool is told.
    package let topology: PoolTopology
    let clock: SchedulerClock
    /// A runnable vCPU without a slot this long (scaled up for capped vCPUs) while the
    /// policy keeps deciding is starvation.
    package let watchdogNanoseconds: UInt64
    /// Policies this pool instantiates (``replacePolicy(with:)``) run their calls under
    /// this deadline; nil: on the caller's thread (tests driving the pool by hand).
    let policyCallDeadline: UInt64?
    let logger: Logger

    let lock = HostLock()
    private let timerWakeup = HostCondition()
    // [pool lock]
    private var policy: SchedulerPolicy
    private var members: [Int32: PoolMember] = [:]
    private var drainingSlots = 0
    private var stopping = false
    private var timerThread: pthread_t?
    private var nextWatchdog: UInt64 = 0
    private var nextSample: UInt64 = 0
    private var reservations: [Int32: UInt32] = [:]
    private var samples: [Int32: VCPUStatsSample] = [:]
    private var intervalRates: [Int32: (used: Double, run: Double, ready: Double)] = [:]
    private(set) package var counters = PoolCounters()
    /// Hand-off costs, recorded by the vCPU that receives the slot (outside the lock).
    private let handoffs = PoolHandoffStats()
    /// Wake-to-run latency per VM, recorded by the woken vCPU's thread (outside the lock).
    package let wakeLatency = WakeLatencyRecorder()
    /// Every policy replacement forced by misbehaviour, as logged.
    private var fallbackEvents: [String] = []
    /// Where events go with `--sched-record`, and this pool's number in the recording.
    private var recorder: SchedulerRecorder?
    private var recordIndex = 0

    package init(name: String, slots: [PCPUSlot], policy: SchedulerPolicy, clock: SchedulerClock,
                watchdogNanoseconds: UInt64 = 2_000_000_000, policyCallDeadline: UInt64? = nil,
                hostTopology: HostTopology? = nil, logger: Logger) {
        precondition(!slots.isEmpty && slots.count <= 64, "a pool has 1...64 slots")
        self.name = name
        self.slots = slots
        topology = PoolTopology(hostCPUs: slots.map(\.hostCPU), host: hostTopology)
        policy.setTopology(topology)
        self.policy = policy
        self.clock = clock
        self.watchdogNanoseconds = watchdogNanoseconds
        self.policyCallDeadline = policyCallDeadline
        self.logger = logger
        let now = clock.now()
        nextWatchdog = now &+ Self.watchdogPeriod
        nextSample = now &+ Self.samplePeriod
    }

    deinit {
        stop()
        policy.shutdown()
    }

    // MARK: Queries

    package var policyName: String { lock.withLock { policy.name } }
    package var policyOrigin: String { lock.withLock { policy.origin } }
    var isUsingFallback: Bool { lock.withLock { policy.isFallback } }
    /// Log lines of policy replacements forced by misbehaviour, oldest first.
    var fallbackLog: [String] { lock.withLock { fallbackEvents } }
    var memberCount: Int { lock.withLock { members.count } }

    /// The member's state (tests, diagnostics).
    package func state(of member: PoolMember) -> PoolMember.State { lock.withLock { member.state } }

    /// Runs `body` with the pool lock held (tests).
    func locked<R>(_ body: () -> R) -> R { lock.withLock(body) }

    // MARK: Admission (sched.cpu.min)

    /// Reserves `percent` of one pCPU for VM `vm` (its vCPUs' mins summed); refuses when
    /// the pool's reservations would exceed its capacity (100 % per slot).
    func reserve(vm: Int32, percent: UInt32, vmName: String) throws {
        try lock.withLock {
            let others = reservations.filter { $0.key != vm }.values.reduce(0, +)
            let capacity = UInt32(slots.count * 100)
            guard others + percent <= capacity else {
                throw SchedulerPolicyError("pool '\(name)' cannot reserve \(percent)% for VM '\(vmName)': \(others)% of its \(capacity)% (\(slots.count) pCPU slot\(slots.count == 1 ? "" : "s")) is reserved already")
            }
            if percent == 0 { reservations[vm] = nil } else { reservations[vm] = percent }
        }
    }

    func unreserve(vm: Int32) { lock.withLock { _ = reservations.removeValue(forKey: vm) } }

    /// Records this pool's events from now on as pool number `index` of the recording.
    func attach(_ recorder: SchedulerRecorder, index: Int) {
        lock.withLock {
            self.recorder = recorder
            recordIndex = index
            recorder.declare(pool: index, name: name, slots: slots.map(\.index), policy: policy.name)
        }
    }

    // MARK: vCPU thread interface

    /// Adds a vCPU (policy `vcpu_add`, then `wake`): it is runnable at once. Call on the
    /// vCPU's own thread (its CPU clock is taken for statistics) or pass `cpuClock`.
    package func join(id: Int32, vmID: Int32, vmName: String, vcpuIndex: Int, params: SchedulerParams,
                     cpuClock: clockid_t? = HostThread.currentThreadCPUClock(),
                     kick: @escaping () -> Void) throws -> PoolMember {
        try lock.withLock {
            let m = PoolMember(id: id, vmID: vmID, vmName: vmName, vcpuIndex: vcpuIndex, params: params,
                               cpuClock: cpuClock, kick: kick)
            guard members[id] == nil else { throw SchedulerPolicyError("vCPU id \(id) is already in pool '\(name)'") }
            do { try policy.addVCPU(id, vm: vmID, params: params) } catch {
                guard let overrun = policy.overrun else { throw error }
                replaceWithFallback(overrun)
                try policy.addVCPU(id, vm: vmID, params: params)
            }
            members[id] = m
            let now = clock.now()
            samples[id] = VCPUStatsSample(time: now, cpu: m.cpuTime ?? 0, ready: 0, held: 0)
            recorder?.join(time: now, pool: recordIndex, vcpu: id, vmID: vmID, vmName: vmName, index: vcpuIndex, params: params)
            makeReady(m, now: now)
            policy.wake(id, now: now)
            preemptAfterWake(now: now)
            dispatch(now: now)
            return m
        }
    }

    /// Waits until `member` holds a slot and returns it; nil when it was cancelled (its VM
    /// is stopping) or it is blocked.
    func acquire(_ member: PoolMember) -> PCPUSlot? {
        lock.lock()
        return waitForSlotAndUnlock(member)
    }

    /// The slot `member` holds now, without waiting.
    func currentSlot(of member: PoolMember) -> PCPUSlot? { lock.withLock { member.slot } }

    /// The vCPU thread saw ``PoolMember/needsPool``: ends its slice if it holds a slot
    /// whose slice ended or that is being drained (accounting `ranNanoseconds` of thread
    /// CPU time), then waits for a slot as ``acquire(_:)`` does.
    @discardableResult
    package func reschedule(_ member: PoolMember, ranNanoseconds: UInt64) -> PCPUSlot? {
        lock.lock()
        if let kept = endSliceLocked(member, ranNanoseconds: ranNanoseconds) {
            lock.unlock()
            return kept
        }
        return waitForSlotAndUnlock(member)
    }

    /// The first half of ``reschedule(_:ranNanoseconds:)`` without the wait: ends the
    /// member's slice if it is due (tests drive the pool single-threaded with it).
    func endSlice(_ member: PoolMember, ranNanoseconds: UInt64) {
        lock.withLock { _ = endSliceLocked(member, ranNanoseconds: ranNanoseconds) }
    }

    /// The slot the member holds when holding it is still right (not due, not draining).
    private func endSliceLocked(_ member: PoolMember, ranNanoseconds: UInt64) -> PCPUSlot? {
        guard let s = member.slot else { return nil }
        let now = clock.now()
        guard s.draining || s.preemptSentAt != nil || now >= s.sliceEnd else {
            if member.cancelled { return nil }
            member.needsPool.store(false, ordering: .releasing)     // a stale flag
            return s
        }
        if let sent = s.preemptSentAt {
            counters.preemptions &+= 1
            counters.preemptLatencyTotal &+= now &- sent
        }
        if !s.draining { policy.account(member.id, ranNanoseconds: ranNanoseconds) }
        member.accountedTotal &+= ranNanoseconds
        recorder?.record(.sliceEnd, time: now, pool: recordIndex, vcpu: member.id, a: ranNanoseconds)
        release(member, now: now)
        makeReady(member, now: now)
        dispatch(now: now, first: s)
        return nil
    }

    /// HLT: gives the slot back (accounting `ranNanoseconds`) and blocks the vCPU until
    /// ``wake(_:)``.
    package func block(_ member: PoolMember, ranNanoseconds: UInt64) {
        lock.withLock {
            guard member.state != .blocked else { return }
            let now = clock.now()
            let freed = member.slot
            if let s = freed {
                if !s.draining { policy.account(member.id, ranNanoseconds: ranNanoseconds) }
                member.accountedTotal &+= ranNanoseconds
                release(member, now: now)
            } else {
                member.readyTotal &+= now &- member.readySince
            }
            recorder?.record(.block, time: now, pool: recordIndex, vcpu: member.id, a: freed != nil ? ranNanoseconds : 0,
                             b: member.accountedTotal &- member.burstStart)
            member.state = .blocked
            member.blockedSince = now
            member.needsPool.store(true, ordering: .releasing)
            policy.block(member.id, now: now)
            if let freed { dispatch(now: now, first: freed) }
        }
    }

    /// An interrupt is pending for a blocked vCPU: it becomes runnable and free slots are
    /// re-decided.
    package func wake(_ member: PoolMember) {
        lock.withLock {
            guard member.state == .blocked, !member.cancelled, members[member.id] === member else { return }
            let now = clock.now()
            member.wokeAtHost = VMClock.hostNanoseconds()
            makeReady(member, now: now)
            member.burstStart = member.accountedTotal
            recorder?.record(.wake, time: now, pool: recordIndex, vcpu: member.id)
            policy.wake(member.id, now: now)
            preemptAfterWake(now: now)
            dispatch(now: now)
        }
    }

    /// The vCPU gives its slot up voluntarily but stays runnable (policy `yield`).
    func yield(_ member: PoolMember, ranNanoseconds: UInt64) {
        lock.withLock {
            guard let s = member.slot else { return }
            let now = clock.now()
            if !s.draining { policy.account(member.id, ranNanoseconds: ranNanoseconds) }
            member.accountedTotal &+= ranNanoseconds
            recorder?.record(.yield, time: now, pool: recordIndex, vcpu: member.id, a: ranNanoseconds)
            release(member, now: now)
            makeReady(member, now: now)
            policy.yield(member.id, now: now)
            dispatch(now: now, first: s)
        }
    }

    /// The vCPU's thread ends (power-off): gives its slot back, removes it from the
    /// policy and re-divides the pool.
    package func leave(_ member: PoolMember, ranNanoseconds: UInt64) {
        lock.withLock {
            guard members[member.id] === member else { return }
            let now = clock.now()
            member.finalCPUTime = member.cpuTime
            let freed = member.slot
            if let s = freed {
                if !s.draining { policy.account(member.id, ranNanoseconds: ranNanoseconds) }
                member.accountedTotal &+= ranNanoseconds
                release(member, now: now)
            }
            recorder?.record(.leave, time: now, pool: recordIndex, vcpu: member.id, a: freed != nil ? ranNanoseconds : 0)
            member.state = .blocked
            member.cancelled = true
            member.cancelRequested.store(true, ordering: .releasing)
            policy.removeVCPU(member.id)
            members[member.id] = nil
            samples[member.id] = nil
            intervalRates[member.id] = nil
            dispatch(now: now, first: freed)
        }
    }

    /// Makes a waiting ``acquire(_:)`` of `member` return false (its VM is stopping).
    package func cancel(_ member: PoolMember) {
        lock.withLock {
            member.cancelled = true
            member.cancelRequested.store(true, ordering: .releasing)
            member.needsPool.store(true, ordering: .releasing)
            member.parker.unpark()
        }
    }

    /// New parameters for a vCPU (`set_params`); unchanged when the policy refuses.
    package func setParams(_ member: PoolMember, _ params: SchedulerParams) throws {
        try lock.withLock {
            guard members[member.id] === member else { return }
            try policy.setParams(member.id, params: params)
            member.params = params
            let now = clock.now()
            recorder?.params(time: now, pool: recordIndex, vcpu: member.id, params)
            dispatch(now: now)
        }
    }

    /// Runs a command or sets a tunable of the pool's policy, with the pool lock held
    /// ([sched]); the pool re-decides its free slots afterwards, as after any event.
    package func runPolicyCommand(_ name: String, words: [String], tunable: Bool) throws -> String {
        try lock.withLock {
            let reply = try policy.runCommand(name, words: words, tunable: tunable)
            dispatch(now: clock.now())
            return reply
        }
    }

    /// The pool's policy's tunables and commands.
    package var policyCommandListing: String { lock.withLock { "policy '\(policy.name)' (\(policy.origin))\n" + policy.commandListing } }

    /// The members of this pool (for `sched set`).
    var allMembers: [PoolMember] { lock.withLock { members.values.sorted { $0.id < $1.id } } }

    // MARK: Policy replacement

    /// Replaces the pool's policy while vCPUs run: makes the new instance, adds every
    /// vCPU with its parameters, switches, drains the old grants and deinits the old
    /// instance. On failure the old policy stays.
    package func replacePolicy(with source: SchedulerPolicySource) throws {
        try lock.withLock {
            let fresh = try source.instantiate(pcpuCount: slots.count, callDeadline: policyCallDeadline)
            let old = policy
            do { try install(fresh) } catch {
                fresh.shutdown()
                throw error
            }
            old.shutdown()
            logger.info("pool '\(name)': scheduler policy '\(old.name)' (\(old.origin)) replaced by '\(fresh.name)' (\(fresh.origin)); \(members.count) vCPU(s) re-added")
            dispatch(now: clock.now())
        }
    }

    /// Adds every member to `fresh` (throws before switching if it refuses one), makes it
    /// the policy and starts draining the slots granted by the previous one.
    private func install(_ fresh: SchedulerPolicy) throws {
        let now = clock.now()
        let ordered = members.values.sorted { $0.id < $1.id }
        fresh.setTopology(topology)
        for m in ordered { try fresh.addVCPU(m.id, vm: m.vmID, params: m.params) }
        for m in ordered where m.state != .blocked { fresh.wake(m.id, now: now) }
        policy = fresh
        for s in slots {
            s.reaskAt = nil
            if let h = s.holder, !s.draining {
                s.draining = true
                drainingSlots += 1
                h.needsPool.store(true, ordering: .releasing)
                h.kick()
            }
        }
        timerWakeup.signal()
    }

    /// The policy misbehaved: log it and switch to the fallback.
    private func replaceWithFallback(_ problem: String) {
        let old = policy
        let line = "pool '\(name)': scheduler policy '\(old.name)' from \(old.origin) \(problem); switched to the built-in fallback policy"
        logger.error("\(line)")
        fallbackEvents.append(line)
        counters.fallbackSwitches &+= 1
        try? install(FallbackPolicy())     // the fallback accepts every vCPU
        old.shutdown()
    }

    // MARK: Decisions [pool lock]

    private func makeReady(_ m: PoolMember, now: UInt64) {
        m.state = .ready
        m.readySince = now
        m.picksWhileReady = 0
        m.starvationReported = false
    }

    /// Frees the member's slot at pool-clock `now` (lock held; no policy call).
    private func release(_ m: PoolMember, now: UInt64) {
        guard let s = m.slot else { return }
        m.heldTotal &+= now &- m.heldSince
        s.idleSince = now
        s.releasedAtHost = VMClock.hostNanoseconds()
        s.holder = nil
        s.preemptSentAt = nil
        if s.draining {
            s.draining = false
            drainingSlots -= 1
        }
        m.slot = nil
        m.granted.store(false, ordering: .releasing)
        m.needsPool.store(true, ordering: .releasing)
    }

    /// Asks the policy which running vCPUs a wake should preempt (`preempt`) and stops
    /// them as the timer does at a slice end: the holder's `needsPool` is set and it is
    /// kicked; it comes back through ``reschedule(_:ranNanoseconds:)``, which accounts it
    /// and asks the policy for the slot again. Bits beyond the pool's slots, for idle
    /// slots, draining slots and slots already being preempted are ignored.
    private func preemptAfterWake(now: UInt64) {
        var mask = policy.preempt(now: now)
        if slots.count < 64 { mask &= (UInt64(1) << UInt64(slots.count)) &- 1 }
        guard mask != 0 else { return }
        for s in slots where s.localIndex < 64 && mask & (UInt64(1) << UInt64(s.localIndex)) != 0 {
            guard let h = s.holder, !s.draining, s.preemptSentAt == nil else { continue }
            s.preemptSentAt = now
            counters.wakePreemptions &+= 1
            h.needsPool.store(true, ordering: .releasing)
            h.kick()
        }
        timerWakeup.signal()        // the timer re-kicks a holder that does not come back
    }

    /// Decides every free slot (`first` first) unless slots are draining.
    private func dispatch(now: UInt64, first: PCPUSlot? = nil) {
        var rounds = 0
        outer: while drainingSlots == 0 && rounds < 4 {
            rounds += 1
            var order = slots.filter { $0.holder == nil }
            if let first, let i = order.firstIndex(where: { $0 === first }) { order.swapAt(0, i) }
            for s in order where s.holder == nil {
                if !decide(s, now: now) { continue outer }    // the policy was replaced
                if drainingSlots > 0 { return }
            }
            return
        }
    }

    /// Asks the policy for slot `s`; false when the answer made the pool replace it.
    private func decide(_ s: PCPUSlot, now: UInt64) -> Bool {
        let pcpu = s.localIndex
        let pick = policy.pickNext(pcpu: UInt32(pcpu), now: now)
        counters.decisions &+= 1
        for m in members.values where m.state == .ready && m.params.allows(pcpu: pcpu) {
            m.picksWhileReady += 1
        }
        if let problem = policy.overrun ?? problem(with: pick, on: s) {
            replaceWithFallback(problem)
            return false
        }
        if pick.vcpu < 0 {
            recorder?.record(.idle, time: now, pool: recordIndex, pcpu: pcpu, vcpu: -1, a: pick.sliceNanoseconds)
            s.releasedAtHost = 0            // an idle slot: the next grant is no hand-off
            let anyReady = members.values.contains { $0.state == .ready }
            if pick.sliceNanoseconds > 0 {
                s.reaskAt = now &+ min(pick.sliceNanoseconds, Self.validSlices.upperBound)
            } else {
                s.reaskAt = anyReady ? now &+ Self.idleReask : nil
            }
            if s.reaskAt != nil { timerWakeup.signal() }
            return true
        }
        grant(members[pick.vcpu]!, s, slice: pick.sliceNanoseconds, now: now)
        return true
    }

    /// What is wrong with `pick` for slot `s`, or nil.
    private func problem(with pick: SchedulerPick, on s: PCPUSlot) -> String? {
        let pcpu = s.localIndex
        if pick.vcpu == -1 { return nil }
        guard let m = members[pick.vcpu] else {
            return "returned vCPU \(pick.vcpu) from pick_next(pcpu \(pcpu)), which is not in this pool"
        }
        let who = "vCPU \(m.id) (VM '\(m.vmName)' vCPU \(m.vcpuIndex))"
        switch m.state {
        case .blocked:
            return "returned \(who) from pick_next(pcpu \(pcpu)), but it is blocked (halted)"
        case .running(let other):
            return "returned \(who) from pick_next(pcpu \(pcpu)), but it is running on pcpu \(other)"
        case .ready:
            break
        }
        guard m.params.allows(pcpu: pcpu) else {
            return "returned \(who) from pick_next(pcpu \(pcpu)), which its affinity 0x\(String(m.params.affinity, radix: 16)) does not allow"
        }
        guard Self.validSlices.contains(pick.sliceNanoseconds) else {
            return "returned \(who) from pick_next(pcpu \(pcpu)) with a slice of \(pick.sliceNanoseconds) ns (allowed: \(Self.validSlices.lowerBound)...\(Self.validSlices.upperBound) ns)"
        }
        return nil
    }

    private func grant(_ m: PoolMember, _ s: PCPUSlot, slice: UInt64, now: UInt64) {
        recorder?.record(.pick, time: now, pool: recordIndex, pcpu: s.localIndex, vcpu: m.id, a: slice)
        m.readyTotal &+= now &- m.readySince
        m.heldSince = now
        s.idleTotal &+= now &- s.idleSince
        s.holder = m
        s.sliceEnd = now &+ slice
        s.preemptSentAt = nil
        s.reaskAt = nil
        s.grants &+= 1
        if s.lastHolderID != m.id {
            s.switches &+= 1
            // Straight from the previous holder's release to this grant: a hand-off.
            m.handoffFrom = s.releasedAtHost != 0 ? s.releasedAtHost : nil
        } else {
            m.handoffFrom = nil
        }
        s.releasedAtHost = 0
        s.lastHolderID = m.id
        m.slot = s
        m.state = .running(s.localIndex)
        m.grantCount &+= 1
        m.needsPool.store(false, ordering: .releasing)
        m.granted.store(true, ordering: .releasing)
        m.parker.unpark()
        timerWakeup.signal()
    }

    /// Called with the lock held; returns with it released. A member that must wait
    /// sleeps on its own semaphore outside the lock, and the grant's atomic flag lets it
    /// go on without taking the lock again (one wake-up per hand-off, no convoy on the
    /// pool mutex behind the vCPU that just handed the slot over).
    private func waitForSlotAndUnlock(_ m: PoolMember) -> PCPUSlot? {
        if m.cancelled || (m.slot == nil && m.state == .blocked) {
            lock.unlock()
            return nil
        }
        lock.unlock()
        while !m.granted.load(ordering: .acquiring) {
            if m.cancelRequested.load(ordering: .acquiring) { return nil }
            m.parker.park()
        }
        if m.cancelRequested.load(ordering: .acquiring) { return nil }
        // Granted: `slot` and `handoffFrom` were written before `granted` and only this
        // thread changes them until it gives the slot back.
        if let from = m.handoffFrom, from != 0 {
            let cost = VMClock.hostNanoseconds() &- from
            handoffs.record(cost)
            m.handoffFrom = nil
        }
        if m.wokeAtHost != 0 {
            wakeLatency.record(vm: m.vmID, nanoseconds: VMClock.hostNanoseconds() &- m.wokeAtHost)
            m.wokeAtHost = 0
        }
        return m.slot
    }

    // MARK: Timer

    /// Preempts holders whose slice ended, re-asks idle slots that are due, runs the
    /// watchdog and samples statistics; returns the pool-clock time it wants to run
    /// again. The timer thread calls it; tests call it directly.
    @discardableResult
    func timerTick() -> UInt64 {
        lock.withLock { tickLocked() }
    }

    private func tickLocked() -> UInt64 {
        let now = clock.now()
        var next = min(nextWatchdog, nextSample)
        var due = false
        for s in slots {
            if let h = s.holder {
                if s.draining {
                    continue
                } else if let sent = s.preemptSentAt {
                    // Kick again if the holder has not come back yet.
                    let again = sent &+ Self.rekick * (1 + (now &- sent) / Self.rekick)
                    if now &- sent >= Self.rekick { h.kick() }
                    next = min(next, again)
                } else if now >= s.sliceEnd {
                    s.preemptSentAt = now
                    h.needsPool.store(true, ordering: .releasing)
                    h.kick()
                    next = min(next, now &+ Self.rekick)
                } else {
                    next = min(next, s.sliceEnd)
                }
            } else if let r = s.reaskAt {
                if now >= r { s.reaskAt = nil; due = true } else { next = min(next, r) }
            }
        }
        if due {
            dispatch(now: now)
            for s in slots where s.holder == nil { if let r = s.reaskAt { next = min(next, r) } }
            for s in slots where s.holder != nil && s.preemptSentAt == nil { next = min(next, s.sliceEnd) }
        }
        if let overrun = policy.overrun {
            // A call without a pick after it overran (account, wake, block).
            replaceWithFallback(overrun)
            dispatch(now: now)
        }
        if now >= nextWatchdog {
            nextWatchdog = now &+ Self.watchdogPeriod
            checkStarvation(now: now)
            next = min(next, nextWatchdog)
        }
        if now >= nextSample {
            nextSample = now &+ Self.samplePeriod
            sample(now: now)
            next = min(next, nextSample)
        }
        return next
    }

    /// The watchdog limit for a vCPU: longer for a capped one, which may wait legitimately.
    func starvationLimit(for m: PoolMember) -> UInt64 {
        watchdogNanoseconds &* UInt64(max(1, 100 / max(1, m.params.maxPercent)))
    }

    private func checkStarvation(now: UInt64) {
        guard drainingSlots == 0 else { return }
        for m in members.values.sorted(by: { $0.id < $1.id }) where m.state == .ready && !m.starvationReported {
            let waited = now &- m.readySince
            guard waited > starvationLimit(for: m), m.picksWhileReady >= 2 else { continue }
            let problem = "left runnable vCPU \(m.id) (VM '\(m.vmName)' vCPU \(m.vcpuIndex)) without a pCPU for \(formatSeconds(waited)) over \(m.picksWhileReady) decisions (watchdog \(formatSeconds(starvationLimit(for: m))))"
            if policy.isFallback {
                m.starvationReported = true
                logger.warning("pool '\(name)': the built-in fallback policy \(problem)")
                continue
            }
            replaceWithFallback(problem)
            dispatch(now: now)
            return
        }
    }

    /// Starts the pool timer thread.
    package func start() {
        lock.withLock {
            guard timerThread == nil else { return }
            stopping = false
            timerThread = HostThread.spawn { [self] in timerLoop() }
        }
    }

    /// Stops the pool timer thread.
    package func stop() {
        let t: pthread_t? = lock.withLock {
            stopping = true
            timerWakeup.signal()
            defer { timerThread = nil }
            return timerThread
        }
        if let t { pthread_join(t, nil) }
    }

    private func timerLoop() {
        HostThread.setTimerSlack(nanoseconds: 1_000)
        lock.lock()
        while !stopping {
            let next = tickLocked()
            let now = clock.now()
            if next > now {
                timerWakeup.wait(lock, until: VMClock.hostNanoseconds() &+ (next &- now))
            }
        }
        lock.unlock()
    }

    // MARK: Statistics

    private func readyTime(_ m: PoolMember, now: UInt64) -> UInt64 {
        m.readyTotal &+ (m.state == .ready ? now &- m.readySince : 0)
    }

    private func heldTime(_ m: PoolMember, now: UInt64) -> UInt64 {
        m.heldTotal &+ (m.slot != nil ? now &- m.heldSince : 0)
    }

    /// Records the interval rates (%USED, %RDY) since the previous sample.
    private func sample(now: UInt64) {
        for m in members.values {
            let cur = VCPUStatsSample(time: now, cpu: m.cpuTime ?? m.accountedTotal, ready: readyTime(m, now: now),
                                      held: heldTime(m, now: now))
            if let prev = samples[m.id], cur.time > prev.time {
                let wall = Double(cur.time - prev.time)
                intervalRates[m.id] = (used: Double(cur.cpu &- prev.cpu) / wall * 100,
                                       run: Double(cur.held &- prev.held) / wall * 100,
                                       ready: Double(cur.ready &- prev.ready) / wall * 100)
            }
            samples[m.id] = cur
        }
    }

    /// Everything `sched pools` and `sched stats` show, read under the lock.
    func snapshot() -> PoolSnapshot {
        lock.withLock {
            let now = clock.now()
            let ordered = members.values.sorted { $0.id < $1.id }
            let active = ordered.map { $0.state != .blocked || now &- $0.blockedSince < Self.samplePeriod }
            let entitlements = SchedulerEntitlement.compute(
                capacity: Double(slots.count * 100),
                demands: zip(ordered, active).map { m, a in
                    .init(shares: Double(m.params.shares), minPercent: Double(m.params.minPercent),
                          maxPercent: Double(m.params.maxPercent), active: a)
                })
            var rows: [VCPUStatsRow] = []
            for (i, m) in ordered.enumerated() {
                let rate = intervalRates[m.id]
                let wake = wakeLatency.summary(vm: m.vmID)
                rows.append(VCPUStatsRow(
                    pool: name, vm: m.vmName, vmID: m.vmID, vcpu: m.id, vcpuIndex: m.vcpuIndex,
                    state: m.state.description, params: m.params,
                    cpuNanoseconds: m.cpuTime ?? m.accountedTotal, accountedNanoseconds: m.accountedTotal,
                    readyNanoseconds: readyTime(m, now: now), runNanoseconds: heldTime(m, now: now), grants: m.grantCount,
                    usedPercent: rate?.used, runPercent: rate?.run, readyPercent: rate?.ready,
                    entitlementPercent: entitlements[i],
                    wakeups: wake?.count ?? 0, wakeP50Nanoseconds: wake?.p50, wakeP99Nanoseconds: wake?.p99))
            }
            return PoolSnapshot(
                name: name, time: now,
                slots: slots.map { .init(index: $0.index, hostCPU: $0.hostCPU, holder: $0.holder.map { "\($0.vmName)/\($0.vcpuIndex)" },
                                         grants: $0.grants, switches: $0.switches,
                                         idleNanoseconds: $0.idleTotal &+ ($0.holder == nil ? now &- $0.idleSince : 0)) },
                policy: policy.name, policyOrigin: policy.origin, policyDump: policy.dump(),
                vcpus: rows, counters: handoffs.merged(into: counters), fallbackEvents: fallbackEvents)
        }
    }
}

/// Pool-wide counters.
package struct PoolCounters: Sendable {
    package var decisions: UInt64 = 0
    /// Slot hand-offs to a different vCPU, and their total/max cost (host ns from the
    /// previous holder giving the slot back to the next one returning from its wait).
    package var handoffs: UInt64 = 0
    package var handoffTotal: UInt64 = 0
    var handoffMax: UInt64 = 0
    /// Preemptions (slice ends and wake preemptions) and the total time from the kick to
    /// the holder coming back.
    package var preemptions: UInt64 = 0
    package var preemptLatencyTotal: UInt64 = 0
    /// Of those, the ones a wake asked for (the policy's `preempt`).
    var wakePreemptions: UInt64 = 0
    package var fallbackSwitches: UInt64 = 0
}

func formatSeconds(_ ns: UInt64) -> String {
    let s = Double(ns) / 1e9
    return s >= 10 ? "\(Int(s.rounded())) s" : "\((s * 10).rounded() / 10) s"
}

/// Hand-off cost totals, updated without the pool lock.
final class PoolHandoffStats: @unchecked Sendable {
    private let count = Atomic<UInt64>(0)
    private let total = Atomic<UInt64>(0)
    private let maximum = Atomic<UInt64>(0)

    func record(_ ns: UInt64) {
        count.add(1, ordering: .relaxed)
        total.add(ns, ordering: .relaxed)
        var seen = maximum.load(ordering: .relaxed)
        while ns > seen {
            let (done, now) = maximum.compareExchange(expected: seen, desired: ns, ordering: .relaxed)
            if done { break }
            seen = now
        }
    }

    func merged(into c: PoolCounters) -> PoolCounters {
        var c = c
        c.handoffs = count.load(ordering: .relaxed)
        c.handoffTotal = total.load(ordering: .relaxed)
        c.handoffMax = maximum.load(ordering: .relaxed)
        return c
    }
}
