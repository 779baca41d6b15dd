import HVSched

/// A scheduler-simulation scenario: pCPUs, VMs with their `sched.cpu.*` parameters and
/// synthetic workloads, arrivals, departures and run-time parameter changes, all in
/// virtual time. Parsed from the line format documented in
/// `Plugins/SchedPolicies/scenarios/README.md`:
///
/// ```
/// # 1000:2000:1000 on one pCPU
/// pcpus 1
/// duration 20s
/// vm A shares=1000
/// vm B shares=2000
/// vm C shares=1000 workload=io run=2ms sleep=8ms dist=exp arrive=5s leave=15s
/// at 10s set B shares=500 max=50
/// ```
package struct SchedSimScenario: Equatable, Sendable {
    /// Where the scenario came from (file name), for messages and chart titles.
    var name: String
    var title: String?
    package var pcpus: Int = 1
    var duration: UInt64 = 10_000_000_000
    /// Length of a time-series window (entitlement vs achieved share).
    var window: UInt64 = 1_000_000_000
    /// How often the pairwise fairness error is sampled.
    var tick: UInt64 = 1_000_000
    /// The unit of the fairness error; set it to the policy's slice (propshare 10 ms).
    var quantum: UInt64 = 10_000_000
    package var seed: UInt64?
    package var policy: String?
    var vms: [VM] = []
    var changes: [Change] = []
    /// The run bursts of every vCPU of `.recorded` VMs, by vCPU in VM order (a replayed
    /// recording's demand); empty otherwise.
    var recordedBursts: [[RecordedBurst]] = []

    init(name: String) { self.name = name }

    /// A synthetic guest load for each vCPU of a VM.
    enum Workload: Equatable, Sendable, CustomStringConvertible {
        /// Always runnable.
        case cpu
        /// Runs `run` ns of CPU, sleeps `sleep` ns, again; both drawn from `dist`.
        case io(run: UInt64, sleep: UInt64, dist: Distribution)
        /// Each vCPU runs and sleeps as a live run recorded it (``recordedBursts``);
        /// `demand` is the fraction of one pCPU it asked for there.
        case recorded(demand: Double)

        var description: String {
            switch self {
            case .cpu: "cpu"
            case let .io(run, sleep, dist): "io \(SchedSimScenario.formatDuration(run))/\(SchedSimScenario.formatDuration(sleep)) \(dist)"
            case let .recorded(demand): "recorded \(SchedSimFormat.fixed(demand * 100, 1))%"
            }
        }

        /// Whether its vCPUs block between bursts.
        var hasBursts: Bool { if case .cpu = self { false } else { true } }

        /// Fraction of one pCPU the workload asks for (its demand), 0...1.
        var demand: Double {
            switch self {
            case .cpu: 1
            case let .io(run, sleep, _): Double(run) / Double(run + sleep)
            case let .recorded(demand): demand
            }
        }
    }

    /// How each run or sleep length is drawn around its mean.
    enum Distribution: String, Equatable, Sendable, CaseIterable, CustomStringConvertible {
        /// Exactly the mean.
        case fixed
        /// Uniform in [mean/2, 3·mean/2).
        case uniform
        /// Exponential with that mean.
        case exp

        var description: String { rawValue }
    }

    struct VM: Equatable, Sendable {
        var name: String
        var vcpus: Int = 1
        var cpu = CPUSchedulingParameters()
        var workload: Workload = .cpu
        var arrive: UInt64 = 0
        /// Nil: stays to the end.
        var leave: UInt64?
        /// Scenario line, for messages.
        var line: Int

        init(name: String, line: Int) {
            self.name = name
            self.line = line
        }

        /// `hv_sched_params` of each of its vCPUs, for a pool of `pcpus`.
        var params: SchedulerParams {
            SchedulerParams(shares: cpu.sharesPerVCPU(vcpus: vcpus), minPercent: UInt32(cpu.minPercent),
                            maxPercent: UInt32(cpu.maxPercent), htSharing: cpu.htSharing, affinity: cpu.affinity.mask)
        }
    }

    /// One burst of a recorded vCPU: `run` ns of CPU (`.max`: runnable to the end), then
    /// blocked for `sleep` ns (`.max`: for good).
    struct RecordedBurst: Equatable, Sendable {
        var run: UInt64
        var sleep: UInt64
    }

    /// `at TIME set VM key=value...`: new parameters for every vCPU of a VM.
    struct Change: Equatable, Sendable {
        var time: UInt64
        var vm: String
        var cpu: CPUSchedulingParameters
        var line: Int
    }
}

/// A scenario line that could not be used: `file:line: message`.
struct SchedSimScenarioError: Error, CustomStringConvertible, Sendable, Equatable {
    var file: String
    var line: Int
    var message: String

    var description: String { line > 0 ? "\(file):\(line): \(message)" : "\(file): \(message)" }
}

extension SchedSimScenario {
    /// Parses the scenario text; `name` labels messages (usually the file name).
    static func parse(_ text: String, name: String) throws(SchedSimScenarioError) -> SchedSimScenario {
        var s = SchedSimScenario(name: name)
        var lineNo = 0
        func fail(_ msg: String) -> SchedSimScenarioError { SchedSimScenarioError(file: name, line: lineNo, message: msg) }

        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNo += 1
            var line = Substring(raw)
            if let hash = line.firstIndex(of: "#") { line = line[..<hash] }
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" }).map(String.init)
            guard let keyword = words.first?.lowercased() else { continue }
            let args = Array(words.dropFirst())
            func single() throws(SchedSimScenarioError) -> String {
                guard args.count == 1 else { throw fail("'\(keyword)' takes one value, e.g. '\(keyword) \(example(keyword))'") }
                return args[0]
            }
            switch keyword {
            case "pcpus":
                guard let n = Int(try single()), (1...64).contains(n) else {
                    throw fail("pcpus must be a number of pCPUs from 1 to 64")
                }
                s.pcpus = n
            case "duration", "window", "tick", "quantum":
                let v = try single()
                guard let d = parseDuration(v), d > 0 else {
                    throw fail("\(keyword) '\(v)' is not a positive duration (e.g. 10s, 500ms, 250us, 1000ns)")
                }
                switch keyword {
                case "duration": s.duration = d
                case "window": s.window = d
                case "tick": s.tick = d
                default: s.quantum = d
                }
            case "seed":
                guard let n = UInt64(try single()) else { throw fail("seed must be a non-negative integer") }
                s.seed = n
            case "policy":
                s.policy = try single()
            case "title":
                guard !args.isEmpty else { throw fail("title needs text") }
                s.title = args.joined(separator: " ").trimmingQuotes()
            case "vm":
                guard let vmName = args.first, !vmName.contains("=") else {
                    throw fail("'vm' needs a name first, e.g. 'vm web shares=high'")
                }
                guard vmName.allSatisfy({ $0.isLetter || $0.isNumber || "_-.".contains($0) }), vmName.count <= 32 else {
                    throw fail("VM name '\(vmName)' must be 1..32 letters, digits, '_', '-' or '.'")
                }
                guard !s.vms.contains(where: { $0.name == vmName }) else {
                    throw fail("VM '\(vmName)' is defined twice")
                }
                var vm = VM(name: vmName, line: lineNo)
                var run: UInt64?, sleep: UInt64?, dist = Distribution.exp, kind = "cpu"
                for kv in args.dropFirst() {
                    let (k, v) = try keyValue(kv, fail: fail)
                    switch k {
                    case "vcpus":
                        guard let n = Int(v), (1...64).contains(n) else { throw fail("vcpus must be 1..64") }
                        vm.vcpus = n
                    case "workload":
                        guard v == "cpu" || v == "io" else { throw fail("workload must be 'cpu' or 'io', not '\(v)'") }
                        kind = v
                    case "run", "sleep":
                        guard let d = parseDuration(v), d > 0 else { throw fail("\(k) '\(v)' is not a positive duration") }
                        if k == "run" { run = d } else { sleep = d }
                    case "dist":
                        guard let d = Distribution(rawValue: v) else {
                            throw fail("dist must be one of \(Distribution.allCases.map(\.rawValue).joined(separator: ", "))")
                        }
                        dist = d
                    case "arrive", "leave":
                        guard let d = parseDuration(v) else { throw fail("\(k) '\(v)' is not a time (e.g. 5s)") }
                        if k == "arrive" { vm.arrive = d } else { vm.leave = d }
                    default:
                        guard try applyCPU(k, v, to: &vm.cpu, fail: fail) else {
                            throw fail("unknown key '\(k)' (vm keys: vcpus, shares, min, max, affinity, htsharing, workload, run, sleep, dist, arrive, leave)")
                        }
                    }
                }
                if kind == "io" {
                    guard let run, let sleep else { throw fail("workload=io needs run=DURATION and sleep=DURATION") }
                    vm.workload = .io(run: run, sleep: sleep, dist: dist)
                } else if run != nil || sleep != nil {
                    throw fail("run= and sleep= need workload=io")
                }
                if let leave = vm.leave, leave <= vm.arrive {
                    throw fail("VM '\(vmName)' leaves (\(formatDuration(leave))) before it arrives (\(formatDuration(vm.arrive)))")
                }
                try checkCPU(vm.cpu, pcpus: s.pcpus, fail: fail)
                s.vms.append(vm)
            case "at":
                guard args.count >= 4, args[1].lowercased() == "set", let t = parseDuration(args[0]) else {
                    throw fail("expected 'at TIME set VM key=value...', e.g. 'at 10s set B shares=2000'")
                }
                guard let vm = s.vms.first(where: { $0.name == args[2] }) else {
                    throw fail("'at' names VM '\(args[2])', which is not defined above")
                }
                var cpu = s.changes.last(where: { $0.vm == vm.name })?.cpu ?? vm.cpu
                for kv in args.dropFirst(3) {
                    let (k, v) = try keyValue(kv, fail: fail)
                    guard try applyCPU(k, v, to: &cpu, fail: fail) else {
                        throw fail("'at ... set' changes shares, min, max, affinity or htsharing, not '\(k)'")
                    }
                }
                try checkCPU(cpu, pcpus: s.pcpus, fail: fail)
                s.changes.append(Change(time: t, vm: vm.name, cpu: cpu, line: lineNo))
            default:
                throw fail("unknown keyword '\(keyword)' (expected pcpus, duration, window, tick, quantum, seed, policy, title, vm or at)")
            }
        }
        lineNo = 0
        guard !s.vms.isEmpty else { throw fail("no 'vm' lines: a scenario needs at least one VM") }
        for vm in s.vms where vm.cpu.affinity.mask >> UInt64(s.pcpus) != 0 {
            throw SchedSimScenarioError(file: name, line: vm.line,
                                        message: "VM '\(vm.name)' has affinity to pCPUs beyond the \(s.pcpus) of this scenario")
        }
        for vm in s.vms where vm.arrive >= s.duration {
            throw SchedSimScenarioError(file: name, line: vm.line,
                                        message: "VM '\(vm.name)' arrives at \(formatDuration(vm.arrive)), after the scenario ends (duration \(formatDuration(s.duration)))")
        }
        s.changes.sort { $0.time < $1.time }
        return s
    }

    private static func example(_ keyword: String) -> String {
        switch keyword {
        case "pcpus": "2"
        case "seed": "42"
        case "policy": "propshare"
        case "duration": "30s"
        case "window": "1s"
        case "tick": "1ms"
        case "quantum": "10ms"
        default: "..."
        }
    }

    private static func keyValue(_ kv: String, fail: (String) -> SchedSimScenarioError) throws(SchedSimScenarioError)
        -> (String, String)
    {
        guard let eq = kv.firstIndex(of: "="), eq != kv.startIndex, kv.index(after: eq) != kv.endIndex else {
            throw fail("expected key=value, not '\(kv)'")
        }
        return (kv[..<eq].lowercased(), kv[kv.index(after: eq)...].lowercased())
    }

    /// Applies a `sched.cpu.*`-style key; false when `key` is not one.
    private static func applyCPU(_ key: String, _ v: String, to cpu: inout CPUSchedulingParameters,
                                 fail: (String) -> SchedSimScenarioError) throws(SchedSimScenarioError) -> Bool {
        switch key {
        case "shares":
            switch v {
            case "low": cpu.shares = .low
            case "normal": cpu.shares = .normal
            case "high": cpu.shares = .high
            default:
                guard let n = UInt32(v), n > 0 else { throw fail("shares must be low, normal, high or a positive number") }
                cpu.shares = .custom(n)
            }
        case "min", "max":
            let digits = v.hasSuffix("%") ? String(v.dropLast()) : v
            guard let n = Int(digits), (0...100).contains(n) else { throw fail("\(key) must be a percentage 0..100") }
            if key == "min" { cpu.minPercent = n } else { cpu.maxPercent = n }
        case "affinity":
            guard let a = parseAffinity(v) else {
                throw fail("affinity must be 'all' or pCPU numbers below 64, e.g. 0,1 or 0-3")
            }
            cpu.affinity = a
        case "htsharing":
            switch v {
            case "any": cpu.htSharing = .any
            case "internal": cpu.htSharing = .internal
            case "none": cpu.htSharing = .none
            default: throw fail("htsharing must be any, internal or none")
            }
        default:
            return false
        }
        return true
    }

    private static func checkCPU(_ cpu: CPUSchedulingParameters, pcpus: Int,
                                 fail: (String) -> SchedSimScenarioError) throws(SchedSimScenarioError) {
        guard cpu.maxPercent >= 1 else { throw fail("max must be 1..100 (100 = no limit)") }
        guard cpu.minPercent <= cpu.maxPercent else {
            throw fail("min (\(cpu.minPercent)%) is above max (\(cpu.maxPercent)%)")
        }
    }

    static func parseAffinity(_ v: String) -> CPUAffinity? {
        if v == "all" || v == "any" { return .all }
        var set = Set<Int>()
        for part in v.split(separator: ",", omittingEmptySubsequences: false) {
            let bounds = part.split(separator: "-", omittingEmptySubsequences: false)
            guard (1...2).contains(bounds.count), let lo = Int(bounds[0]), let hi = Int(bounds.last!),
                  lo >= 0, hi < 64, lo <= hi else { return nil }
            for c in lo...hi { set.insert(c) }
        }
        return set.isEmpty ? nil : .cpus(set.sorted())
    }

    /// "10s", "1.5s", "500ms", "250us", "1000ns" (a bare number is nanoseconds) → ns.
    static func parseDuration(_ text: String) -> UInt64? {
        let units: [(String, UInt64)] = [("ns", 1), ("us", 1_000), ("ms", 1_000_000), ("s", 1_000_000_000)]
        var number = Substring(text)
        var scale: UInt64 = 1
        for (suffix, s) in units where text.hasSuffix(suffix) {
            number = text.dropLast(suffix.count)
            scale = s
            break
        }
        guard !number.isEmpty else { return nil }
        let parts = number.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count <= 2, let whole = UInt64(parts[0].isEmpty ? "0" : parts[0]) else { return nil }
        var value = whole.multipliedReportingOverflow(by: scale)
        guard !value.overflow else { return nil }
        if parts.count == 2 {
            let frac = parts[1]
            guard !frac.isEmpty, frac.count <= 9, frac.allSatisfy(\.isNumber) else { return nil }
            var f = UInt64(frac)!
            var digits = frac.count
            // frac / 10^digits × scale, exactly when possible.
            var divisor: UInt64 = 1
            while digits > 0 { divisor *= 10; digits -= 1 }
            f = f * scale / divisor
            value = value.partialValue.addingReportingOverflow(f)
            guard !value.overflow else { return nil }
        }
        return value.partialValue
    }

    /// 10_000_000_000 → "10s", 2_500_000 → "2.5ms".
    static func formatDuration(_ ns: UInt64) -> String {
        let units: [(UInt64, String)] = [(1_000_000_000, "s"), (1_000_000, "ms"), (1_000, "us")]
        for (scale, suffix) in units where ns >= scale {
            let whole = ns / scale, frac = ns % scale
            if frac == 0 { return "\(whole)\(suffix)" }
            var f = String(frac)
            f = String(repeating: "0", count: String(scale).count - 1 - f.count) + f
            while f.hasSuffix("0") { f.removeLast() }
            return "\(whole).\(f)\(suffix)"
        }
        return "\(ns)ns"
    }
}

extension String {
    fileprivate func trimmingQuotes() -> String {
        var s = Substring(self)
        if s.hasPrefix("\""), s.hasSuffix("\""), s.count >= 2 { s = s.dropFirst().dropLast() }
        return String(s)
    }
}
