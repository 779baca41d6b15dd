import ArgumentParser
import HVKernel

/// `hvhost console --socket PATH words…`: one command against a running host.
struct ConsoleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "console",
        abstract: "Run a service-console command on a running `hvhost run --console PATH`.",
        discussion: "Try `hvhost console --socket PATH help`.")

    @Option(name: .customLong("socket"), help: "The socket given to `hvhost run --console`.")
    var socket: String

    @Argument(help: "The command and its arguments.")
    var words: [String]

    func run() throws {
        let reply = try ServiceConsole.request(words.joined(separator: " "), at: socket)
        print(reply, terminator: reply.hasSuffix("\n") ? "" : "\n")
        if reply.hasPrefix("error:") { throw ExitCode(1) }
    }
}
