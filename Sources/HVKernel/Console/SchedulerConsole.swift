import HVSched
import HVSupport

/// Console commands for the CPU scheduler:
/// `sched pools`, `sched policy <pool> <policy>`, `sched set <vm> shares=… min=… max=…`,
/// `sched stats [raw]`, `sched tune <pool> [<key> <value>]`, `sched cmd <pool> <command> [args…]`.
extension ServiceConsole {
    package func registerSchedCommands(_ scheduler: Scheduler, policyNames: @escaping () -> [String] = { [] }) {
        let usage = "sched pools | sched policy <pool> <policy> | sched set <vm> [shares=low|normal|high|N] [min=PCT] [max=PCT] | sched stats [raw] | sched tune <pool> [<key> <value>] | sched cmd <pool> <command> [args...]"
        register("sched", summary: usage) { args in
            switch args.first {
            case "pools":
                return SchedulerConsoleText.pools(scheduler.snapshots(), available: policyNames())
            case "policy":
                guard args.count == 3 else { throw CommandError("usage: sched policy <pool> <policy>") }
                try scheduler.replacePolicy(pool: args[1], with: args[2])
                guard let pool = scheduler.pool(named: args[1]) else { return "" }
                return "pool '\(args[1])': now running policy '\(pool.policyName)' (\(pool.policyOrigin))"
            case "set":
                guard args.count >= 3 else {
                    throw CommandError("usage: sched set <vm> [shares=low|normal|high|N] [min=PCT] [max=PCT]")
                }
                var shares: ShareAllocation?
                var minPct: Int?, maxPct: Int?
                for word in args.dropFirst(2) {
                    let kv = word.split(separator: "=", maxSplits: 1).map(String.init)
                    guard kv.count == 2 else { throw CommandError("'\(word)': expected key=value (shares=, min=, max=)") }
                    let value = kv[1].hasSuffix("%") ? String(kv[1].dropLast()) : kv[1]
                    switch kv[0].lowercased() {
                    case "shares":
                        switch value.lowercased() {
                        case "low": shares = .low
                        case "normal": shares = .normal
                        case "high": shares = .high
                        default:
                            guard let n = UInt32(value), n > 0 else {
                                throw CommandError("shares=\(kv[1]): expected low, normal, high or a positive number")
                            }
                            shares = .custom(n)
                        }
                    case "min":
                        guard let n = Int(value) else { throw CommandError("min=\(kv[1]): expected a percentage 0...100") }
                        minPct = n
                    case "max":
                        guard let n = Int(value) else { throw CommandError("max=\(kv[1]): expected a percentage 1...100") }
                        maxPct = n
                    default:
                        throw CommandError("'\(kv[0])': expected shares=, min= or max=")
                    }
                }
                let p = try scheduler.setParameters(vm: args[1], shares: shares, minPercent: minPct, maxPercent: maxPct)
                return "\(args[1]): \(p) per vCPU"
            case "tune":
                // The policy's tunables, typed and range-checked, called through libffi.
                guard args.count == 2 || args.count == 4 else { throw CommandError("usage: sched tune <pool> [<key> <value>]") }
                guard args.count == 4 else {
                    guard let pool = scheduler.pool(named: args[1]) else { throw CommandError("no scheduler pool '\(args[1])'") }
                    return pool.policyCommandListing
                }
                return try scheduler.policyCommand(pool: args[1], args[2], words: [args[3]], tunable: true)
            case "cmd":
                guard args.count >= 3 else { throw CommandError("usage: sched cmd <pool> <command> [args...]") }
                return try scheduler.policyCommand(pool: args[1], args[2], words: Array(args.dropFirst(3)), tunable: false)
            case "stats":
                let snaps = scheduler.snapshots()
                if args.count > 1, args[1] == "raw" { return VCPUStats.rawLines(snaps).joined(separator: "\n") }
                let lines = VCPUStats.vmLines(snaps.flatMap(\.vcpus))
                return VCPUStats.table(lines)
            default:
                throw CommandError("usage: " + usage)
            }
        }
    }
}

/// Text for `sched pools`.
enum SchedulerConsoleText {
    static func pools(_ snaps: [PoolSnapshot], available: [String]) -> String {
        var lines = ["POOL\tSLOTS\tHOSTCPUS\tPOLICY\tFROM\tVCPUS\tRUNNING\tIDLE_MS\tDECISIONS\tHANDOFFS\tHANDOFF_AVG_US\tPREEMPT_AVG_US\tFALLBACKS"]
        for p in snaps {
            let slots = p.slots.map { String($0.index) }.joined(separator: ",")
            let cpus = p.slots.map { $0.hostCPU.map(String.init) ?? "any" }.joined(separator: ",")
            let running = p.slots.map { $0.holder ?? "-" }.joined(separator: ",")
            let c = p.counters
            func us(_ total: UInt64, _ n: UInt64) -> String {
                n == 0 ? "-" : String((Double(total) / Double(n) / 100).rounded() / 10)
            }
            let idle = p.slots.map { String($0.idleNanoseconds / 1_000_000) }.joined(separator: ",")
            lines.append("\(p.name)\t\(slots)\t\(cpus)\t\(p.policy)\t\(p.policyOrigin)\t\(p.vcpus.count)\t\(running)\t\(idle)\t\(c.decisions)\t\(c.handoffs)\t\(us(c.handoffTotal, c.handoffs))\t\(us(c.preemptLatencyTotal, c.preemptions))\t\(c.fallbackSwitches)")
            if let d = p.policyDump { lines.append("  \(p.name): \(d)") }
            for e in p.fallbackEvents { lines.append("  \(e)") }
        }
        if !available.isEmpty { lines.append("policies: fallback, " + available.joined(separator: ", ")) }
        return lines.joined(separator: "\n")
    }
}
