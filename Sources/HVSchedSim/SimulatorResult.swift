import HVSched

/// What a simulation measured: per-window entitlement vs achieved share of every VM,
/// and per-VM and pool-wide summaries. Percentages are of the pool's capacity
/// (pCPUs × duration), so a 1-pCPU 1000:2000:1000 split reads 25/50/25.
package struct SchedSimResult: Sendable {
    struct WindowRow: Equatable, Sendable {
        var start: UInt64
        var end: UInt64
        /// Index into `scenario.vms`.
        var vm: Int
        var entitledPercent: Double
        var achievedPercent: Double
        /// Largest pairwise fairness error (quanta) sampled in the window among pairs
        /// involving this VM; nil when it had no eligible pair.
        var maxPairErrorQuanta: Double?
    }

    struct VMSummary: Equatable, Sendable {
        var name: String
        var vcpus: Int
        /// The VM's total shares (named levels × vCPUs, or the number given).
        var shares: UInt32
        var minPercent: Int
        var maxPercent: Int
        var htSharing: String
        var affinity: String
        var workload: String
        var entitledPercent: Double
        var achievedPercent: Double
        /// Achieved − entitled, percentage points.
        var errorPercent: Double { achievedPercent - entitledPercent }
        var maxPairErrorQuanta: Double?
        var wakeups: Int
        var wakeP50: UInt64?
        var wakeP90: UInt64?
        var wakeP99: UInt64?
        var wakeMax: UInt64?
        /// Longest time one of its vCPUs was runnable without running, ns.
        var maxWait: UInt64
        /// 2-vCPU VMs: largest co-scheduling skew (since both last ran or either
        /// halted; ESX 2.x strict), ns.
        var maxSkew: UInt64?
        /// 2-vCPU VMs: largest progress difference while both were runnable (since
        /// either last halted; what relaxed co-scheduling bounds), ns.
        var maxDrift: UInt64?
    }

    struct Counters: Equatable, Sendable {
        var picks: UInt64 = 0
        var idlePicks: UInt64 = 0
        /// Running vCPUs stopped before their slice ended at the policy's `preempt`.
        var wakePreemptions: UInt64 = 0
        /// Picks the host would have refused (and replaced the policy for).
        var invalidPicks: UInt64 = 0
        /// Of those, picks outside the vCPU's affinity mask.
        var affinityViolations: UInt64 = 0
        /// Time a core ran two vCPUs that htsharing forbids together.
        var htViolationNs: UInt64 = 0
        var busyNs: UInt64 = 0
        var idleNs: UInt64 = 0
        var pairSamples: UInt64 = 0
        var maxPairErrorQuanta: Double?
    }

    package var policy: String
    /// The policy's `dump` at the end, when it has one.
    var policyState: String?
    var scenario: SchedSimScenario
    package var seed: UInt64
    var vms: [VMSummary]
    var windows: [WindowRow]
    var counters: Counters
    /// The first invalid picks, described.
    package var problems: [String]
    /// Picks the host would have refused (`hvhost plugin-check` fails a policy on any).
    package var invalidPickCount: UInt64 { counters.invalidPicks }

    var idlePercent: Double {
        let total = Double(counters.busyNs + counters.idleNs)
        return total > 0 ? Double(counters.idleNs) / total * 100 : 0
    }

    /// The largest co-scheduling skew of any 2-vCPU VM, ns.
    var maxSkew: UInt64? { vms.compactMap(\.maxSkew).max() }
    /// The largest progress drift of any 2-vCPU VM, ns.
    var maxDrift: UInt64? { vms.compactMap(\.maxDrift).max() }

    // MARK: CSV

    /// One row per window and VM: `time_s,vm,entitled_pct,achieved_pct,max_pair_error_q`
    /// (time = window end; the error column is empty without an eligible pair).
    package func timeSeriesCSV() -> String {
        var out = "time_s,vm,entitled_pct,achieved_pct,max_pair_error_q\n"
        for w in windows {
            out += SchedSimFormat.fixed(Double(w.end) / 1e9, 3) + ","
            out += SchedSimFormat.csv(scenario.vms[w.vm].name) + ","
            out += SchedSimFormat.fixed(w.entitledPercent, 3) + ","
            out += SchedSimFormat.fixed(w.achievedPercent, 3) + ","
            out += (w.maxPairErrorQuanta.map { SchedSimFormat.fixed($0, 3) } ?? "") + "\n"
        }
        return out
    }

    /// Per-VM rows, a blank line, then `metric,value` rows for the pool.
    package func summaryCSV() -> String {
        var out = "vm,vcpus,shares,min_pct,max_pct,htsharing,affinity,workload,entitled_pct,achieved_pct,error_pct,"
        out += "max_pair_error_q,wakeups,wake_p50_us,wake_p90_us,wake_p99_us,wake_max_us,max_wait_ms,max_skew_us,max_drift_us\n"
        func us(_ ns: UInt64?) -> String { ns.map { SchedSimFormat.fixed(Double($0) / 1e3, 1) } ?? "" }
        for v in vms {
            let fields: [String] = [
                SchedSimFormat.csv(v.name), String(v.vcpus), String(v.shares), String(v.minPercent),
                String(v.maxPercent), v.htSharing, SchedSimFormat.csv(v.affinity), SchedSimFormat.csv(v.workload),
                SchedSimFormat.fixed(v.entitledPercent, 3), SchedSimFormat.fixed(v.achievedPercent, 3),
                SchedSimFormat.fixed(v.errorPercent, 3),
                v.maxPairErrorQuanta.map { SchedSimFormat.fixed($0, 3) } ?? "",
                String(v.wakeups), us(v.wakeP50), us(v.wakeP90), us(v.wakeP99), us(v.wakeMax),
                SchedSimFormat.fixed(Double(v.maxWait) / 1e6, 3), us(v.maxSkew), us(v.maxDrift),
            ]
            out += fields.joined(separator: ",") + "\n"
        }
        out += "\nmetric,value\n"
        for (k, v) in metrics { out += "\(k),\(SchedSimFormat.csv(v))\n" }
        return out
    }

    /// Pool-wide figures, in a fixed order.
    var metrics: [(String, String)] {
        [
            ("policy", policy),
            ("scenario", scenario.name),
            ("seed", String(seed)),
            ("pcpus", String(scenario.pcpus)),
            ("duration_ms", SchedSimFormat.fixed(Double(scenario.duration) / 1e6, 3)),
            ("quantum_ms", SchedSimFormat.fixed(Double(scenario.quantum) / 1e6, 3)),
            ("idle_pct", SchedSimFormat.fixed(idlePercent, 3)),
            ("picks", String(counters.picks)),
            ("idle_picks", String(counters.idlePicks)),
            ("invalid_picks", String(counters.invalidPicks)),
            ("affinity_violations", String(counters.affinityViolations)),
            ("ht_violation_ms", SchedSimFormat.fixed(Double(counters.htViolationNs) / 1e6, 3)),
            ("pair_samples", String(counters.pairSamples)),
            ("max_pair_error_q", counters.maxPairErrorQuanta.map { SchedSimFormat.fixed($0, 3) } ?? ""),
            ("max_skew_us", maxSkew.map { SchedSimFormat.fixed(Double($0) / 1e3, 1) } ?? ""),
            ("max_drift_us", maxDrift.map { SchedSimFormat.fixed(Double($0) / 1e3, 1) } ?? ""),
        ]
    }

    // MARK: Text

    /// The table `hvhost sched-sim` prints.
    package func summaryTable() -> String {
        let header = ["VM", "VCPUS", "SHARES", "MIN%", "MAX%", "ENTITLED%", "ACHIEVED%", "ERROR", "PAIR-ERR(q)",
                      "WAKE-P99", "MAX-WAIT"]
        var rows: [[String]] = [header]
        for v in vms {
            rows.append([
                v.name, String(v.vcpus), String(v.shares), String(v.minPercent), String(v.maxPercent),
                SchedSimFormat.fixed(v.entitledPercent, 2), SchedSimFormat.fixed(v.achievedPercent, 2),
                (v.errorPercent >= 0 ? "+" : "") + SchedSimFormat.fixed(v.errorPercent, 2),
                v.maxPairErrorQuanta.map { SchedSimFormat.fixed($0, 3) } ?? "-",
                v.wakeP99.map { SchedSimFormat.fixed(Double($0) / 1e6, 2) + "ms" } ?? "-",
                SchedSimFormat.fixed(Double(v.maxWait) / 1e6, 1) + "ms",
            ])
        }
        var widths = Array(repeating: 0, count: header.count)
        for r in rows { for (c, f) in r.enumerated() { widths[c] = max(widths[c], f.count) } }
        var out = "policy \(policy), scenario \(scenario.name), seed \(seed), \(scenario.pcpus) pCPU"
        out += (scenario.pcpus == 1 ? "" : "s") + ", \(SchedSimScenario.formatDuration(scenario.duration))"
        out += " (percentages of the pool; error = achieved - entitled, points)\n"
        for r in rows {
            var line = ""
            for (c, f) in r.enumerated() {
                let pad = String(repeating: " ", count: widths[c] - f.count)
                line += c == 0 ? f + pad : pad + f
                if c < r.count - 1 { line += "  " }
            }
            out += line + "\n"
        }
        out += "idle \(SchedSimFormat.fixed(idlePercent, 2))%, picks \(counters.picks) (idle \(counters.idlePicks))"
        out += ", invalid picks \(counters.invalidPicks), affinity violations \(counters.affinityViolations)"
        out += ", htsharing violations \(SchedSimFormat.fixed(Double(counters.htViolationNs) / 1e6, 3)) ms"
        if let e = counters.maxPairErrorQuanta {
            out += ", max pairwise error \(SchedSimFormat.fixed(e, 3)) quanta of \(SchedSimScenario.formatDuration(scenario.quantum))"
        }
        if let s = maxSkew { out += ", max skew \(SchedSimFormat.fixed(Double(s) / 1e3, 1)) us" }
        if let d = maxDrift { out += ", max drift \(SchedSimFormat.fixed(Double(d) / 1e3, 1)) us" }
        out += "\n"
        for p in problems { out += "  invalid: \(p)\n" }
        if let st = policyState { out += "policy state: \(st)\n" }
        return out
    }
}
