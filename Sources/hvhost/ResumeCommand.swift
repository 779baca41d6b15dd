import ArgumentParser
import Glibc

/// `hvhost resume FILE [FILE …]`: a host that continues suspended VMs.
struct ResumeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resume",
        abstract: "Continue VMs suspended with `hvhost console --socket S suspend VM FILE`.",
        discussion: """
            Takes the options of `run`, and exits as `run` does. A VM comes back with its \
            memory, vCPUs, devices and configuration as they were; its NICs join this host's \
            switches of the same names. To resume into a running host (next to the VM's \
            peers), use `hvhost console --socket S resume FILE` instead.
            """)

    @Argument(help: "Suspend files written by `suspend`.")
    var files: [String]

    @OptionGroup var host: HostOptions

    func run() throws {
        let logger = HostLogging.logger(verbose: host.verbose)
        try host.runHost(vmCount: files.count, logger: logger) { host, _ in
            var failed = 0
            for file in files {
                do {
                    try host.resume(from: file)
                } catch {
                    logger.error("cannot resume: \(error)")   // the error names the file
                    failed += 1
                }
            }
            return failed
        }
    }
}
