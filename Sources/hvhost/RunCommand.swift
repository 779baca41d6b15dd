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
            clean power-off or a suspend and 2 when the VM failed or could not start (triple fault, bad \
            configuration, missing plugin). With several VMs it is \
            0 when none failed.
            """)

    @Argument(help: "The .vmx files of the VMs to run.")
    var vmxFiles: [String] = []

    @Option(name: .customLong("incoming"), help: ArgumentHelp(
        "Also receive one VM live-migrated by `hvhost migrate` on this address (loopback unless --migration-allow-remote).",
        valueName: "tcp:ADDR:PORT"))
    var incoming: String?

    @Flag(name: .customLong("migration-allow-remote"), help: "Let --incoming listen on an address that is not loopback.")
    var migrationAllowRemote = false

    @OptionGroup var host: HostOptions

    @Option(name: .customLong("vnc"), help: ArgumentHelp(
        "Serve VNC for each VM whose .vmx does not set RemoteDisplay.vnc.enabled: the first on [ADDRESS:]PORT, the next on PORT+1, … (address default 127.0.0.1; port 0: free ports).",
        valueName: "address:port"))
    var vnc: String?

    func run() throws {
        let logger = HostLogging.logger(verbose: host.verbose)
        // Parse every config before powering anything on: one bad file changes nothing.
        var configurations: [VMConfiguration] = []
        var problems: [ConfigError] = []
        for path in vmxFiles {
            do { configurations.append(try VMConfiguration(contentsOf: path)) }
            catch { problems += error.errors }
        }
        var incomingAddress: MigrationAddress?
        do { incomingAddress = try incoming.map { try MigrationAddress($0, allowRemote: migrationAllowRemote) } } catch {
            fputs("error: --incoming: \(error)\n", stderr)
            throw ExitCode(2)
        }
        guard !vmxFiles.isEmpty || incomingAddress != nil else {
            fputs("error: name at least one .vmx file (or --incoming tcp:ADDR:PORT)\n", stderr)
            throw ExitCode(2)
        }
        guard problems.isEmpty else {
            // Never 1: with one VM, status 1 means the guest passed (debug-exit value 0).
            for p in problems { fputs("error: \(p)\n", stderr) }
            throw ExitCode(2)
        }

        if let vnc {
            let (address, base) = try HostOptions.listenAddress(vnc, option: "--vnc")
            var next = base
            for i in configurations.indices where configurations[i].entry(forKey: "RemoteDisplay.vnc.enabled") == nil {
                configurations[i].remoteDisplay.enabled = true
                configurations[i].remoteDisplay.address = address
                configurations[i].remoteDisplay.port = next
                if base != 0 { next += 1 }
            }
        }

        try host.runHost(vmCount: configurations.count + (incomingAddress == nil ? 0 : 1), logger: logger) { host, catalog in
            var failed = 0
            for config in configurations {
                // Keys checked against what the selected plugins declare: a value outside
                // the declaration stops this VM as `validate` would; an undeclared key warns.
                let keys = catalog.declaredKeyCheck(devices: config.devices, file: config.file)
                for w in keys.warnings { logger.warning("\(w)") }
                guard keys.problems.isEmpty else {
                    for p in keys.problems { logger.error("\(p)") }
                    logger.error("\(config.path): cannot power on \(config.displayName): its device keys do not fit their declarations")
                    failed += 1
                    continue
                }
                do {
                    try host.powerOn(config)
                } catch {
                    // This VM does not start; the others still do.
                    logger.error("\(config.path): cannot power on \(config.displayName): \(error)")
                    failed += 1
                }
            }
            if let incomingAddress {
                do { try host.receiveMigration(on: incomingAddress) } catch {
                    logger.error("incoming migration failed: \(error)")
                    failed += 1
                }
            }
            return failed
        }
    }
}
