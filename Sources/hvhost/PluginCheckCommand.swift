import ArgumentParser
import Foundation
import HVPluginHost
import HVSched
import HVSchedSim
import Logging

/// `hvhost plugin-check PATH.so`: a plugin's conformance, tested without a guest.
///
/// The parent process loads nothing itself: every rule of every device model and
/// scheduler policy runs in a child (`hvhost plugin-check --child ...`), so a plugin that
/// crashes or hangs fails that rule only, with the signal or the call that hung named.
/// The child reports on standard output in lines `RESULT <status>\t<detail>`,
/// `SUBJECT <kind> <name>` (for the `entry` rule) and `HANG <call>`.
struct PluginCheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plugin-check",
        abstract: "Check a plugin library against the ABI's rules on a mock VM: conformance, leaks, reset, saved state, fuzzing, thread contract.",
        discussion: """
            Device rules: entry (the loader's validation), create, declarations, reset (registers after reset \
            equal a fresh instance's: every aligned 32-bit register of each I/O BAR and of the first 4 KiB of \
            each memory BAR), save-load (save, load into a fresh instance, save again: same bytes), \
            lifecycle-leak (RSS and open fds flat over --cycles), fuzz (--fuzz random BAR accesses over garbage \
            guest memory; a NIC also receives garbage frames), thread-contract (4 threads: a model without HV_DEVICE_THREAD_SAFE is never entered \
            twice at once). Policy rules: entry, declarations (tunable defaults accepted, commands callable), \
            lifecycle-leak, sched-sim (a built-in scenario under the simulator's pick validator). \
            Exit status: 0 when every rule passes or is skipped, 1 when one fails, 2 when the library cannot be checked.
            """)

    @Argument(help: ArgumentHelp("The plugin library.", valueName: "PATH.so"))
    var path: String

    @Flag(help: "Machine-readable output: one JSON object.")
    var json = false

    @Option(help: "Create/realize/reset/destroy (or init/deinit) cycles for lifecycle-leak.")
    var cycles = 1000

    @Option(help: "Random BAR accesses for fuzz.")
    var fuzz = 20000

    @Option(help: "Seed of the fuzzer and of the register scrambling.")
    var seed: UInt64 = 1

    @Option(help: ArgumentHelp("Per-call time limit in seconds (a call into the plugin that takes longer is a hang).", valueName: "s"))
    var callLimit = 5.0

    @Option(name: .customLong("rule"), help: ArgumentHelp("Run only this rule (repeatable; entry always runs).", valueName: "rule"))
    var onlyRules: [String] = []

    @Option(help: .hidden) var child: String?

    func run() throws {
        let absolute = ((path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path) as NSString).standardizingPath
        if let child { return try runChild(spec: child, path: absolute) }
        var report = Report(path: absolute)
        let entry = runInChild("entry", path: absolute)
        report.add(subject: "plugin", rule: "entry", entry.outcome)
        guard entry.outcome.status == .pass else {
            emit(report)
            throw ExitCode(2)
        }
        for subject in entry.subjects {
            let rules = subject.kind == "device" ? DeviceChecks.rules : PolicyChecks.rules
            for rule in rules where onlyRules.isEmpty || onlyRules.contains(rule) {
                let r = runInChild("\(subject.kind):\(subject.name):\(rule)", path: absolute)
                report.add(subject: "\(subject.kind) \(subject.name)", rule: rule, r.outcome)
            }
        }
        emit(report)
        if report.failed { throw ExitCode(1) }
    }

    // MARK: parent

    struct Subject { let kind: String; let name: String }

    /// Runs one rule in a child hvhost and reads its verdict; a child killed by a signal,
    /// hung past the call limit or silent fails the rule with what happened.
    private func runInChild(_ spec: String, path: String) -> (outcome: CheckOutcome, subjects: [Subject]) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: CommandLine.arguments[0].hasPrefix("/") ? CommandLine.arguments[0]
                                  : (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0])
        p.arguments = ["plugin-check", path, "--child", spec, "--cycles", String(cycles), "--fuzz", String(fuzz),
                       "--seed", String(seed), "--call-limit", String(callLimit)]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        do { try p.run() } catch { return (.fail("cannot start a child hvhost: \(error)"), []) }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let lines = String(decoding: data, as: UTF8.self).split(separator: "\n").map(String.init)
        var subjects: [Subject] = []
        var outcome: CheckOutcome?
        for line in lines {
            if line.hasPrefix("SUBJECT ") {
                let w = line.split(separator: " ", maxSplits: 2).map(String.init)
                if w.count == 3 { subjects.append(Subject(kind: w[1], name: w[2])) }
            } else if line.hasPrefix("RESULT ") {
                let body = line.dropFirst(7)
                let parts = body.split(separator: "\t", maxSplits: 1).map(String.init)
                let status = CheckOutcome.Status(rawValue: parts[0]) ?? .fail
                outcome = CheckOutcome(status: status, detail: parts.count > 1 ? parts[1] : "")
            } else if line.hasPrefix("HANG ") {
                outcome = .fail("hang: \(line.dropFirst(5))")
            }
        }
        if p.terminationReason == .uncaughtSignal {
            let sig = p.terminationStatus
            return (.fail("crashed with signal \(sig) (\(String(cString: strsignal(sig))))" +
                          (outcome.map { "; last: \($0.detail)" } ?? "")), subjects)
        }
        if let outcome { return (outcome, subjects) }
        return (.fail("the check exited with status \(p.terminationStatus) without a verdict"), subjects)
    }

    struct Report {
        let path: String
        var rows: [(subject: String, rule: String, outcome: CheckOutcome)] = []
        var failed: Bool { rows.contains { $0.outcome.status == .fail } }
        mutating func add(subject: String, rule: String, _ o: CheckOutcome) { rows.append((subject, rule, o)) }
    }

    private func emit(_ report: Report) {
        if json {
            let rows = report.rows.map { r -> [String: String] in
                ["subject": r.subject, "rule": r.rule, "status": r.outcome.status.rawValue, "detail": r.outcome.detail]
            }
            let object: [String: Any] = ["path": report.path, "passed": !report.failed, "checks": rows]
            if let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) {
                print(String(decoding: data, as: UTF8.self))
            }
            return
        }
        print("plugin-check \(report.path)")
        for r in report.rows {
            print("\(r.outcome.status.rawValue.uppercased())  \(r.subject): \(r.rule): \(r.outcome.detail)")
        }
        let failures = report.rows.filter { $0.outcome.status == .fail }.count
        print(failures == 0 ? "all \(report.rows.count) checks passed or were skipped" : "\(failures) of \(report.rows.count) checks failed")
    }

    // MARK: child

    private func say(_ line: String) {
        print(line)
        fflush(stdout)
    }

    private func verdict(_ o: CheckOutcome) {
        say("RESULT \(o.status.rawValue)\t\(o.detail.replacingOccurrences(of: "\n", with: " "))")
    }

    private func runChild(spec: String, path: String) throws {
        var logger = Logger(label: "plugin-check")
        logger.logLevel = .critical
        let plugin: LoadedPlugin
        do {
            plugin = try PluginLoader().load(path: path)
        } catch {
            verdict(.fail(error.description))
            return
        }
        if spec == "entry" {
            for m in plugin.deviceModels { say("SUBJECT device \(m.name)") }
            for p in plugin.schedPolicies { say("SUBJECT policy \(p.name)") }
            let what = plugin.deviceModels.map { "device model \($0.name) (\($0.kindName))" } +
                plugin.schedPolicies.map { "scheduler policy \($0.name)" }
            verdict(what.isEmpty ? .fail("\(plugin.id) offers no device model or scheduler policy this host runs")
                    : .pass("\(plugin.id) \(plugin.version), ABI \(plugin.abiString): " + what.joined(separator: ", ")))
            return
        }
        let parts = spec.split(separator: ":", maxSplits: 2).map(String.init)
        guard parts.count == 3 else { verdict(.fail("bad child spec \(spec)")); return }
        let watchdog = CallWatchdog(limitSeconds: callLimit)
        if parts[0] == "device", let model = plugin.deviceModels.first(where: { $0.name == parts[1] }) {
            let vm = try PluginCheckVM(logger: logger)
            var checks = DeviceChecks(model: model, pluginName: plugin.name, vm: vm, watchdog: watchdog)
            checks.cycles = cycles
            checks.fuzzOperations = fuzz
            checks.seed = seed
            verdict(checks.run(parts[2]))
        } else if parts[0] == "policy", let policy = plugin.schedPolicies.first(where: { $0.name == parts[1] }) {
            let checks = PolicyChecks(source: plugin.schedulerPolicySource(policy), declarations: policy.declarations,
                                      watchdog: watchdog, cycles: cycles, seed: seed)
            verdict(checks.run(parts[2]))
        } else {
            verdict(.fail("no \(parts[0]) '\(parts[1])' in \(path)"))
        }
    }
}

/// The rules for a scheduler policy (see PluginCheckCommand's discussion).
struct PolicyChecks {
    static let rules = ["declarations", "lifecycle-leak", "sched-sim"]

    let source: SchedulerPolicySource
    let declarations: PluginDeclarations
    let watchdog: CallWatchdog
    let cycles: Int
    let seed: UInt64

    /// Two CPU-bound VMs (shares 2:1, one capped), an I/O-bound one and a 2-vCPU VM with
    /// affinity, joining and leaving, on 2 pCPUs.
    static let scenario = """
        title plugin-check
        pcpus 2
        duration 4s
        window 1s
        quantum 10ms
        vm cpu1 shares=2000
        vm cpu2 shares=1000 max=60
        vm io workload=io run=2ms sleep=8ms dist=exp
        vm pair vcpus=2 affinity=0 arrive=1s leave=3s

        """

    func run(_ rule: String) -> CheckOutcome {
        do {
            switch rule {
            case "declarations": return try checkDeclarations()
            case "lifecycle-leak": return try lifecycleLeak()
            case "sched-sim": return try simulate()
            default: return .skip("no rule '\(rule)'")
            }
        } catch {
            return .fail("\(error)")
        }
    }

    private func checkDeclarations() throws -> CheckOutcome {
        guard !declarations.commands.isEmpty else { return .pass("declares no tunables or commands") }
        let policy = try watchdog.watch("init") { try source.instantiate(pcpuCount: 2) }
        defer { policy.shutdown() }
        var done: [String] = []
        for c in declarations.commands {
            if c.isTunable {
                guard let value = declarations.key(named: c.name)?.defaultValue else {
                    return .fail("tunable '\(c.name)' has no default value in its key declaration")
                }
                _ = try watchdog.watch("tunable \(c.name)") { try policy.runCommand(c.name, words: [value], tunable: true) }
                done.append("\(c.name)=\(value)")
            } else if c.wordArguments.isEmpty {
                _ = try watchdog.watch("command \(c.name)") { try policy.runCommand(c.name, words: [], tunable: false) }
                done.append(c.name)
            }
        }
        return .pass("\(declarations.keys.count) keys, \(declarations.commands.count) commands; accepted defaults and ran: " + done.joined(separator: ", "))
    }

    private func lifecycleLeak() throws -> CheckOutcome {
        func cycle() throws {
            let p = try watchdog.watch("init") { try source.instantiate(pcpuCount: 2) }
            for v in Int32(0)..<4 {
                try watchdog.watch("vcpu_add") { try p.addVCPU(v, vm: v / 2, params: SchedulerParams()) }
                watchdog.watch("wake") { p.wake(v, now: 1000) }
            }
            watchdog.watch("pick_next") { _ = p.pickNext(pcpu: 0, now: 2000) }
            for v in Int32(0)..<4 { watchdog.watch("vcpu_remove") { p.removeVCPU(v) } }
            watchdog.watch("deinit") { p.shutdown() }
        }
        for _ in 0..<50 { try cycle() }
        let (rss0, fds0) = (ProcessUsage.residentBytes(), ProcessUsage.openDescriptors())
        for _ in 0..<cycles { try cycle() }
        let (rss1, fds1) = (ProcessUsage.residentBytes(), ProcessUsage.openDescriptors())
        let detail = "\(cycles) init/4 x vcpu_add/pick/vcpu_remove/deinit cycles: RSS \(rss0 / 1024) -> \(rss1 / 1024) KiB, open fds \(fds0) -> \(fds1)"
        guard fds1 <= fds0, (Int64(rss1) - Int64(rss0)) / 1024 < max(2048, Int64(cycles)) else { return .fail(detail) }
        return .pass(detail)
    }

    private func simulate() throws -> CheckOutcome {
        let scenario = try SchedSimFiles.scenario(text: Self.scenario, name: "plugin-check")
        let policy = try source.instantiate(pcpuCount: scenario.pcpus)
        let result = try watchdog.watch("sched-sim run") { try SchedSimulator(scenario: scenario, policy: policy, seed: seed).run() }
        guard result.invalidPickCount == 0 else {
            return .fail("\(result.invalidPickCount) picks the host would refuse (it would switch to the fallback): " +
                         result.problems.prefix(3).joined(separator: "; "))
        }
        return .pass("4 s of a 4-VM (5-vCPU) scenario on 2 pCPUs in virtual time: every call in sequence, every pick valid")
    }
}
