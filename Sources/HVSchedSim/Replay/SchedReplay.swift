import HVSched

/// Turning a recording into the simulator's input (the workload's demand, not the old
/// schedule) and into the same result a simulation gives (what the live run achieved).
extension SchedRecording {
    /// The VMs of the pool, in id order.
    private func poolVMs(_ pool: Int) -> [VM] { vms.filter { $0.pool == pool }.sorted { $0.id < $1.id } }

    private func vcpuIDs(of vm: VM) -> [Int32] {
        vcpus.filter { $0.vm == vm.id }.sorted { $0.index < $1.index }.map(\.id)
    }

    private func vcpuOf(_ e: Event) -> Int32? {
        switch e {
        case .join(let v), .wake(let v): v
        case .block(let v, _, _), .yield(let v, _), .sliceEnd(let v, _), .leave(let v, _): v
        case .pick(_, _, let v, _): v
        case .params(let v, _, _, _): v
        case .idle: nil
        }
    }

    /// A vCPU's demand: each run burst's CPU time and the blocked time after it, from
    /// its join (or wake) to its block; the last burst runs to the end.
    private func bursts(of vcpu: Int32) -> (bursts: [SchedSimScenario.RecordedBurst], join: UInt64?, leave: UInt64?) {
        var out: [SchedSimScenario.RecordedBurst] = []
        var join: UInt64?, leave: UInt64?
        var cpu: UInt64 = 0
        var blocked: (at: UInt64, burst: UInt64)?
        for (t, e) in events where vcpuOf(e) == vcpu {
            switch e {
            case .join: if join == nil { join = t }
            case .sliceEnd(_, let ran), .yield(_, let ran): cpu &+= ran
            case .block(_, let ran, let burst):
                blocked = (t, max(burst, cpu &+ ran))
                cpu = 0
            case .wake:
                if let b = blocked { out.append(.init(run: b.burst, sleep: t - b.at)) }
                blocked = nil
                cpu = 0
            case .leave: leave = t
            case .pick, .idle, .params: break
            }
        }
        if let b = blocked { out.append(.init(run: b.burst, sleep: .max)) }
        return (out, join, leave)
    }

    /// The recorded pool's workload as a simulation scenario: its VMs with their first
    /// parameters and later `set_params` changes, arriving when their first vCPU joined
    /// and leaving when their last one left, each vCPU running and sleeping as it did.
    package func scenario(pool name: String?) throws -> SchedSimScenario {
        let pi = try poolIndex(name)
        var s = SchedSimScenario(name: self.name)
        s.title = "replay of \(self.name) (pool \(pools[pi].name))"
        s.pcpus = max(1, pools[pi].slots.count)
        guard duration > 0 else { throw SchedSimError("\(self.name): the recording has no events") }
        s.duration = duration
        s.window = min(s.window, duration)
        for vm in poolVMs(pi) {
            var v = SchedSimScenario.VM(name: vm.name, line: 0)
            v.vcpus = max(1, vm.vcpus)
            v.cpu = Self.cpu(vm.params, vcpus: v.vcpus)
            var run: UInt64 = 0, sleep: UInt64 = 0
            var arrive = UInt64.max, leave: UInt64 = 0, allLeft = true
            var traces: [[SchedSimScenario.RecordedBurst]] = []
            for id in vcpuIDs(of: vm) {
                let b = bursts(of: id)
                traces.append(b.bursts)
                for x in b.bursts where x.run != .max { run += x.run; if x.sleep != .max { sleep += x.sleep } }
                arrive = min(arrive, b.join ?? .max)
                if let l = b.leave { leave = max(leave, l) } else { allLeft = false }
            }
            while traces.count < v.vcpus { traces.append([]) }
            guard arrive < duration else { continue }       // it never ran here
            v.arrive = arrive
            v.leave = allLeft && leave < duration && leave > arrive ? leave : nil
            v.workload = .recorded(demand: sleep == 0 ? 1 : Double(run) / Double(run + sleep))
            s.vms.append(v)
            s.recordedBursts += traces.prefix(v.vcpus)
            var cpu = v.cpu
            let first = vcpuIDs(of: vm).first
            for (t, e) in events {
                guard case let .params(id, shares, mn, mx) = e, id == first else { continue }
                cpu.shares = .custom(shares * UInt32(v.vcpus))
                cpu.minPercent = Int(mn)
                cpu.maxPercent = Int(mx)
                s.changes.append(.init(time: t, vm: vm.name, cpu: cpu, line: 0))
            }
        }
        guard !s.vms.isEmpty else { throw SchedSimError("\(self.name): no VM ran in pool '\(pools[pi].name)'") }
        return s
    }

    /// `sched.cpu.*` parameters that give `params` per vCPU.
    private static func cpu(_ params: SchedulerParams, vcpus: Int) -> CPUSchedulingParameters {
        var c = CPUSchedulingParameters()
        c.shares = .custom(params.shares * UInt32(vcpus))
        c.minPercent = Int(params.minPercent)
        c.maxPercent = Int(params.maxPercent)
        c.htSharing = params.htSharing
        if params.affinity != 0 {
            c.affinity = .cpus((0..<64).filter { params.affinity & (UInt64(1) << UInt64($0)) != 0 })
        }
        return c
    }

    /// What the live run achieved in the pool, as a simulation result over the same
    /// scenario (``scenario(pool:)``): each VM's CPU time (what its threads used while
    /// holding a slot, as the policy was charged) per window and in total, its
    /// entitlement, wake-to-run latencies and longest waits.
    package func liveResult(pool name: String?) throws -> SchedSimResult {
        let pi = try poolIndex(name)
        var sc = try scenario(pool: name)
        sc.title = "live run recorded in \(self.name) (pool \(pools[pi].name))"
        let vmIndex: [Int32: Int] = Dictionary(uniqueKeysWithValues: sc.vms.enumerated().compactMap { i, v in
            poolVMs(pi).first { $0.name == v.name }.map { ($0.id, i) }
        })
        let vmOfVCPU: [Int32: Int] = Dictionary(uniqueKeysWithValues: vcpus.compactMap { c in vmIndex[c.vm].map { (c.id, $0) } })
        let n = sc.vms.count
        let cap = Double(sc.pcpus)
        let windowCount = Int((sc.duration + sc.window - 1) / sc.window)
        var run = Array(repeating: Array(repeating: 0.0, count: n), count: windowCount)
        var total = Array(repeating: 0.0, count: n)
        var latencies = Array(repeating: [UInt64](), count: n)
        var maxWait = Array(repeating: UInt64(0), count: n)
        var counters = SchedSimResult.Counters()
        var stintStart: [Int32: UInt64] = [:]
        var readySince: [Int32: UInt64] = [:]
        var wokeAt: [Int32: UInt64] = [:]

        /// Spreads `ran` ns of CPU over the windows of the stint [start, end].
        func charge(_ vm: Int, ran: UInt64, start: UInt64, end: UInt64) {
            total[vm] += Double(ran)
            counters.busyNs += ran
            let len = Double(max(end, start + 1) - start)
            var w = Int(start / sc.window)
            while w < windowCount {
                let ws = UInt64(w) * sc.window, we = ws + sc.window
                let overlap = Double(min(end, we) - max(start, ws))
                if overlap > 0 || len <= 1 { run[w][vm] += Double(ran) * (len <= 1 ? 1 : overlap / len) }
                if end <= we { break }
                w += 1
            }
        }
        func ready(_ v: Int32, _ t: UInt64) { readySince[v] = t }
        func stop(_ v: Int32, _ vm: Int, ran: UInt64, _ t: UInt64) {
            if let s = stintStart.removeValue(forKey: v) { charge(vm, ran: ran, start: s, end: t) }
        }

        for (t, e) in events {
            if case let .idle(p, _, _) = e, p == pi { counters.picks += 1; counters.idlePicks += 1; continue }
            guard let v = vcpuOf(e), let vm = vmOfVCPU[v], t <= sc.duration else { continue }
            switch e {
            case .join, .wake:
                ready(v, t)
                wokeAt[v] = t
            case .pick:
                counters.picks += 1
                if let r = readySince.removeValue(forKey: v) { maxWait[vm] = max(maxWait[vm], t - r) }
                if let w = wokeAt.removeValue(forKey: v) { latencies[vm].append(t - w) }
                stintStart[v] = t
            case .sliceEnd(_, let ran), .yield(_, let ran):
                stop(v, vm, ran: ran, t)
                ready(v, t)
            case .block(_, let ran, _), .leave(_, let ran):
                stop(v, vm, ran: ran, t)
                readySince[v] = nil
                wokeAt[v] = nil
            case .idle, .params: break
            }
        }
        for (v, s) in stintStart {
            // Still holding a slot at the end: charge the time held (its CPU is not known).
            if let vm = vmOfVCPU[v], sc.duration > s { charge(vm, ran: sc.duration - s, start: s, end: sc.duration) }
        }
        for (v, r) in readySince { if let vm = vmOfVCPU[v], sc.duration > r { maxWait[vm] = max(maxWait[vm], sc.duration - r) } }
        counters.idleNs = UInt64(max(0, cap * Double(sc.duration) - Double(counters.busyNs)))

        // Entitlement: piecewise constant between arrivals, departures and changes.
        var cuts = Set<UInt64>([0, sc.duration])
        for v in sc.vms { cuts.insert(v.arrive); if let l = v.leave { cuts.insert(l) } }
        for c in sc.changes where c.time < sc.duration { cuts.insert(c.time) }
        let points = cuts.sorted()
        var entWindow = Array(repeating: Array(repeating: 0.0, count: n), count: windowCount)
        var entTotal = Array(repeating: 0.0, count: n)
        for (a, b) in zip(points, points.dropFirst()) where b > a {
            var owners: [Int] = []
            var claims: [SchedSimEntitlement.Claim] = []
            for (i, v) in sc.vms.enumerated() where v.arrive <= a && (v.leave ?? .max) > a {
                var cpu = v.cpu
                if let c = sc.changes.last(where: { $0.vm == v.name && $0.time <= a }) { cpu = c.cpu }
                for _ in 0..<v.vcpus {
                    owners.append(i)
                    claims.append(.init(shares: Double(cpu.sharesPerVCPU(vcpus: v.vcpus)), min: Double(cpu.minPercent) / 100,
                                        max: Double(cpu.maxPercent) / 100, demand: v.workload.demand,
                                        cost: cpu.htSharing == .none && sc.pcpus >= 2 ? 2 : 1))
                }
            }
            let shares = SchedSimEntitlement.divide(claims, capacity: cap)
            for (k, owner) in owners.enumerated() {
                let rate = shares[k].rate
                entTotal[owner] += rate * Double(b - a)
                for w in 0..<windowCount {
                    let ws = UInt64(w) * sc.window, we = min(ws + sc.window, sc.duration)
                    let overlap = Double(min(b, we)) - Double(max(a, ws))
                    if overlap > 0 { entWindow[w][owner] += rate * overlap }
                }
            }
        }

        var windows: [SchedSimResult.WindowRow] = []
        for w in 0..<windowCount {
            let ws = UInt64(w) * sc.window, we = min(ws + sc.window, sc.duration)
            let len = Double(we - ws) * cap
            guard len > 0 else { continue }
            for vi in 0..<n {
                windows.append(.init(start: ws, end: we, vm: vi, entitledPercent: entWindow[w][vi] / len * 100,
                                     achievedPercent: run[w][vi] / len * 100, maxPairErrorQuanta: nil))
            }
        }
        let whole = Double(sc.duration) * cap
        var summaries: [SchedSimResult.VMSummary] = []
        for (vi, vm) in sc.vms.enumerated() {
            let lat = latencies[vi].sorted()
            func pct(_ p: Double) -> UInt64? {
                guard !lat.isEmpty else { return nil }
                return lat[max(0, min(lat.count - 1, Int((p * Double(lat.count)).rounded(.up)) - 1))]
            }
            summaries.append(.init(
                name: vm.name, vcpus: vm.vcpus, shares: vm.cpu.totalShares(vcpus: vm.vcpus),
                minPercent: vm.cpu.minPercent, maxPercent: vm.cpu.maxPercent,
                htSharing: vm.cpu.htSharing.description, affinity: vm.cpu.affinity.description,
                workload: vm.workload.description,
                entitledPercent: entTotal[vi] / whole * 100, achievedPercent: total[vi] / whole * 100,
                maxPairErrorQuanta: nil, wakeups: lat.count,
                wakeP50: pct(0.5), wakeP90: pct(0.9), wakeP99: pct(0.99), wakeMax: lat.last,
                maxWait: maxWait[vi], maxSkew: nil, maxDrift: nil))
        }
        return SchedSimResult(policy: pools[pi].policy + " (live)", policyState: nil, scenario: sc, seed: 0,
                              vms: summaries, windows: windows, counters: counters, problems: [])
    }
}

extension SchedSimResult {
    /// Each VM's part of the CPU time the pool's VMs got (0…1), by VM name: what a live
    /// run and its replay are compared on (a live run also loses some pool time to
    /// hand-offs and the host, which a simulation does not).
    package var workFractions: [String: Double] {
        let total = vms.reduce(0) { $0 + $1.achievedPercent }
        return Dictionary(uniqueKeysWithValues: vms.map { ($0.name, total > 0 ? $0.achievedPercent / total : 0) })
    }

    /// A side-by-side table of a recorded live run and its replay: achieved share of the
    /// pool and part of the VMs' CPU time, and the replay's relative difference.
    package static func comparison(live: SchedSimResult, replay: SchedSimResult) -> String {
        let lf = live.workFractions, rf = replay.workFractions
        var rows = [["VM", "LIVE%", "REPLAY%", "LIVE-PART", "REPLAY-PART", "DIFF"]]
        for v in live.vms {
            let r = replay.vms.first { $0.name == v.name }
            let a = lf[v.name] ?? 0, b = rf[v.name] ?? 0
            rows.append([v.name, SchedSimFormat.fixed(v.achievedPercent, 2), r.map { SchedSimFormat.fixed($0.achievedPercent, 2) } ?? "-",
                         SchedSimFormat.fixed(a, 4), SchedSimFormat.fixed(b, 4),
                         a > 0 ? (b >= a ? "+" : "") + SchedSimFormat.fixed((b - a) / a * 100, 2) + "%" : "-"])
        }
        var widths = Array(repeating: 0, count: rows[0].count)
        for r in rows { for (c, f) in r.enumerated() { widths[c] = max(widths[c], f.count) } }
        var out = "live (\(live.policy)) vs replay (\(replay.policy)); PART = share of the VMs' CPU time, DIFF = replay vs live part\n"
        for r in rows {
            out += r.enumerated().map { c, f in
                let pad = String(repeating: " ", count: widths[c] - f.count)
                return c == 0 ? f + pad : pad + f
            }.joined(separator: "  ") + "\n"
        }
        return out
    }
}
