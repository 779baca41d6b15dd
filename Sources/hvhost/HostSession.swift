import ArgumentParser
import Glibc
import HVBackendKVM
import HVHostIO
import HVKernel
import HVPluginHost
import HVSched
import Logging

/// The options `run` and `resume` share: how the host around the VMs is built.
struct HostOptions: ParsableArguments {
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

    @Option(name: .customLong("switch"), help: ArgumentHelp(
        "A virtual switch with uplinks NAME:uplinks=IF[,IF...][:tap=NAME][:teaming=POLICY][:failback=yes|no][:notify=yes|no] (repeatable; see README, 'Uplinks').",
        valueName: "spec"))
    var switchSpecs: [String] = []

    @Option(name: .customLong("portgroup"), help: ArgumentHelp(
        "A port group NAME:SWITCH:VLAN: vNICs whose networkName is NAME join SWITCH on VLAN (0 none, 4095 guest tagging) (repeatable).",
        valueName: "spec"))
    var portGroupSpecs: [String] = []

    @Flag(name: .shortAndLong, help: "Log debug messages.")
    var verbose = false

    /// Builds the host (plugins, KVM, scheduler, console, signals), lets `start` power
    /// on or resume VMs (returning how many failed to start), waits until every VM has
    /// stopped for good and exits: with one VM, with its status (`VMStopReason.exitStatus`),
    /// otherwise 0 when none failed and 2 when one did.
    func runHost(vmCount: Int, logger: Logger, start: (VMHost, PluginCatalog) -> Int) throws -> Never {
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
        let switches = SwitchRegistry()
        do {
            for spec in switchSpecs {
                let config = try SwitchConfiguration.parse(spec)
                let policy = try config.teaming.map { try catalog.makeTeamingPolicy(named: $0) }
                let made = try switches.addSwitch(config, policy: policy) { logger.warning("\($0)") }
                let team = made.teamStatus
                logger.info("vSwitch '\(made.name)': uplinks \(made.uplinks.map { "\($0)\($0.isLinkUp ? "" : " (no carrier)")" }.joined(separator: ", ")), teaming '\(team.policy)' (\(team.origin))")
            }
            for spec in portGroupSpecs { try switches.addPortGroup(PortGroupConfiguration.parse(spec)) }
        } catch {
            logger.error("cannot set up the virtual switches: \(error)")
            switches.shutdown()
            throw ExitCode(2)
        }
        defer { switches.shutdown() }
        let services = HostServices(
            kvm: kvm, switches: switches, diskQueue: DiskIOQueue(name: "disk-io"), scheduler: scheduler,
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

        var failed = start(host, catalog)
        let reasons = host.waitForAll()
        signals.stop()
        scheduler.stop()
        guard !reasons.isEmpty else { throw ExitCode(2) }

        if vmCount == 1, reasons.count == 1, let only = reasons.first {
            throw ExitCode(only.exitStatus)
        }
        failed += reasons.filter { $0.exitStatus == 2 }.count
        throw ExitCode(failed == 0 ? 0 : 2)
    }
}
