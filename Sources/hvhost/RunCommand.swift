import ArgumentParser
import Glibc
import HVKernel
import Logging

/// `hvhost run VM.vmx [VM.vmx …]`: powers on every VM in this process, like one ESX host.
struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Power on the VMs described by .vmx files and run them until they stop.",
        discussion: """
            SIGINT or SIGTERM powers every VM off cleanly. With one VM the exit status is the \
            guest's debug-exit status ((value << 1) | 1, as QEMU's isa-debug-exit), 0 after a \
            clean power-off and 2 when the VM failed or could not start (triple fault, bad \
            configuration, missing plugin). With several VMs it is \
            0 when none failed.
            """)

    @Argument(help: "The .vmx files of the VMs to run.")
    var vmxFiles: [String]

    @OptionGroup var plugins: PluginPathOptions

    @Option(name: .customLong("kvm-device"), help: "The KVM device node.")
    var kvmDevice = "/dev/kvm"

    @Option(name: .customLong("console"), help: "Serve the service console on this Unix socket path.")
    var consolePath: String?

    @Option(name: .customLong("pcpus"), help: ArgumentHelp(
        "pCPU slots: N (not pinned) or N@CPULIST (slot i pinned to the i-th host CPU of the list, e.g. 2@0-1). Default: one per host CPU.",
        valueName: "spec"))
    var pcpus: String?

    @Option(name: .customLong("pool"), help: ArgumentHelp(
        "A scheduler pool NAME:SLOTS[:POLICY], e.g. default:0-1:propshare (repeatable). Default: pool 'default' with every slot and the built-in fallback policy.",
        valueName: "spec"))
    var pools: [String] = []

    @Option(name: .customLong("sched-watchdog-ms"), help: ArgumentHelp(
        "How long a runnable vCPU may wait for a pCPU slot before a plugin policy is replaced by the fallback.",
        valueName: "ms"))
    var watchdogMilliseconds: UInt64 = 2000

    @Flag(name: .shortAndLong, help: "Log debug messages.")
    var verbose = false

    func run() throws {
        let logger = HostLogging.logger(verbose: verbose)
        // Parse every config before powering anything on: one bad file changes nothing.
        var configurations: [VMConfiguration] = []
        var problems: [String] = []
        for path in vmxFiles {
            do { configurations.append(try VMConfiguration(contentsOf: path)) }
            catch { problems.append("\(error)") }
        }
        guard problems.isEmpty else {
            // Never 1: with one VM, status 1 means the guest passed (debug-exit value 0).
            for p in problems { fputs("error: \(p)\n", stderr) }
            throw ExitCode(2)
        }

        let catalog = plugins.loadCatalog()
        for failure in catalog.failures { logger.warning("plugin not loaded: \(failure)") }
        let kvm: KVMSystem
        do { kvm = try KVMSystem(path: kvmDevice) } catch {
            logger.error("cannot start VMs: \(error)")
            throw ExitCode(2)
        }
        let scheduler: Scheduler
        do {
            var schedConfig = try SchedulerConfiguration.parse(pcpus: pcpus, pools: pools)
            schedConfig.watchdogNanoseconds = max(1, watchdogMilliseconds) * 1_000_000
            scheduler = try Scheduler(configuration: schedConfig, resolvePolicy: catalog.schedulerPolicySource(named:),
                                      logger: logger)
        } catch {
            logger.error("cannot set up the CPU scheduler: \(error)")
            throw ExitCode(2)
        }
        for pool in scheduler.pools {
            let slots = pool.slots.map { s in s.hostCPU.map { "\(s.index)@cpu\($0)" } ?? String(s.index) }
            logger.info("scheduler pool '\(pool.name)': pCPU slots \(slots.joined(separator: ",")), policy '\(pool.policyName)' (\(pool.policyOrigin))")
        }
        let services = HostServices(
            kvm: kvm, switches: SwitchRegistry(), diskQueue: DiskIOQueue(name: "disk-io"), scheduler: scheduler,
            resolveModel: { device in try catalog.deviceModel(named: device.modelName, for: device) })
        let host = VMHost(services: services, logger: logger)

        let signals = SignalWatcher(signals: [SIGINT, SIGTERM])
        signals.onSignal = { signal in
            logger.info("received \(signal == SIGINT ? "SIGINT" : "SIGTERM"); powering off \(host.vms.count) VM(s)")
            host.powerOffAll()
        }
        var console: ServiceConsole?
        if let path = consolePath {
            do { console = try ServiceConsole(path: path) } catch {
                logger.error("\(error)")
                throw ExitCode(2)
            }
            console?.registerHostCommands(host)
            console?.registerSchedCommands(scheduler, policyNames: { catalog.schedPolicyNames })
            console?.start()
        }
        defer { console?.stop() }

        var failed = 0
        for config in configurations {
            do {
                try host.powerOn(config)
            } catch {
                // This VM does not start; the others still do.
                logger.error("\(config.path): cannot power on \(config.displayName): \(error)")
                failed += 1
            }
        }
        let reasons = host.waitForAll()
        signals.stop()
        scheduler.stop()
        guard !reasons.isEmpty else { throw ExitCode(2) }

        if configurations.count == 1, let only = reasons.first {
            throw ExitCode(only.exitStatus)
        }
        failed += reasons.filter { $0.exitStatus == 2 }.count
        throw ExitCode(failed == 0 ? 0 : 2)
    }
}
