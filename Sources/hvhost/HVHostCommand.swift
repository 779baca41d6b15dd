import ArgumentParser
import Glibc
import HVPluginHost

/// `hvhost`: the host program and service console.
@main
struct HVHostCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hvhost",
        abstract: "Run virtual machines on KVM with devices, NIC-teaming and scheduler policies loaded as plugins.",
        discussion: """
            Plugins (*.so) are searched in --plugin-path directories, then $\(PluginSearchPath.environmentVariable) \
            (colon-separated), then the directory of the hvhost binary and its plugins/ subdirectory.
            """,
        subcommands: [RunCommand.self, ResumeCommand.self, ValidateCommand.self, PluginsCommand.self, ConsoleCommand.self, MigrateCommand.self, TopCommand.self,
                      DiskCommand.self,
                      SchedSimCommand.self, SchedCommand.self, PluginCheckCommand.self, PluginCommand.self]
    )
}

/// `--plugin-path`, shared by every subcommand that loads plugins.
struct PluginPathOptions: ParsableArguments {
    @Option(
        name: .customLong("plugin-path"),
        help: ArgumentHelp(
            "A plugin directory (or colon-separated list); may be repeated. Searched before $\(PluginSearchPath.environmentVariable) and the hvhost binary's directory.",
            valueName: "dir"))
    var pluginPath: [String] = []

    /// The search path these options select (flags, then environment, then the binary's directory).
    var searchPath: PluginSearchPath { PluginSearchPath.standard(flagValues: pluginPath) }

    /// Loads every plugin on the search path.
    func loadCatalog() -> PluginCatalog { PluginCatalog(searchPath: searchPath) }

    /// Loads the catalog for a command that only reads plugin metadata (`plugins`,
    /// `validate`): in a ``MetadataChild`` (this process when it is one; otherwise the
    /// command is run again in one, whose output and status become this process's).
    func loadCatalogInChild() -> PluginCatalog {
        guard MetadataChild.isChild else { MetadataChild.runAndExit() }
        let crashed = MetadataChild.crashedLibraries()
        let skip = Set(crashed.map(\.path))
        let candidates = searchPath.candidateList().filter { !skip.contains($0.path) }
        return PluginCatalog(searchPath: searchPath, candidates: candidates,
                             knownFailures: crashed.map { PluginLoadError(path: $0.path, reason: .crashedWhileLoading($0.reason)) },
                             willLoad: MetadataChild.reportLoading)
    }
}

/// Output helpers shared by the subcommands.
enum HostConsole {
    /// Writes `line` and a newline to standard error.
    static func printError(_ line: String) {
        var stream = StandardError()
        print(line, to: &stream)
    }

    struct StandardError: TextOutputStream {
        mutating func write(_ string: String) {
            var s = string
            s.withUTF8 { buf in
                var offset = 0
                while offset < buf.count {
                    let n = Glibc.write(2, buf.baseAddress! + offset, buf.count - offset)
                    if n < 0, errno == EINTR { continue }
                    if n <= 0 { break }
                    offset += n
                }
            }
        }
    }
}
