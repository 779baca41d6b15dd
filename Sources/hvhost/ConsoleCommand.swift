import ArgumentParser
import Glibc
import HVKernel

/// `hvhost console --socket PATH words…`: one command against a running host.
struct ConsoleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "console",
        abstract: "Run a service-console command on a running `hvhost run --console PATH`.",
        discussion: "Try `hvhost console --socket PATH help`.")

    @Option(name: .customLong("socket"), help: "The socket given to `hvhost run --console`.")
    var socket: String

    // Everything after the first word is the command's own (negative numbers included:
    // `device vm hv.device0 ints -1 ...`).
    @Argument(parsing: .captureForPassthrough, help: "The command and its arguments.")
    var words: [String]

    func run() throws {
        let reply = try ServiceConsole.request(absolutized(words).joined(separator: " "), at: socket)
        print(reply, terminator: reply.hasSuffix("\n") ? "" : "\n")
        if reply.hasPrefix("error:") { throw ExitCode(1) }
    }

    /// The file of `suspend VM FILE`, `resume FILE` and `screenshot VM FILE` relative to this directory, not
    /// to the host's.
    private func absolutized(_ words: [String]) -> [String] {
        let fileIndex: Int
        switch words.first {
        case "suspend": fileIndex = 2
        case "resume": fileIndex = 1
        case "screenshot": fileIndex = 2
        default: return words
        }
        guard words.count > fileIndex, !words[fileIndex].hasPrefix("/"), let cwd = getcwd(nil, 0) else { return words }
        defer { free(cwd) }
        var out = words
        out[fileIndex] = String(cString: cwd) + "/" + words[fileIndex]
        return out
    }
}
