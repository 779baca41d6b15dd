import ArgumentParser
import HVKernel

/// `hvhost validate VM.vmx...`: configuration, device plugins and kernel image, without
/// starting anything.
struct ValidateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate",
        abstract: "Check .vmx files: keys and values, that every device model is provided by a plugin, and that the kernel ELF boots.",
        discussion: "Prints one OK line per valid file, or every problem as file:line: key = \"value\": problem. Exits 1 if any file has a problem."
    )

    @Argument(help: ArgumentHelp("The VM configuration file(s).", valueName: "vm.vmx"))
    var files: [String]

    @OptionGroup var plugins: PluginPathOptions

    func validate() throws {
        guard !files.isEmpty else { throw ValidationError("Give at least one .vmx file.") }
    }

    func run() throws {
        let catalog = plugins.loadCatalog()
        var failed = false
        for path in files {
            switch Self.check(path: path, catalog: catalog) {
            case let .success(summary):
                print("\(path): OK (\(summary))")
            case let .failure(problems):
                failed = true
                for line in problems.lines { HostConsole.printError(line) }
            }
        }
        if failed { throw ExitCode(1) }
    }

    /// Validates one file: the summary on success, every problem found otherwise.
    static func check(path: String, catalog: PluginCatalog) -> Result<String, Problems> {
        let file: VMXFile
        do {
            file = try VMXFile(contentsOf: path)
        } catch {
            return .failure(Problems(["\(error)"]))
        }
        let configProblems = VMConfiguration.problems(in: file)
        guard configProblems.isEmpty else { return .failure(Problems(configProblems.map(\.description))) }
        let config: VMConfiguration
        do {
            config = try VMConfiguration(file: file)
        } catch {
            return .failure(Problems(["\(error)"]))
        }

        var problems: [String] = []
        for device in config.devices {
            do {
                _ = try catalog.deviceModel(named: device.modelName, for: device)
            } catch {
                problems.append(error.description)
            }
        }

        let kernelEntry = config.entry(forKey: "hv.kernel")
        let kernelWhere = kernelEntry.map { "\($0.location): \($0.key) = \"\($0.value)\"" } ?? "\(config.path): hv.kernel"
        // hv.boot absent: the image decides (PVH when it has the note, else 64-bit entry).
        let mode: BootMode? = config.entry(forKey: "hv.boot") == nil
            ? nil : BootMode(rawValue: config.boot.bootProtocol.rawValue)
        do throws(BootError) {
            let image = try ELFImage(contentsOf: config.kernelPath)
            _ = try BootLoader.plan(image: image, memorySize: config.memoryBytes,
                                    commandLine: config.commandLine, mode: mode)
        } catch {
            switch error.reason {
            case .commandLineTooLong, .commandLineContainsNUL:
                let e = config.entry(forKey: "hv.cmdline")
                problems.append("\(e?.location ?? config.path): \(e?.key ?? "hv.cmdline"): \(error.reason.message)")
            case .memoryTooSmall, .segmentBeyondRAM:
                let m = config.entry(forKey: "memsize")
                problems.append("\(kernelWhere): \(error)\(m.map { " (memsize set on line \($0.line))" } ?? "")")
            default:
                problems.append("\(kernelWhere): \(error)")
            }
        }

        guard problems.isEmpty else { return .failure(Problems(problems)) }
        let devices = config.devices.isEmpty ? "none"
            : config.devices.map { "\($0.prefix) \($0.modelName)" }.joined(separator: ", ")
        let cpus = config.vcpuCount == 1 ? "1 vCPU" : "\(config.vcpuCount) vCPUs"
        return .success("\(config.displayName): \(config.memoryMiB) MiB, \(cpus), devices: \(devices)")
    }

    struct Problems: Error {
        let lines: [String]
        init(_ lines: [String]) { self.lines = lines }
    }
}
