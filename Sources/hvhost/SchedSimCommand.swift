import ArgumentParser
import HVSchedSim

/// `hvhost sched-sim`: runs a scheduler policy plugin against a scenario in virtual time
/// and reports entitlement vs achieved share, fairness error and wake-up latency.
struct SchedSimCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sched-sim",
        abstract: "Simulate a CPU scheduler policy plugin on a scenario, deterministically, in virtual time.",
        discussion: """
            The scenario format is documented in Plugins/SchedPolicies/scenarios/README.md. The same \
            policy, scenario and seed always give byte-identical CSV. Percentages are of the pool \
            (pCPUs x time). The policy "fallback" is the host's built-in policy.

            --replay FILE replays a recording of a live run (`hvhost run --sched-record FILE`, format in \
            Plugins/SchedPolicies/RECORDING.md) instead: every vCPU runs and blocks as it did live (its \
            demand, not the old schedule) under --policy (default: the recorded policy). It prints what \
            the live run achieved, then the replay, then both side by side; charts of the live run go \
            next to the replay's (out.png -> out.live.png).
            """
    )

    @Option(help: ArgumentHelp("Policy name (default: the scenario's 'policy' line, else propshare).", valueName: "name"))
    var policy: String?

    @Option(help: ArgumentHelp("The scenario file.", valueName: "file"))
    var scenario: String?

    @Option(help: ArgumentHelp("Replay a recording of a live run (hvhost run --sched-record) instead of a scenario.", valueName: "file"))
    var replay: String?

    @Option(help: ArgumentHelp("With --replay: the recorded pool to replay (default: the first with VMs).", valueName: "name"))
    var pool: String?

    @Option(help: ArgumentHelp("Seed of the workload generator (default: the scenario's 'seed' line, else 1).", valueName: "n"))
    var seed: UInt64?

    @Option(help: ArgumentHelp("Write the per-window time series here.", valueName: "file"))
    var csv: String?

    @Option(name: .customLong("summary-csv"),
            help: ArgumentHelp("Write the per-VM summary here (default with --csv: <csv>.summary.csv).", valueName: "file"))
    var summaryCSV: String?

    @Option(help: ArgumentHelp("Write a chart of entitled vs achieved share per VM here.", valueName: "file"))
    var png: String?

    @Option(help: ArgumentHelp("Write the same chart as SVG here (for papers).", valueName: "file"))
    var svg: String?

    @Option(help: ArgumentHelp("Write every policy call and stint, one line each, here ('-' for standard output).", valueName: "file"))
    var trace: String?

    @Option(name: .customLong("set"),
            help: ArgumentHelp("Set a tunable the policy declares before the run (repeatable); see `hvhost plugins --keys POLICY`.",
                               valueName: "key=value"))
    var tunables: [String] = []

    @OptionGroup var plugins: PluginPathOptions

    func run() throws {
        do {
            guard (scenario == nil) != (replay == nil) else {
                throw ValidationError("give either --scenario FILE or --replay FILE")
            }
            let recording = try replay.map { try SchedRecording.load($0) }
            let sc = try recording?.scenario(pool: pool) ?? SchedSimFiles.loadScenario(scenario!)
            let name = try policy ?? recording?.policy(pool: pool) ?? sc.policy ?? "propshare"
            let seedValue = seed ?? sc.seed ?? 1
            let catalog = plugins.loadCatalog()
            let instance = try SchedSimulator.loadPolicy(named: name, pcpus: sc.pcpus,
                                                         resolve: catalog.schedulerPolicySource(named:))
            for setting in tunables {
                let kv = setting.split(separator: "=", maxSplits: 1).map(String.init)
                guard kv.count == 2, !kv[0].isEmpty else {
                    throw ValidationError("--set \(setting): expected key=value, e.g. --set quantum_ms=20")
                }
                print(try instance.runCommand(kv[0], words: [kv[1]], tunable: true))
            }
            let sim = SchedSimulator(scenario: sc, policy: instance, seed: seedValue)
            var traceLines: [UInt8] = []
            if let trace {
                sim.trace = { line in
                    if trace == "-" { print(line) } else { traceLines += Array(line.utf8); traceLines.append(10) }
                }
            }
            let result = try sim.run()
            if let trace, trace != "-" { try SchedSimFiles.write(trace, traceLines) }
            var live: SchedSimResult?
            if let recording {
                live = try recording.liveResult(pool: pool)
                print("recorded live run:\n" + live!.summaryTable() + "\nreplay:")
            }
            print(result.summaryTable(), terminator: "")
            if let live { print("\n" + SchedSimResult.comparison(live: live, replay: result), terminator: "") }
            if let csv {
                try SchedSimFiles.write(csv, Array(result.timeSeriesCSV().utf8))
                let summaryPath = summaryCSV ?? Self.summaryPath(for: csv)
                try SchedSimFiles.write(summaryPath, Array(result.summaryCSV().utf8))
                print("wrote \(csv) and \(summaryPath)")
            } else if let summaryCSV {
                try SchedSimFiles.write(summaryCSV, Array(result.summaryCSV().utf8))
                print("wrote \(summaryCSV)")
            }
            for (path, svgFormat) in [(png, false), (svg, true)] {
                guard let path else { continue }
                for (r, file) in [(result, path), (live, Self.livePath(for: path))] {
                    guard let r else { continue }
                    let chart = SchedSimChart(r)
                    try SchedSimFiles.write(file, svgFormat ? Array(chart.svg().utf8) : chart.png())
                    print("wrote \(file)")
                }
            }
        } catch let e as ExitCode {
            throw e
        } catch {
            HostConsole.printError("hvhost sched-sim: \(error)")
            throw ExitCode(1)
        }
    }

    /// out.png → out.live.png: the chart of the recorded run beside the replay's.
    static func livePath(for path: String) -> String {
        guard let dot = path.lastIndex(of: "."), !path[dot...].contains("/") else { return path + ".live" }
        return path[..<dot] + ".live" + path[dot...]
    }

    /// out.csv → out.summary.csv; out → out.summary.csv.
    static func summaryPath(for csv: String) -> String {
        if csv.hasSuffix(".csv") { return String(csv.dropLast(4)) + ".summary.csv" }
        return csv + ".summary.csv"
    }
}
