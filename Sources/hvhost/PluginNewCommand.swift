import ArgumentParser
import Foundation
import HVPluginHost

/// `hvhost plugin new device|policy NAME DIR`: a C plugin skeleton that builds with the
/// generated Makefile and passes `hvhost plugin-check` as written.
struct PluginCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plugin",
        abstract: "Tools for plugin authors.",
        subcommands: [PluginNewCommand.self])
}

struct PluginNewCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "new",
        abstract: "Write a C plugin skeleton (Makefile, source with one BAR or a round-robin policy, declared keys, a command).",
        discussion: """
            DIR gets NAME.c and a Makefile whose HVPLUGIN_INCLUDE points at hvplugin.h: the --abi-include \
            directory, else the one found from the hvhost binary (a source tree's Sources/PluginABI/include, \
            or ../include). `make && make check` builds lib<NAME>.so and runs plugin-check on it.
            """)

    enum Kind: String, ExpressibleByArgument, CaseIterable { case device, policy }

    @Argument(help: "device (a PCI device model) or policy (a CPU scheduler policy).")
    var kind: Kind

    @Argument(help: "The model or policy name: 1..64 of a-z, 0-9, '_' and '-', starting with a letter.")
    var name: String

    @Argument(help: "The directory to write into (created; existing files are not overwritten).")
    var dir: String

    @Option(name: .customLong("abi-include"), help: ArgumentHelp("The directory holding hvplugin.h.", valueName: "dir"))
    var abiInclude: String?

    func validate() throws {
        guard let first = name.unicodeScalars.first, ("a"..."z").contains(first), name.count <= 64,
              name.unicodeScalars.allSatisfy({ ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "_" || $0 == "-" })
        else {
            throw ValidationError("'\(name)' is not a valid plugin name: use 1..64 of a-z, 0-9, '_' and '-', starting with a letter")
        }
    }

    func run() throws {
        guard let include = abiInclude ?? Self.findHeaderDirectory() else {
            throw ValidationError("cannot find hvplugin.h near the hvhost binary; pass --abi-include DIR")
        }
        guard FileManager.default.fileExists(atPath: include + "/hvplugin.h") else {
            throw ValidationError("\(include)/hvplugin.h does not exist (--abi-include names the directory holding it)")
        }
        let fm = FileManager.default
        try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let ident = name.replacingOccurrences(of: "-", with: "_")
        let absoluteInclude = include.hasPrefix("/") ? include : fm.currentDirectoryPath + "/" + include
        let files = [
            ("Makefile", PluginTemplates.makefile(name: name, include: absoluteInclude)),
            ("\(name).c", kind == .device ? PluginTemplates.device(name: name, ident: ident)
                : PluginTemplates.policy(name: name, ident: ident)),
        ]
        for (file, _) in files where fm.fileExists(atPath: dir + "/" + file) {
            throw ValidationError("\(dir)/\(file) exists; not overwriting it")
        }
        for (file, text) in files {
            try text.write(toFile: dir + "/" + file, atomically: true, encoding: .utf8)
            print("wrote \(dir)/\(file)")
        }
        print("next: make -C \(dir) && make -C \(dir) check HVHOST=\(CommandLine.arguments[0])")
    }

    /// hvplugin.h's directory: from the hvhost binary (.build/<config>/hvhost in a source
    /// tree, or <prefix>/bin/hvhost with <prefix>/include).
    static func findHeaderDirectory() -> String? {
        guard let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") else { return nil }
        var dir = URL(fileURLWithPath: exe).deletingLastPathComponent()
        for _ in 0..<5 {
            for candidate in ["Sources/PluginABI/include", "include"] {
                let path = dir.appendingPathComponent(candidate).path
                if FileManager.default.fileExists(atPath: path + "/hvplugin.h") { return path }
            }
            dir.deleteLastPathComponent()
        }
        return nil
    }
}
