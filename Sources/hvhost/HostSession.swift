import ArgumentParser
import Glibc
import HVBackendKVM
import HVHostIO
import HVKernel
import HVPluginHost
import HVSched
import HVSupport
import Logging

/// The options `run` and `resume` share: how the host around the VMs is built.
struct HostOptions: ParsableArguments {
    @OptionGroup var plugins: PluginPathOptions

    @Option(name: .customLong("kvm-device"), help: "The KVM device node.")
    var kvmDevice = "/dev/kvm"

    @Option(name: .customLong("console"), help: "Serve the service console on this Unix socket path.")
    var consolePath: String?

    @Option(name: .customLong("console-group"), help: ArgumentHelp(
        "Make the console socket mode 0660 in this group and answer its members (besides root and the host's user).",
        valueName: "group"))
    var consoleGroup: String?

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

    @Option(name: .customLong("sched-call-deadline-ms"), help: ArgumentHelp(
        "How long one call into a scheduler policy plugin may run before it is abandoned and its pool switches to the built-in fallback.",
        valueName: "ms"))
    var policyCallDeadlineMilliseconds: UInt64 = 250

    @Option(name: .customLong("sched-record"), help: ArgumentHelp(
        "Record every scheduling event (wake, block, yield, slice ends, picks) to this file for `hvhost sched-sim --replay`.",
        valueName: "file"))
    var schedRecordPath: String?

    @Option(name: .customLong("user"), help: ArgumentHelp(
        "Go on as this user once /dev/kvm, the VMs' files and the console socket are open (start as root).",
        valueName: "name"))
    var user: String?

    @Option(name: .customLong("web-console"), help: ArgumentHelp(
        "Serve the browser console (every VM's screen over HTTP and WebSocket) on [ADDRESS:]PORT; the address defaults to 127.0.0.1.",
        valueName: "address:port"))
    var webConsole: String?

    @Flag(name: .customLong("no-vcpu-seccomp"), help: "Do not confine vCPU threads with their seccomp filter (debugging only).")
    var noVCPUSeccomp = false

    @Option(name: .customLong("mem-budget"), help: ArgumentHelp(
        "Host memory the VMs may use, e.g. 4096M or 8G (default: physical RAM less 6 %, at least 512 MiB).", valueName: "size"))
    var memBudget: String?

    @Option(name: .customLong("mem-idle-tax"), help: ArgumentHelp("Idle memory tax in percent (Mem.IdleTax).", valueName: "pct"))
    var memIdleTax: Double = 75

    @Option(name: .customLong("mem-scan-rate"), help: ArgumentHelp("Page-sharing scan rate, pages per second (0: no sharing).", valueName: "pages"))
    var memScanRate: Int = MemoryScheduler.defaultScanRate

    @Option(name: .customLong("mem-csv"), help: ArgumentHelp("Write the per-VM memory numbers every second to this CSV file.", valueName: "file"))
    var memCSV: String?

    @Flag(name: .shortAndLong, help: "Log debug messages.")
    var verbose = false

    /// Builds the host (plugins, KVM, scheduler, console, signals), lets `start` power
    /// on or resume VMs (returning how many failed to start), waits until every VM has
    /// stopped for good and exits: with one VM, with its status (`VMStopReason.exitStatus`),
    /// otherwise 0 when none failed and 2 when one did.
    func runHost(vmCount: Int, logger: Logger, start: (VMHost, PluginCatalog) -> Int) throws -> Never {
        let catalog = plugins.loadCatalog()
        for failure in catalog.failures { logger.warning("plugin not loaded: \(failure)") }
        VCPUConfinement.isEnabled = !noVCPUSeccomp
        let kvm: KVMSystem
        do { kvm = try KVMSystem(path: kvmDevice) } catch {
            logger.error("cannot start VMs: \(error)")
            throw ExitCode(2)
        }
        let scheduler: Scheduler
        do {
            var schedConfig = try SchedulerConfiguration.parse(pcpus: pcpus, pools: pools)
            schedConfig.watchdogNanoseconds = max(1, watchdogMilliseconds) * 1_000_000
            schedConfig.policyCallDeadlineNanoseconds = max(1, policyCallDeadlineMilliseconds) * 1_000_000
            scheduler = try Scheduler(configuration: schedConfig, resolvePolicy: catalog.schedulerPolicySource(named:),
                                      logger: logger)
        } catch {
            logger.error("cannot set up the CPU scheduler: \(error)")
            throw ExitCode(2)
        }
        if let schedRecordPath {
            do { try scheduler.startRecording(to: schedRecordPath) } catch {
                logger.error("\(error)")
                throw ExitCode(2)
            }
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
        let memory: MemoryScheduler
        do {
            let budget = try memBudget.map { spec -> UInt64 in
                guard let bytes = HostOptions.parseSize(spec) else {
                    throw ValidationError("--mem-budget \(spec): expected a size such as 4096M or 8G")
                }
                return bytes
            }
            guard (0...99).contains(memIdleTax) else { throw ValidationError("--mem-idle-tax \(memIdleTax): expected 0...99") }
            memory = try MemoryScheduler(budgetBytes: budget, idleTax: memIdleTax / 100, scanRate: memScanRate,
                                         sharing: memScanRate > 0, csvPath: memCSV, logger: logger)
        } catch {
            logger.error("cannot set up the memory scheduler: \(error)")
            throw ExitCode(2)
        }
        memory.start()
        defer { memory.stop() }
        logger.info("memory: budget \(memory.budgetBytes >> 20) MiB, idle tax \(Int(memIdleTax)) %, page sharing \(memScanRate > 0 ? "at \(memScanRate) pages/s" : "off")")
        let services = HostServices(
            kvm: kvm, switches: switches, diskQueue: DiskIOQueue(name: "disk-io"), scheduler: scheduler, memory: memory,
            resolveModel: { device in try catalog.deviceModel(named: device.modelName, for: device) })
        let host = VMHost(services: services, logger: logger)
        // Reclaim order after page sharing: the balloon, then host swap.
        let balloonReclaimer = BalloonReclaimer(host: host)
        memory.attach(balloonReclaimer)
        memory.attach(SwapReclaimer(host: host, logger: logger))
        if let spec = webConsole {
            do {
                let (address, port) = try Self.listenAddress(spec, option: "--web-console")
                let server = try WebConsoleServer(address: address, port: port) { host.vms.map(\.console) }
                host.webConsole = server
                logger.info("browser console: http://\(server.address):\(server.port)/")
            } catch {
                logger.error("\(error)")
                throw ExitCode(2)
            }
        }
        defer { host.webConsole?.stop() }

        let signals = SignalWatcher(signals: [SIGINT, SIGTERM])
        signals.onSignal = { signal in
            logger.info("received \(signal == SIGINT ? "SIGINT" : "SIGTERM"); powering off \(host.vms.count) VM(s)")
            host.powerOffAll()
        }
        var console: ServiceConsole?
        if let path = consolePath {
            var gid: gid_t?
            if let name = consoleGroup {
                guard let g = getgrnam(name) else {
                    logger.error("--console-group \(name): no such group")
                    throw ExitCode(2)
                }
                gid = g.pointee.gr_gid
            }
            do { console = try ServiceConsole(path: path, group: gid) } catch {
                logger.error("\(error)")
                throw ExitCode(2)
            }
            console?.registerHostCommands(host)
            console?.registerSchedCommands(scheduler, policyNames: { catalog.schedPolicyNames })
            console?.registerMemCommands(memory, host: host, balloon: balloonReclaimer)
            console?.start()
        }
        defer { console?.stop() }

        var failed = start(host, catalog)
        if let user {
            do {
                let ids = try PrivilegeDrop.lookUp(user)
                if let path = consolePath { _ = chown(path, ids.uid, ids.gid) }   // it can still remove its socket
                try PrivilegeDrop.drop(to: user)
                logger.info("running as user '\(user)' (uid \(ids.uid), gid \(ids.gid)) from now on")
            } catch {
                logger.error("\(error); powering off")
                host.powerOffAll()
                _ = host.waitForAll()
                throw ExitCode(2)
            }
        }
        let reasons = host.waitForAll()
        signals.stop()
        scheduler.stop()
        do { try scheduler.finishRecording() } catch { logger.error("\(error)") }
        if let schedRecordPath { logger.info("scheduling events recorded in \(schedRecordPath)") }
        // A plugin call that never returned keeps its thread; exit() does not wait for it.
        for call in DeadlineCallThread.abandonedCalls { logger.error("exiting with an abandoned plugin call: \(call)") }
        guard !reasons.isEmpty else { throw ExitCode(2) }

        if vmCount == 1, reasons.count == 1, let only = reasons.first {
            throw ExitCode(only.exitStatus)
        }
        failed += reasons.filter { $0.exitStatus == 2 }.count
        throw ExitCode(failed == 0 ? 0 : 2)
    }
}

extension HostOptions {
    /// "PORT" or "ADDRESS:PORT" (IPv4) for a listening socket.
    static func listenAddress(_ spec: String, option: String) throws -> (String, Int) {
        let parts = spec.split(separator: ":", omittingEmptySubsequences: false)
        let address = parts.count == 2 ? String(parts[0]) : RemoteDisplayConfiguration.defaultAddress
        guard parts.count <= 2, let port = Int(parts.last ?? ""), (0...65535).contains(port) else {
            throw ValidationError("\(option) \(spec): expected PORT or ADDRESS:PORT (an IPv4 address, a port 0-65535)")
        }
        return (address, port)
    }

    /// "512M", "8G", "1048576K" or plain bytes.
    static func parseSize(_ spec: String) -> UInt64? {
        let units: [Character: UInt64] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40]
        var digits = Substring(spec.uppercased())
        var scale: UInt64 = 1
        if digits.last == "B" { digits.removeLast() }
        if let u = digits.last, let m = units[u] { scale = m; digits.removeLast() }
        guard let n = UInt64(digits), n > 0 else { return nil }
        let (v, overflow) = n.multipliedReportingOverflow(by: scale)
        return overflow ? nil : v
    }
}
