/// A point-in-time reading of one vCPU's counters (pool-clock ns).
struct VCPUStatsSample: Sendable {
    var time: UInt64
    var cpu: UInt64
    var ready: UInt64
    var held: UInt64
}

/// One vCPU as `sched stats` reports it.
package struct VCPUStatsRow: Sendable {
    package var pool: String
    var vm: String
    var vmID: Int32
    var vcpu: Int32
    var vcpuIndex: Int
    var state: String
    var params: SchedulerParams
    /// Cumulative CPU time of the vCPU's thread (per-thread CPU clock).
    var cpuNanoseconds: UInt64
    /// Cumulative CPU time accounted to the policy (slot-holding time only).
    var accountedNanoseconds: UInt64
    /// Cumulative wall time runnable without a slot.
    var readyNanoseconds: UInt64
    /// Cumulative wall time holding a slot.
    var runNanoseconds: UInt64
    var grants: UInt64
    /// Over the pool's last one-second sampling interval (nil before the first):
    /// thread CPU time, slot-holding time and ready time, percent of the interval.
    var usedPercent: Double?
    var runPercent: Double?
    var readyPercent: Double?
    /// ESX-style entitlement now, percent of one pCPU.
    var entitlementPercent: Double
    /// The VM's wake-to-run latency (``WakeLatencyRecorder``): wake-ups so far and the
    /// percentiles of the recent ones; the same on every vCPU row of the VM.
    var wakeups: UInt64 = 0
    var wakeP50Nanoseconds: UInt64? = nil
    var wakeP99Nanoseconds: UInt64? = nil
}

/// One pool as `sched pools` / `sched stats` report it.
package struct PoolSnapshot: Sendable {
    package struct Slot: Sendable {
        package var index: Int
        package var hostCPU: Int?
        package var holder: String?
        var grants: UInt64
        var switches: UInt64
        /// Total time the slot had no holder.
        package var idleNanoseconds: UInt64
    }
    package var name: String
    /// Pool clock when taken.
    var time: UInt64
    package var slots: [Slot]
    package var policy: String
    package var policyOrigin: String
    package var policyDump: String?
    package var vcpus: [VCPUStatsRow]
    package var counters: PoolCounters
    package var fallbackEvents: [String]
}

/// Per-VM aggregation and the esxtop-like table shared by `sched stats` and `hvhost top`.
package enum VCPUStats {
    /// A VM's line: sums over its vCPUs (%USED and entitlement may exceed 100 with 2 vCPUs).
    package struct VMLine: Sendable, Equatable {
        package var pool: String
        var vm: String
        package var vcpus: Int
        package var usedPercent: Double?
        package var runPercent: Double?
        var readyPercent: Double?
        var entitlementPercent: Double
        package var shares: UInt32
        var minPercent: UInt32
        var maxPercent: UInt32
        var state: String
        /// Wake-to-run latency percentiles of the VM (ns; nil before its first wake-up).
        package var wakeP50: UInt64?
        package var wakeP99: UInt64?
        package init(pool: String, vm: String, vcpus: Int, usedPercent: Double?, runPercent: Double? = nil,
                    readyPercent: Double?, entitlementPercent: Double, shares: UInt32, minPercent: UInt32,
                    maxPercent: UInt32, state: String, wakeP50: UInt64? = nil, wakeP99: UInt64? = nil) {
            self.wakeP50 = wakeP50
            self.wakeP99 = wakeP99
            self.pool = pool
            self.vm = vm
            self.vcpus = vcpus
            self.usedPercent = usedPercent
            self.runPercent = runPercent
            self.readyPercent = readyPercent
            self.entitlementPercent = entitlementPercent
            self.shares = shares
            self.minPercent = minPercent
            self.maxPercent = maxPercent
            self.state = state
        }
    }

    /// Groups rows by VM in first-seen order, with the rows' interval rates.
    package static func vmLines(_ rows: [VCPUStatsRow]) -> [VMLine] {
        merge(rows.map {
            VMLine(pool: $0.pool, vm: $0.vm, vcpus: 1, usedPercent: $0.usedPercent, runPercent: $0.runPercent,
                   readyPercent: $0.readyPercent, entitlementPercent: $0.entitlementPercent,
                   shares: $0.params.shares, minPercent: $0.params.minPercent, maxPercent: $0.params.maxPercent,
                   state: $0.state, wakeP50: $0.wakeP50Nanoseconds, wakeP99: $0.wakeP99Nanoseconds)
        })
    }

    /// Merges lines of the same pool and VM, in first-seen order: vCPUs, rates (nil when
    /// any vCPU's is), entitlement and shares add up; min and max are the first line's;
    /// states are joined with commas; wake latencies (per VM already) take the largest.
    /// `sched stats` and `hvhost top` both group with it.
    package static func merge(_ vcpuLines: [VMLine]) -> [VMLine] {
        func add(_ a: Double?, _ b: Double?) -> Double? {
            guard let a, let b else { return nil }
            return a + b
        }
        var lines: [VMLine] = []
        var index: [String: Int] = [:]
        for v in vcpuLines {
            let key = v.pool + "\u{0}" + v.vm
            guard let i = index[key] else {
                index[key] = lines.count
                lines.append(v)
                continue
            }
            lines[i].vcpus += v.vcpus
            lines[i].usedPercent = add(lines[i].usedPercent, v.usedPercent)
            lines[i].runPercent = add(lines[i].runPercent, v.runPercent)
            lines[i].readyPercent = add(lines[i].readyPercent, v.readyPercent)
            lines[i].entitlementPercent += v.entitlementPercent
            lines[i].shares += v.shares
            lines[i].state += "," + v.state
            lines[i].wakeP50 = [lines[i].wakeP50, v.wakeP50].compactMap { $0 }.max()
            lines[i].wakeP99 = [lines[i].wakeP99, v.wakeP99].compactMap { $0 }.max()
        }
        return lines
    }

    /// The table: VM, POOL, NVCPU, %USED, %RUN, %RDY, %ENT, SHARES, MIN, MAX, WAKE50,
    /// WAKE99 (wake-to-run latency in µs), STATE.
    package static func table(_ lines: [VMLine]) -> String {
        func pct(_ v: Double?) -> String {
            guard let v else { return "-" }
            let r = (v * 10).rounded() / 10
            return String(r)
        }
        func us(_ ns: UInt64?) -> String { ns.map { String(($0 + 500) / 1000) } ?? "-" }
        var out: [[String]] = [["VM", "POOL", "NVCPU", "%USED", "%RUN", "%RDY", "%ENT", "SHARES", "MIN", "MAX", "WAKE50us", "WAKE99us", "STATE"]]
        for l in lines {
            out.append([l.vm, l.pool, String(l.vcpus), pct(l.usedPercent), pct(l.runPercent), pct(l.readyPercent),
                        pct(l.entitlementPercent),
                        String(l.shares), "\(l.minPercent)%", "\(l.maxPercent)%", us(l.wakeP50), us(l.wakeP99), l.state])
        }
        var widths = [Int](repeating: 0, count: out[0].count)
        for row in out { for (i, c) in row.enumerated() { widths[i] = max(widths[i], c.count) } }
        return out.map { row in
            row.enumerated().map { i, c in
                // Names left-aligned, numbers right-aligned.
                let pad = String(repeating: " ", count: widths[i] - c.count)
                return (i <= 1 || i == row.count - 1) ? c + pad : pad + c
            }.joined(separator: "  ").trimmingTrailingSpaces()
        }.joined(separator: "\n")
    }

    /// Machine-readable cumulative counters, one vCPU per line (`sched stats raw`):
    /// `vcpu <id> pool=<p> vm=<name> index=<i> time=<pool ns> cpu=<ns> run=<ns> ready=<ns> ent=<pct> shares=<n> min=<pct> max=<pct> state=<s>`
    /// (cpu: the vCPU thread's CPU time; run: wall time holding a slot; ready: wall time
    /// runnable without one; wakes, wake50, wake99: the VM's wake-ups and wake-to-run
    /// latency percentiles in ns, when it has woken).
    package static func rawLines(_ pools: [PoolSnapshot]) -> [String] {
        pools.flatMap { p in
            p.vcpus.map { r in
                "vcpu \(r.vcpu) pool=\(r.pool) vm=\(r.vm) index=\(r.vcpuIndex) time=\(p.time) cpu=\(r.cpuNanoseconds) run=\(r.runNanoseconds) ready=\(r.readyNanoseconds) ent=\((r.entitlementPercent * 100).rounded() / 100) shares=\(r.params.shares) min=\(r.params.minPercent) max=\(r.params.maxPercent) state=\(r.state) grants=\(r.grants) wakes=\(r.wakeups)" +
                    (r.wakeP50Nanoseconds.map { " wake50=\($0)" } ?? "") + (r.wakeP99Nanoseconds.map { " wake99=\($0)" } ?? "")
            }
        }
    }

    /// One parsed `rawLines` line.
    package struct RawRow: Sendable, Equatable {
        package var vcpu: Int32
        package var fields: [String: String]
        package func number(_ key: String) -> Double? { fields[key].flatMap(Double.init) }
    }

    package static func parseRaw(_ text: String) -> [RawRow] {
        text.split(separator: "\n").compactMap { line in
            let words = line.split(separator: " ")
            guard words.count >= 2, words[0] == "vcpu", let id = Int32(words[1]) else { return nil }
            var fields: [String: String] = [:]
            for w in words.dropFirst(2) {
                guard let eq = w.firstIndex(of: "=") else { continue }
                fields[String(w[..<eq])] = String(w[w.index(after: eq)...])
            }
            return RawRow(vcpu: id, fields: fields)
        }
    }
}

fileprivate extension String {
    func trimmingTrailingSpaces() -> String {
        var s = self
        while s.last == " " { s.removeLast() }
        return s
    }
}
