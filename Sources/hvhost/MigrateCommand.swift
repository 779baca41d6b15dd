import ArgumentParser
import Glibc
import HVKernel

/// `hvhost migrate --socket S VM tcp:HOST:PORT`: starts a live migration on a running
/// host and shows its progress until it completes, fails or is cancelled (Ctrl-C
/// cancels it; the VM keeps running on the source).
struct MigrateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Live-migrate a VM of a running host to `hvhost run --incoming tcp:HOST:PORT`.",
        discussion: """
            Exits 0 once the VM runs on the destination, 1 when the migration failed or was \
            cancelled (the VM then keeps running on the source).
            """)

    @Option(name: .customLong("socket"), help: "The console socket of the source host (`hvhost run --console`).")
    var socket: String

    @Argument(help: "The VM's name.")
    var vm: String

    @Argument(help: "The destination, tcp:HOST:PORT.")
    var destination: String

    @Option(name: .customLong("downtime-ms"), help: "The switch-over pause to aim for.")
    var downtimeMilliseconds: Double = 100

    @Option(name: .customLong("max-bandwidth"), help: ArgumentHelp("Limit the stream to this many MiB/s.", valueName: "MiB/s"))
    var maxBandwidth: Double?

    @Flag(name: .customLong("no-auto-converge"), help: "Never throttle the vCPUs of a guest that dirties memory faster than the link.")
    var noAutoConverge = false

    @Option(name: .customLong("max-rounds"), help: "Pre-copy rounds after which the VM switches over whatever is left.")
    var maxRounds = 60

    @Flag(name: .customLong("allow-remote"), help: "Allow a destination that is not a loopback address.")
    var allowRemote = false

    func run() throws {
        var words = ["migrate", vm, destination, "downtime-ms=\(downtimeMilliseconds)",
                     "auto-converge=\(noAutoConverge ? "no" : "yes")", "max-rounds=\(maxRounds)", "allow-remote=\(allowRemote ? "yes" : "no")"]
        if let maxBandwidth { words.append("bandwidth-mib=\(maxBandwidth)") }
        let started = try ServiceConsole.request(words.joined(separator: " "), at: socket)
        guard !started.hasPrefix("error:") else {
            print(started, terminator: started.hasSuffix("\n") ? "" : "\n")
            throw ExitCode(1)
        }
        signal(SIGINT) { _ in MigrateCommand.interrupted = 1 }
        let tty = isatty(STDERR_FILENO) == 1
        var last = ""
        while true {
            if Self.interrupted != 0 {
                Self.interrupted = 0
                _ = try? ServiceConsole.request("migrate cancel \(vm)", at: socket)
            }
            let reply: String
            do { reply = try ServiceConsole.request("migrate status \(vm)", at: socket) } catch {
                // A host exits once its last VM has stopped, and the VM stops here only
                // when it runs on the destination.
                guard !last.isEmpty else { throw error }
                if tty { fputs("\r\u{1B}[K", stderr) }
                print("\(vm) -> \(destination): completed (the source host exited: \(vm) was its last VM)")
                return
            }
            let line = reply.split(separator: "\n").last.map(String.init) ?? reply
            if line.contains(": completed in ") || line.contains(": failed: ") || line.contains(": cancelled;") || reply.hasPrefix("error:") {
                if tty { fputs("\r\u{1B}[K", stderr) }
                print(line)
                if line.contains(": completed in ") { return }
                throw ExitCode(1)
            }
            if line != last {
                fputs(tty ? "\r\u{1B}[K\(line)" : "\(line)\n", stderr)
                last = line
            }
            usleep(200_000)
        }
    }

    nonisolated(unsafe) static var interrupted: sig_atomic_t = 0
}
