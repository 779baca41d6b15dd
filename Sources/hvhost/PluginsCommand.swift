import ArgumentParser
import HVPluginHost

/// `hvhost plugins`: what the search path provides, and what failed to load and why.
struct PluginsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plugins",
        abstract: "List the plugins on the search path: devices and policies they provide, and load failures.",
        discussion: "Exits 0 even when some plugins failed to load; the failures are listed with their reasons."
    )

    @Option(help: ArgumentHelp("Print the configuration keys and commands a device model or scheduler policy declares.",
                               valueName: "model"))
    var keys: String?

    @OptionGroup var plugins: PluginPathOptions

    func run() throws {
        let catalog = plugins.loadCatalogInChild()
        if let keys {
            do {
                let d = try catalog.declarations(ofModelOrPolicy: keys)
                print(d.what)
                print(d.declarations.listing(prefix: d.prefix), terminator: "")
            } catch {
                HostConsole.printError("hvhost plugins: \(error)")
                throw ExitCode(1)
            }
            return
        }
        print(Self.report(catalog), terminator: "")
    }

    /// The whole listing as text (tests and `run()`).
    static func report(_ catalog: PluginCatalog) -> String {
        var out = "Search path: \(catalog.searchPath.directories.isEmpty ? "(empty)" : catalog.searchPath.directories.joined(separator: ":"))\n\n"
        if catalog.plugins.isEmpty {
            out += "No plugins loaded.\n"
        } else {
            var table = TextTable(header: ["ID", "NAME", "VERSION", "ABI", "FACTORIES", "PATH"])
            for p in catalog.plugins {
                let factories = p.factoryIDs.map { factoryDescription($0, of: p) }
                for (i, f) in factories.enumerated() {
                    table.add(i == 0 ? [p.id, p.name, p.version, p.abiString, f, p.path] : ["", "", "", "", f, ""])
                }
            }
            out += table.render()
        }
        if !catalog.conflicts.isEmpty {
            out += "\nConflicts (\(catalog.conflicts.count)):\n"
            for c in catalog.conflicts { out += "  \(c)\n" }
        }
        if !catalog.failures.isEmpty {
            out += "\nFailed to load (\(catalog.failures.count)):\n"
            for f in catalog.failures { out += "  \(f)\n" }
        }
        return out
    }

    /// "hv.device/1: vlance (nic), vmxnet (nic)", "hv.sched-policy/1: credit, rr".
    static func factoryDescription(_ id: String, of p: LoadedPlugin) -> String {
        switch id {
        case "hv.device/1":
            return id + ": " + p.deviceModels.map { "\($0.name) (\($0.kindName))" }.joined(separator: ", ")
        case "hv.sched-policy/1":
            return id + ": " + p.schedPolicies.map(\.name).joined(separator: ", ")
        case "hv.teaming-policy/1":
            return id + ": " + p.teamingPolicies.map(\.name).joined(separator: ", ")
        default:
            return id + " (not used by this host)"
        }
    }
}

/// Left-aligned text columns separated by two spaces; trailing blanks trimmed.
struct TextTable {
    let header: [String]
    private(set) var rows: [[String]] = []

    init(header: [String]) { self.header = header }

    mutating func add(_ row: [String]) { rows.append(row) }

    func render() -> String {
        let all = [header] + rows
        var widths = [Int](repeating: 0, count: header.count)
        for r in all { for (i, c) in r.enumerated() { widths[i] = max(widths[i], c.count) } }
        var out = ""
        for r in all {
            var line = ""
            for (i, c) in r.enumerated() {
                line += c
                if i < r.count - 1 { line += String(repeating: " ", count: widths[i] - c.count + 2) }
            }
            while line.last == " " { line.removeLast() }
            out += line + "\n"
        }
        return out
    }
}
