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
            clean power-off and 2 when the VM failed (e.g. triple fault). With several VMs it is \
            0 when none failed.
            """)

    @Argument(help: "The .vmx files of the VMs to run.")
    var vmxFiles: [String]

    @Option(name: .customLong("plugin-path"), help: "A directory to search for plugins (repeatable, or colon-separated).")
    var pluginPath: [String] = []

    @Option(name: .customLong("kvm-device"), help: "The KVM device node.")
    var kvmDevice = "/dev/kvm"

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
        guard problems.isEmpty else { throw HostFailure(problems) }

        let catalog = PluginCatalog.load(searchPath: .standard(flagValues: pluginPath))
        for failure in catalog.failures { logger.warning("plugin not loaded: \(failure)") }
        let kvm: KVMSystem
        do { kvm = try KVMSystem(path: kvmDevice) } catch {
            logger.error("cannot start VMs: \(error)")
            throw ExitCode(2)
        }
        let host = HostServices(
            kvm: kvm, switches: SwitchRegistry(), diskQueue: DiskIOQueue(name: "disk-io"),
            resolveModel: { device in
                let found = try catalog.deviceModel(named: device.modelName, for: device)
                return ResolvedDeviceModel(pluginName: found.pluginName, model: found.model)
            })

        let signals = SignalWatcher(signals: [SIGINT, SIGTERM])
        var vms: [VirtualMachine] = []
        var failed = 0
        for config in configurations {
            do {
                vms.append(try VirtualMachine(configuration: config, host: host, logger: logger))
            } catch {
                // This VM does not start; the others still do.
                logger.error("\(config.path): cannot power on \(config.displayName): \(error)")
                failed += 1
            }
        }
        guard !vms.isEmpty else { throw ExitCode(2) }

        signals.onSignal = { signal in
            logger.info("received \(signal == SIGINT ? "SIGINT" : "SIGTERM"); powering off \(vms.count) VM(s)")
            for vm in vms { vm.stop(.poweredOff) }
        }
        for vm in vms { vm.start() }
        var reasons: [VMStopReason] = []
        for vm in vms { reasons.append(vm.waitUntilStopped()) }
        signals.stop()

        if configurations.count == 1, let only = reasons.first {
            throw ExitCode(only.exitStatus)
        }
        failed += reasons.filter { $0.exitStatus == 2 }.count
        throw ExitCode(failed == 0 ? 0 : 2)
    }
}

/// A list of user-facing problems, printed one per line.
struct HostFailure: Error, CustomStringConvertible {
    let problems: [String]
    init(_ problems: [String]) { self.problems = problems }
    var description: String { problems.joined(separator: "\n") }
}
