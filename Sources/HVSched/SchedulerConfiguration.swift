import HVSupport

/// The host's pCPU slots and pools, from `hvhost run --pcpus SPEC --pool NAME:SLOTS[:POLICY]`.
///
/// - `--pcpus host` gives one slot per online host CPU, pinned to it, ordered package,
///   core, thread (from sysfs, ``HostTopology``);
/// - `--pcpus N` gives N slots, not pinned; `--pcpus N@LIST` pins slot i to the i-th host
///   CPU of LIST (e.g. `2@0-1`, `1@1`). Default: one slot per host CPU, not pinned.
/// - `--pool default:0-1:propshare` makes pool "default" of slots 0 and 1 run the
///   `propshare` policy; without a policy (or with `fallback`) the pool runs the
///   built-in fallback. Default: one pool "default" with every slot and the fallback.
///   A slot belongs to at most one pool.
package struct SchedulerConfiguration: Equatable, Sendable {
    package struct Slot: Equatable, Sendable {
        package var index: Int
        package var hostCPU: Int?
        package init(index: Int, hostCPU: Int?) {
            self.index = index
            self.hostCPU = hostCPU
        }
    }

    package struct Pool: Equatable, Sendable {
        package var name: String
        package var slots: [Int]
        /// Nil: the built-in fallback.
        var policy: String?
        package init(name: String, slots: [Int], policy: String?) {
            self.name = name
            self.slots = slots
            self.policy = policy
        }
    }

    package static let defaultPoolName = "default"

    package var slots: [Slot]
    package var pools: [Pool]
    /// How long a runnable vCPU may go without a slot before the watchdog acts.
    package var watchdogNanoseconds: UInt64 = 2_000_000_000
    /// How long one call into a plugin policy may run before it is abandoned and the
    /// pool switches to the fallback (`--sched-call-deadline-ms`).
    package var policyCallDeadlineNanoseconds: UInt64 = 250_000_000
    /// Where pinned slots sit (handed to policies); nil: read from /sys when the scheduler starts.
    package var hostTopology: HostTopology?

    package init(slots: [Slot], pools: [Pool]) {
        self.slots = slots
        self.pools = pools
    }

    /// One unpinned slot per host CPU, all in pool "default" with the fallback.
    static func standard(hostCPUs: Int = HostThread.hostCPUCount) -> SchedulerConfiguration {
        let n = max(1, min(hostCPUs, 64))
        return SchedulerConfiguration(slots: (0..<n).map { Slot(index: $0, hostCPU: nil) },
                                      pools: [Pool(name: defaultPoolName, slots: Array(0..<n), policy: nil)])
    }

    struct ParseError: Error, CustomStringConvertible, Sendable {
        let message: String
        var description: String { message }
    }

    /// Parses the flags; `hostCPUs` bounds pinning.
    package static func parse(pcpus: String?, pools poolSpecs: [String], defaultPolicy: String? = nil,
                             hostCPUs: Int = HostThread.hostCPUCount, sysfsRoot: String = "/sys") throws -> SchedulerConfiguration {
        func fail(_ s: String) -> ParseError { ParseError(message: s) }
        var slots: [Slot]
        if pcpus == "host" {
            // One slot per online host CPU, pinned, SMT siblings side by side.
            let topology: HostTopology
            do { topology = try HostTopology.read(sysfsRoot: sysfsRoot) } catch {
                throw fail("--pcpus host: cannot read the host topology: \(error)")
            }
            slots = topology.slotOrder.prefix(64).enumerated().map { Slot(index: $0, hostCPU: $1) }
        } else if let spec = pcpus {
            let parts = spec.split(separator: "@", maxSplits: 1).map(String.init)
            guard let n = Int(parts[0].trimmingSpaces), (1...64).contains(n) else {
                throw fail("--pcpus \(spec): expected a slot count 1...64, optionally @host-CPU list (\"2\", \"2@0-1\", \"1@1\")")
            }
            if parts.count == 2 {
                guard let cpus = parseList(parts[1]), !cpus.isEmpty else {
                    throw fail("--pcpus \(spec): '\(parts[1])' is not a host CPU list such as \"0-1\" or \"0,2\"")
                }
                if let bad = cpus.first(where: { $0 >= hostCPUs }) {
                    throw fail("--pcpus \(spec): host CPU \(bad) does not exist (this host has \(hostCPUs): 0-\(hostCPUs - 1))")
                }
                slots = (0..<n).map { Slot(index: $0, hostCPU: cpus[$0 % cpus.count]) }
            } else {
                slots = (0..<n).map { Slot(index: $0, hostCPU: nil) }
            }
        } else {
            slots = standard(hostCPUs: hostCPUs).slots
        }
        var pools: [Pool] = []
        var owner: [Int: String] = [:]
        for spec in poolSpecs {
            let parts = spec.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            guard (2...3).contains(parts.count) else {
                throw fail("--pool \(spec): expected NAME:SLOTS[:POLICY], e.g. default:0-1:propshare")
            }
            let name = parts[0]
            guard !name.isEmpty, name.utf8.count <= 64,
                  name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." }) else {
                throw fail("--pool \(spec): the pool name '\(name)' must be 1-64 letters, digits, '-', '_' or '.'")
            }
            guard !pools.contains(where: { $0.name == name }) else { throw fail("--pool \(spec): pool '\(name)' is defined twice") }
            guard let list = parts[1] == "all" ? Array(slots.indices) : parseList(parts[1]), !list.isEmpty else {
                throw fail("--pool \(spec): '\(parts[1])' is not a slot list such as \"0-1\", \"0,2\" or \"all\"")
            }
            for s in list {
                guard s < slots.count else {
                    throw fail("--pool \(spec): slot \(s) does not exist (\(slots.count) pCPU slot\(slots.count == 1 ? "" : "s"): 0-\(slots.count - 1); see --pcpus)")
                }
                if let other = owner[s] { throw fail("--pool \(spec): slot \(s) is already in pool '\(other)'") }
                owner[s] = name
            }
            let policy = parts.count == 3 && !parts[2].isEmpty ? parts[2] : nil
            pools.append(Pool(name: name, slots: list, policy: policy))
        }
        if pools.isEmpty {
            pools = [Pool(name: defaultPoolName, slots: Array(slots.indices), policy: defaultPolicy)]
        }
        return SchedulerConfiguration(slots: slots, pools: pools)
    }

    /// [0, 1, 2, 5] → "0-2,5" (the inverse of ``parseList(_:)``).
    static func formatList(_ list: [Int]) -> String {
        var parts: [String] = []
        var i = 0
        let l = Array(Set(list)).sorted()
        while i < l.count {
            var j = i
            while j + 1 < l.count && l[j + 1] == l[j] + 1 { j += 1 }
            parts.append(j == i ? "\(l[i])" : "\(l[i])-\(l[j])")
            i = j + 1
        }
        return parts.joined(separator: ",")
    }

    /// "0-2,5" → [0, 1, 2, 5] (sorted, distinct); nil when malformed.
    static func parseList(_ text: String) -> [Int]? {
        var out = Set<Int>()
        for part in text.split(separator: ",") {
            let bounds = part.split(separator: "-", maxSplits: 1).map { Int($0.trimmingSpaces) }
            guard !bounds.contains(where: { $0 == nil }) else { return nil }
            let lo = bounds[0]!, hi = bounds.count == 2 ? bounds[1]! : lo
            guard lo >= 0, hi >= lo, hi < 1024 else { return nil }
            out.formUnion(lo...hi)
        }
        return out.isEmpty ? nil : out.sorted()
    }
}

private extension Substring {
    var trimmingSpaces: String { String(self).trimmingSpaces }
}

private extension String {
    var trimmingSpaces: String {
        var s = Substring(self)
        while s.first == " " { s.removeFirst() }
        while s.last == " " { s.removeLast() }
        return String(s)
    }
}
