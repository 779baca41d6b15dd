import HVSched

/// A deterministic discrete-event simulation of one scheduler pool in virtual time: it
/// drives a policy (a plugin's `hv_sched_ops` through the plugin host's adapter, or the
/// built-in ``FallbackPolicy``) exactly as ``SchedulerPool`` does — `vcpu_add` then
/// `wake` on arrival, `account` then `block` when a burst ends, `account` when a slice
/// ends, `preempt` after every wake (a pCPU it names has its slice end at once),
/// `pick_next` for every free pCPU after any event — and measures what the policy
/// did against what the scenario's VMs are entitled to.
///
/// Host rules it mirrors (``SchedulerPolicy``): a pick must name a runnable vCPU of the
/// pool that is not running elsewhere and is allowed on the pCPU, with a slice of
/// 10 µs…1 s; an idle pick with a slice is asked again after it, with a zero slice on
/// the next event (or after 10 ms while vCPUs wait). Bad picks are counted and reported
/// (the pCPU idles 10 ms) instead of switching to the fallback, so a policy author sees
/// every one.
///
/// Events at the same instant run in a fixed order — departures, arrivals, parameter
/// changes, bursts ending (block), wakes, slices ending — then free pCPUs are asked in
/// index order. Each vCPU draws its run and sleep lengths from its own SplitMix64
/// stream, so the same scenario and seed give the same output byte for byte.
package final class SchedSimulator {
    let scenario: SchedSimScenario
    package let seed: UInt64
    private let policy: SchedulerPolicy
    private let policyName: String

    /// The host's own rules (``SchedulerPool``), so the two cannot drift apart.
    static let validSlices = SchedulerPool.validSlices
    static let idleReask = SchedulerPool.idleReask

    private enum State: Equatable {
        case absent, blocked, ready, running(Int)
    }

    private struct VCPU {
        let id: Int32
        let vm: Int
        let index: Int
        var params: SchedulerParams
        var state: State = .absent
        var rng: SplitMix64
        /// A recorded vCPU's bursts and the one it is in.
        var bursts: [SchedSimScenario.RecordedBurst] = []
        var burstIndex = 0
        var burstLeft: UInt64 = 0
        var wakeAt: UInt64?
        var readySince: UInt64 = 0
        var wokeAt: UInt64?
        var runTotal: UInt64 = 0
        var epochBase: UInt64 = 0
        var rate: Double = 0
        var byShares = false
        var maxWait: UInt64 = 0
    }

    private struct PCPU {
        var running: Int?
        var stintStart: UInt64 = 0
        var sliceEnd: UInt64 = 0
        var reaskAt: UInt64?
    }

    private var vcpus: [VCPU] = []
    private var pcpus: [PCPU] = []
    private var vmVCPUs: [[Int]] = []
    private var vmActive: [Bool] = []
    private var vmParams: [SchedulerParams] = []
    private var entitlementDirty = false

    // Measurements.
    private var runWindow: [UInt64] = []
    private var entWindow: [Double] = []
    private var entTotal: [Double] = []
    private var pairWindow: [Double?] = []
    private var pairTotal: [Double?] = []
    private var latencies: [[UInt64]] = []
    private var skewLead: [Int64] = []
    private var skewMax: [UInt64] = []
    private var windowStart: UInt64 = 0
    private var windows: [SchedSimResult.WindowRow] = []
    private var counters = SchedSimResult.Counters()
    private var problems: [String] = []
    private var drift: [Int64] = []
    private var driftMax: [UInt64] = []

    /// When set, receives one line per policy call and per stint ("12.500000 pick pcpu 0
    /// -> vcpu 2 slice 10ms"), for debugging a policy.
    package var trace: ((String) -> Void)?

    /// Simulates `scenario` with `policy` (already instantiated for `scenario.pcpus`).
    package init(scenario: SchedSimScenario, policy: SchedulerPolicy, seed: UInt64) {
        self.scenario = scenario
        self.policy = policy
        self.policyName = policy.name
        self.seed = seed
    }

    /// Loads `name` for `pcpus` pCPUs: the built-in "fallback", or the policy `resolve`
    /// finds (a plugin's: `PluginCatalog.schedulerPolicySource(named:)`), through its `init`.
    package static func loadPolicy(named name: String, pcpus: Int,
                                  resolve: (String) throws -> SchedulerPolicySource) throws -> SchedulerPolicy {
        if name.lowercased() == FallbackPolicy.policyName { return FallbackPolicy() }
        return try resolve(name).instantiate(pcpuCount: pcpus)
    }

    /// Runs the whole scenario and shuts the policy down. Throws when the policy refuses
    /// a vCPU or its parameters.
    package func run() throws -> SchedSimResult {
        defer { policy.shutdown() }
        setUp()
        var t: UInt64 = 0
        var nextSample = scenario.tick
        var nextWindow = min(scenario.window, scenario.duration)
        while true {
            try processEvents(at: t)
            if t == nextSample {
                samplePairs()
                nextSample &+= scenario.tick
            }
            if t == nextWindow {
                closeWindow(at: t)
                nextWindow = min(t + scenario.window, scenario.duration)
            }
            if t >= scenario.duration { break }
            let next = min(nextEventTime(after: t), nextSample, nextWindow, scenario.duration)
            advance(from: t, to: next)
            t = next
        }
        for i in vcpus.indices where vcpus[i].state == .ready {
            vcpus[i].maxWait = max(vcpus[i].maxWait, t - vcpus[i].readySince)
        }
        return makeResult()
    }

    // MARK: Setup

    private func setUp() {
        pcpus = Array(repeating: PCPU(), count: scenario.pcpus)
        var id: Int32 = 0
        for (vi, vm) in scenario.vms.enumerated() {
            var list: [Int] = []
            for k in 0..<vm.vcpus {
                list.append(vcpus.count)
                var v = VCPU(id: id, vm: vi, index: k, params: vm.params,
                             rng: SplitMix64(seed: seed, stream: UInt64(vi), UInt64(k)))
                if case .recorded = vm.workload, vcpus.count < scenario.recordedBursts.count {
                    v.bursts = scenario.recordedBursts[vcpus.count]
                }
                vcpus.append(v)
                id += 1
            }
            vmVCPUs.append(list)
            vmParams.append(vm.params)
        }
        let n = scenario.vms.count
        vmActive = Array(repeating: false, count: n)
        runWindow = Array(repeating: 0, count: n)
        entWindow = Array(repeating: 0, count: n)
        entTotal = Array(repeating: 0, count: n)
        pairWindow = Array(repeating: nil, count: n)
        pairTotal = Array(repeating: nil, count: n)
        latencies = Array(repeating: [], count: n)
        skewLead = Array(repeating: 0, count: n)
        skewMax = Array(repeating: 0, count: n)
        drift = Array(repeating: 0, count: n)
        driftMax = Array(repeating: 0, count: n)
    }

    private func log(_ t: UInt64, _ what: @autoclosure () -> String) {
        guard let trace else { return }
        trace(SchedSimFormat.fixed(Double(t) / 1e9, 6) + " " + what())
    }

    private func who(_ i: Int) -> String { "vcpu \(vcpus[i].id) (\(scenario.vms[vcpus[i].vm].name)/\(vcpus[i].index))" }

    // MARK: Events

    private func processEvents(at t: UInt64) throws {
        var any = false
        // 1. Departures.
        for (vi, vm) in scenario.vms.enumerated() where vmActive[vi] && vm.leave == t {
            for i in vmVCPUs[vi] {
                if case .running(let p) = vcpus[i].state { stopStint(i, on: p, at: t) }
                if vcpus[i].state == .ready { vcpus[i].maxWait = max(vcpus[i].maxWait, t - vcpus[i].readySince) }
                policy.removeVCPU(vcpus[i].id)
                log(t, "remove \(who(i))")
                vcpus[i].state = .absent
                vcpus[i].wakeAt = nil
                vcpus[i].wokeAt = nil
            }
            vmActive[vi] = false
            entitlementDirty = true
            any = true
        }
        // 2. Arrivals: vcpu_add, then wake at once (the pool's join).
        for (vi, vm) in scenario.vms.enumerated() where !vmActive[vi] && vm.arrive == t && (vm.leave ?? .max) > t {
            for i in vmVCPUs[vi] {
                vcpus[i].params = vmParams[vi]
                do {
                    try policy.addVCPU(vcpus[i].id, vm: Int32(vi), params: vcpus[i].params)
                } catch {
                    throw SchedSimError("policy '\(policyName)' refused VM '\(vm.name)' vCPU \(vcpus[i].index) (scenario line \(vm.line)): \(error)")
                }
                policy.wake(vcpus[i].id, now: t)
                log(t, "add+wake \(who(i)) \(vcpus[i].params)")
                vcpus[i].state = .ready
                vcpus[i].readySince = t
                vcpus[i].wokeAt = t
                vcpus[i].burstLeft = nextRun(i)
                preemptAfterWake(at: t)
            }
            vmActive[vi] = true
            entitlementDirty = true
            any = true
        }
        // 3. Parameter changes.
        for change in scenario.changes where change.time == t {
            guard let vi = scenario.vms.firstIndex(where: { $0.name == change.vm }) else { continue }
            var vm = scenario.vms[vi]
            vm.cpu = change.cpu
            vmParams[vi] = vm.params
            guard vmActive[vi] else { continue }
            for i in vmVCPUs[vi] {
                vcpus[i].params = vm.params
                do {
                    try policy.setParams(vcpus[i].id, params: vm.params)
                    log(t, "set_params \(who(i)) \(vm.params)")
                } catch {
                    throw SchedSimError("policy '\(policyName)' refused new parameters for VM '\(vm.name)' (scenario line \(change.line)): \(error)")
                }
            }
            entitlementDirty = true
            any = true
        }
        // 4. Bursts ending: account, then block.
        for p in pcpus.indices {
            guard let i = pcpus[p].running, scenario.vms[vcpus[i].vm].workload.hasBursts,
                  vcpus[i].burstLeft != .max, pcpus[p].stintStart + vcpus[i].burstLeft <= t else { continue }
            stopStint(i, on: p, at: t)
            policy.block(vcpus[i].id, now: t)
            log(t, "block \(who(i))")
            vcpus[i].state = .blocked
            let sleep = nextSleep(i)
            vcpus[i].wakeAt = sleep == .max ? nil : t + sleep
            any = true
        }
        // 5. Wakes.
        for i in vcpus.indices where vcpus[i].state == .blocked && vcpus[i].wakeAt == t {
            policy.wake(vcpus[i].id, now: t)
            log(t, "wake \(who(i))")
            vcpus[i].state = .ready
            vcpus[i].readySince = t
            vcpus[i].wokeAt = t
            vcpus[i].wakeAt = nil
            vcpus[i].burstLeft = nextRun(i)
            preemptAfterWake(at: t)
            any = true
        }
        // 6. Slices ending; idle pCPUs due to be asked again.
        for p in pcpus.indices {
            if let i = pcpus[p].running {
                if pcpus[p].sliceEnd <= t {
                    stopStint(i, on: p, at: t)
                    vcpus[i].state = .ready
                    vcpus[i].readySince = t
                    any = true
                }
            } else if let r = pcpus[p].reaskAt, r <= t {
                any = true
            }
        }
        if entitlementDirty { recomputeEntitlement() }
        guard any else { return }
        for p in pcpus.indices where pcpus[p].running == nil { decide(p, at: t) }
    }

    /// The policy's `preempt` after a wake: each running pCPU it names has its slice
    /// end now (step 6 then accounts it and the pCPU is asked again, as at a slice end).
    /// Bits for idle pCPUs, pCPUs already stopping and pCPUs beyond the pool are ignored.
    private func preemptAfterWake(at t: UInt64) {
        let mask = policy.preempt(now: t)
        guard mask != 0 else { return }
        log(t, "preempt -> 0x" + String(mask, radix: 16))
        for p in pcpus.indices where p < 64 && mask & (UInt64(1) << UInt64(p)) != 0 {
            guard pcpus[p].running != nil, pcpus[p].sliceEnd > t else { continue }
            pcpus[p].sliceEnd = t
            counters.wakePreemptions += 1
        }
    }

    /// The CPU time of the burst a vCPU starts now (`.max` for a CPU-bound one).
    private func nextRun(_ i: Int) -> UInt64 {
        switch scenario.vms[vcpus[i].vm].workload {
        case .cpu: return .max
        case let .io(run, _, dist): return vcpus[i].rng.draw(mean: run, dist)
        case .recorded:
            let k = vcpus[i].burstIndex
            return k < vcpus[i].bursts.count ? vcpus[i].bursts[k].run : .max
        }
    }

    /// How long a vCPU whose burst ended now stays blocked (`.max`: for good).
    private func nextSleep(_ i: Int) -> UInt64 {
        switch scenario.vms[vcpus[i].vm].workload {
        case .cpu: return .max
        case let .io(_, sleep, dist): return vcpus[i].rng.draw(mean: sleep, dist)
        case .recorded:
            let k = vcpus[i].burstIndex
            vcpus[i].burstIndex += 1
            return k < vcpus[i].bursts.count ? vcpus[i].bursts[k].sleep : .max
        }
    }

    private func stopStint(_ i: Int, on p: Int, at t: UInt64) {
        let ran = t - pcpus[p].stintStart
        policy.account(vcpus[i].id, ranNanoseconds: ran)
        log(t, "account \(who(i)) ran \(SchedSimScenario.formatDuration(ran)) on pcpu \(p)")
        if scenario.vms[vcpus[i].vm].workload.hasBursts, vcpus[i].burstLeft != .max {
            vcpus[i].burstLeft -= min(ran, vcpus[i].burstLeft)
        }
        pcpus[p].running = nil
        pcpus[p].reaskAt = nil
    }

    private func decide(_ p: Int, at t: UInt64) {
        let pick = policy.pickNext(pcpu: UInt32(p), now: t)
        counters.picks += 1
        log(t, "pick pcpu \(p) -> " + (pick.vcpu < 0 ? "idle" : "vcpu \(pick.vcpu)") + " slice \(SchedSimScenario.formatDuration(pick.sliceNanoseconds))")
        if pick.vcpu < 0 {
            counters.idlePicks += 1
            if pick.sliceNanoseconds > 0 {
                pcpus[p].reaskAt = t + min(pick.sliceNanoseconds, Self.validSlices.upperBound)
            } else {
                pcpus[p].reaskAt = vcpus.contains { $0.state == .ready } ? t + Self.idleReask : nil
            }
            return
        }
        if let problem = problem(with: pick, on: p) {
            counters.invalidPicks += 1
            if problems.count < 10 { problems.append("t=\(SchedSimScenario.formatDuration(t)): \(problem)") }
            pcpus[p].reaskAt = t + Self.idleReask
            return
        }
        let i = Int(pick.vcpu)
        vcpus[i].maxWait = max(vcpus[i].maxWait, t - vcpus[i].readySince)
        if let w = vcpus[i].wokeAt {
            latencies[vcpus[i].vm].append(t - w)
            vcpus[i].wokeAt = nil
        }
        vcpus[i].state = .running(p)
        pcpus[p].running = i
        pcpus[p].stintStart = t
        pcpus[p].sliceEnd = t + pick.sliceNanoseconds
        pcpus[p].reaskAt = nil
    }

    private func problem(with pick: SchedulerPick, on p: Int) -> String? {
        guard pick.vcpu >= 0, Int(pick.vcpu) < vcpus.count else {
            return "pick_next(pcpu \(p)) returned vCPU \(pick.vcpu), which is not in this pool"
        }
        let v = vcpus[Int(pick.vcpu)]
        let who = "vCPU \(v.id) (VM '\(scenario.vms[v.vm].name)' vCPU \(v.index))"
        switch v.state {
        case .absent: return "pick_next(pcpu \(p)) returned \(who), which has left the pool"
        case .blocked: return "pick_next(pcpu \(p)) returned \(who), which is blocked"
        case .running(let q): return "pick_next(pcpu \(p)) returned \(who), which is running on pcpu \(q)"
        case .ready: break
        }
        guard v.params.allows(pcpu: p) else {
            counters.affinityViolations += 1
            return "pick_next(pcpu \(p)) returned \(who), whose affinity 0x\(String(v.params.affinity, radix: 16)) does not allow it"
        }
        guard Self.validSlices.contains(pick.sliceNanoseconds) else {
            return "pick_next(pcpu \(p)) returned \(who) with a slice of \(pick.sliceNanoseconds) ns (allowed \(Self.validSlices.lowerBound)...\(Self.validSlices.upperBound))"
        }
        return nil
    }

    private func nextEventTime(after t: UInt64) -> UInt64 {
        var next = UInt64.max
        for vm in scenario.vms {
            if vm.arrive > t { next = min(next, vm.arrive) }
            if let l = vm.leave, l > t { next = min(next, l) }
        }
        for c in scenario.changes where c.time > t { next = min(next, c.time) }
        for p in pcpus {
            if let i = p.running {
                next = min(next, p.sliceEnd)
                if scenario.vms[vcpus[i].vm].workload.hasBursts, vcpus[i].burstLeft != .max {
                    next = min(next, p.stintStart + vcpus[i].burstLeft)
                }
            } else if let r = p.reaskAt {
                next = min(next, r)
            }
        }
        for v in vcpus { if let w = v.wakeAt { next = min(next, w) } }
        return max(next, t + 1)
    }

    // MARK: Measurement

    private func recomputeEntitlement() {
        entitlementDirty = false
        var idx: [Int] = []
        var claims: [SchedSimEntitlement.Claim] = []
        for i in vcpus.indices where vcpus[i].state != .absent {
            let prm = vcpus[i].params
            idx.append(i)
            claims.append(.init(shares: Double(prm.shares), min: Double(prm.minPercent) / 100,
                                max: Double(prm.maxPercent) / 100,
                                demand: scenario.vms[vcpus[i].vm].workload.demand,
                                cost: prm.htSharing == .none && scenario.pcpus >= 2 ? 2 : 1))
        }
        let shares = SchedSimEntitlement.divide(claims, capacity: Double(scenario.pcpus))
        for i in vcpus.indices {
            vcpus[i].rate = 0
            vcpus[i].byShares = false
        }
        for (k, i) in idx.enumerated() {
            vcpus[i].rate = shares[k].rate
            vcpus[i].byShares = shares[k].byShares
            vcpus[i].epochBase = vcpus[i].runTotal    // a new fairness epoch
        }
    }

    private func advance(from t0: UInt64, to t1: UInt64) {
        let dt = t1 - t0
        guard dt > 0 else { return }
        for p in pcpus.indices {
            if let i = pcpus[p].running {
                vcpus[i].runTotal += dt
                runWindow[vcpus[i].vm] += dt
                counters.busyNs += dt
            } else {
                counters.idleNs += dt
            }
        }
        let d = Double(dt)
        for v in vcpus where v.state != .absent {
            entWindow[v.vm] += v.rate * d
            entTotal[v.vm] += v.rate * d
        }
        // Hyperthread sharing: slots 2k and 2k+1 are one core.
        var k = 0
        while k + 1 < pcpus.count {
            if let a = pcpus[k].running, let b = pcpus[k + 1].running {
                let ha = vcpus[a].params.htSharing, hb = vcpus[b].params.htSharing
                let sameVM = vcpus[a].vm == vcpus[b].vm
                if ha == .none || hb == .none || ((ha == .internal || hb == .internal) && !sameVM) {
                    counters.htViolationNs += dt
                }
            }
            k += 2
        }
        // Co-scheduling of 2-vCPU VMs. Both measures grow while exactly one of two
        // runnable siblings runs and are forgotten when either halts. Skew (ESX 2.x
        // strict) is also forgotten when both run; drift (the relaxed measure: progress
        // difference) is not, so the lagging vCPU running alone brings it back down.
        for (vi, list) in vmVCPUs.enumerated() where list.count == 2 && vmActive[vi] {
            let a = vcpus[list[0]], b = vcpus[list[1]]
            func runnable(_ v: VCPU) -> Bool { if case .running = v.state { return true }; return v.state == .ready }
            func running(_ v: VCPU) -> Bool { if case .running = v.state { return true }; return false }
            guard runnable(a), runnable(b) else { skewLead[vi] = 0; drift[vi] = 0; continue }
            switch (running(a), running(b)) {
            case (true, false): skewLead[vi] += Int64(dt); drift[vi] += Int64(dt)
            case (false, true): skewLead[vi] -= Int64(dt); drift[vi] -= Int64(dt)
            case (true, true): skewLead[vi] = 0
            case (false, false): break
            }
            skewMax[vi] = max(skewMax[vi], skewLead[vi].magnitude)
            driftMax[vi] = max(driftMax[vi], drift[vi].magnitude)
        }
    }

    /// Pairwise fairness error, in quanta, between CPU-bound vCPUs whose entitlement
    /// shares decide, over the current epoch (since the set of active vCPUs or their
    /// parameters last changed): |ΔWᵢ − (ΔWᵢ + ΔWⱼ)·rᵢ/(rᵢ + rⱼ)|.
    private func samplePairs() {
        let q = Double(scenario.quantum)
        let eligible = vcpus.indices.filter { i in
            vcpus[i].state != .absent && vcpus[i].byShares && scenario.vms[vcpus[i].vm].workload == .cpu
        }
        guard eligible.count >= 2 else { return }
        counters.pairSamples += 1
        for a in 0..<eligible.count {
            let i = eligible[a]
            let wi = Double(vcpus[i].runTotal - vcpus[i].epochBase), ri = vcpus[i].rate
            for b in (a + 1)..<eligible.count {
                let j = eligible[b]
                let wj = Double(vcpus[j].runTotal - vcpus[j].epochBase), rj = vcpus[j].rate
                let err = abs(wi * rj - wj * ri) / (ri + rj) / q
                for vm in [vcpus[i].vm, vcpus[j].vm] {
                    pairWindow[vm] = max(pairWindow[vm] ?? 0, err)
                    pairTotal[vm] = max(pairTotal[vm] ?? 0, err)
                }
                counters.maxPairErrorQuanta = max(counters.maxPairErrorQuanta ?? 0, err)
            }
        }
    }

    private func closeWindow(at t: UInt64) {
        let len = Double(t - windowStart) * Double(scenario.pcpus)
        guard len > 0 else { return }
        for vi in scenario.vms.indices {
            windows.append(.init(start: windowStart, end: t, vm: vi,
                                 entitledPercent: entWindow[vi] / len * 100,
                                 achievedPercent: Double(runWindow[vi]) / len * 100,
                                 maxPairErrorQuanta: pairWindow[vi]))
            entWindow[vi] = 0
            runWindow[vi] = 0
            pairWindow[vi] = nil
        }
        windowStart = t
    }

    private func makeResult() -> SchedSimResult {
        let total = Double(scenario.duration) * Double(scenario.pcpus)
        var vms: [SchedSimResult.VMSummary] = []
        for (vi, vm) in scenario.vms.enumerated() {
            let run = vmVCPUs[vi].reduce(UInt64(0)) { $0 + vcpus[$1].runTotal }
            let lat = latencies[vi].sorted()
            func pct(_ p: Double) -> UInt64? {
                guard !lat.isEmpty else { return nil }
                let rank = Int((p * Double(lat.count)).rounded(.up))
                return lat[max(0, min(lat.count - 1, rank - 1))]
            }
            vms.append(.init(
                name: vm.name, vcpus: vm.vcpus, shares: vm.cpu.totalShares(vcpus: vm.vcpus),
                minPercent: vm.cpu.minPercent, maxPercent: vm.cpu.maxPercent,
                htSharing: vm.cpu.htSharing.description, affinity: vm.cpu.affinity.description,
                workload: vm.workload.description,
                entitledPercent: entTotal[vi] / total * 100, achievedPercent: Double(run) / total * 100,
                maxPairErrorQuanta: pairTotal[vi], wakeups: lat.count,
                wakeP50: pct(0.5), wakeP90: pct(0.9), wakeP99: pct(0.99), wakeMax: lat.last,
                maxWait: vmVCPUs[vi].map { vcpus[$0].maxWait }.max() ?? 0,
                maxSkew: vm.vcpus == 2 ? skewMax[vi] : nil,
                maxDrift: vm.vcpus == 2 ? driftMax[vi] : nil))
        }
        return SchedSimResult(policy: policyName, policyState: policy.dump(), scenario: scenario, seed: seed,
                              vms: vms, windows: windows, counters: counters, problems: problems)
    }
}

/// The simulation could not run (a policy refused a vCPU, a policy could not load).
package struct SchedSimError: Error, CustomStringConvertible, Sendable {
    let message: String
    init(_ message: String) { self.message = message }
    package var description: String { message }
}
