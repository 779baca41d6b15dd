import ArgumentParser
import HVKernel
import HVSupport
import HVPluginHost

/// `hvhost validate VM.vmx...`: configuration, device plugins and kernel image, without
/// starting anything.
struct ValidateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate",
        abstract: "Check .vmx files: keys and values, that every device model is provided by a plugin, and that the kernel ELF boots.",
        discussion: "Prints one OK line per valid file, or every problem in it (each as file:line: key = \"value\": problem, expected ...). Device keys are checked against the keys their plugin model declares; an undeclared key under a device's prefix is a warning (with the closest declared name), not a problem. Exits 2 if any file has a problem."
    )

    @Argument(help: ArgumentHelp("The VM configuration file(s).", valueName: "vm.vmx"))
    var files: [String]

    @OptionGroup var plugins: PluginPathOptions

    func validate() throws {
        guard !files.isEmpty else { throw ValidationError("Give at least one .vmx file.") }
    }

    func run() throws {
        let catalog = plugins.loadCatalogInChild()
        var failed = false
        for path in files {
            let (result, warnings) = Self.check(path: path, catalog: catalog)
            for line in warnings { HostConsole.printError(line) }
            switch result {
            case let .success(summary):
                print("\(path): OK (\(summary))")
            case let .failure(problems):
                failed = true
                for line in problems.lines { HostConsole.printError(line) }
            }
        }
        // 2, as `run` refuses a bad file (1 would read as a guest's debug-exit pass).
        if failed { throw ExitCode(2) }
    }

    /// Validates one file: the summary on success, every problem found otherwise
    /// (keys and values, then device plugins and the kernel image as far as the keys
    /// they need are valid, and device keys against their models' declarations), and the
    /// warnings about keys no one declares.
    static func check(path: String, catalog: PluginCatalog) -> (Result<String, Problems>, warnings: [String]) {
        let check = VMConfiguration.check(contentsOf: path)
        var problems = check.problems.map(\.description)
        guard let file = check.file else { return (.failure(Problems(problems)), []) }

        for device in check.devices {
            do {
                _ = try catalog.deviceModel(named: device.modelName, for: device)
            } catch {
                problems.append(error.description)
            }
        }
        let keys = catalog.declaredKeyCheck(devices: check.devices, file: file)
        problems += keys.problems
        if let boot = check.boot {
            problems += kernelProblems(boot: boot, memoryMiB: check.memoryMiB, file: file)
        }

        guard problems.isEmpty, let config = check.configuration else { return (.failure(Problems(problems)), keys.warnings) }
        let devices = config.devices.isEmpty ? "none"
            : config.devices.map { "\($0.prefix) \($0.modelName)" }.joined(separator: ", ")
        let cpus = config.vcpuCount == 1 ? "1 vCPU" : "\(config.vcpuCount) vCPUs"
        return (.success("\(config.displayName): \(config.memoryMiB) MiB, \(cpus), devices: \(devices)"), keys.warnings)
    }

    /// The kernel image's problems: it must be a bootable ELF and, when memsize is valid,
    /// fit in the guest's memory with its command line.
    private static func kernelProblems(boot: BootConfiguration, memoryMiB: Int?, file: VMXFile) -> [String] {
        guard let kernelPath = boot.kernelPath else {
            guard let firmware = boot.firmware else { return [] }
            do throws(BootError) {
                _ = try FirmwareImage(contentsOf: firmware.imagePath)
                return []
            } catch {
                let e = file.entry(forKey: "hv.firmware")
                return ["\(e.map { "\($0.location): \($0.key) = \"\($0.value)\"" } ?? "\(file.path): hv.firmware (default)"): \(error)"]
            }
        }
        let kernelEntry = file.entry(forKey: "hv.kernel")
        let kernelWhere = kernelEntry.map { "\($0.location): \($0.key) = \"\($0.value)\"" } ?? "\(file.path): hv.kernel"
        // hv.boot absent: the image decides (PVH when it has the note, else 64-bit entry).
        let mode: BootMode? = file.entry(forKey: "hv.boot") == nil ? nil : BootMode(rawValue: boot.bootProtocol.rawValue)
        do throws(BootError) {
            let image = try KernelImage(contentsOf: kernelPath)
            guard let memoryMiB else { return [] }
            let initrd: [UInt8]?
            do { initrd = try boot.initrdPath.map { try HostFile.read($0) } } catch {
                let e = file.entry(forKey: "hv.initrd")
                return ["\(e?.location ?? file.path): hv.initrd: cannot read \(boot.initrdPath ?? ""): \(error)"]
            }
            if boot.firmware != nil {
                // The BIOS boots it: a Linux image split for fw_cfg.
                _ = try image.firmwareLoad(memorySize: UInt64(memoryMiB) << 20, commandLine: boot.commandLine, initrd: initrd)
            } else {
                _ = try image.plan(memorySize: UInt64(memoryMiB) << 20, commandLine: boot.commandLine, initrd: initrd, mode: mode)
            }
            return []
        } catch {
            switch error.reason {
            case .commandLineTooLong, .commandLineContainsNUL:
                let e = file.entry(forKey: "hv.cmdline")
                return ["\(e?.location ?? file.path): \(e?.key ?? "hv.cmdline"): \(error.reason.message)"]
            case .memoryTooSmall, .segmentBeyondRAM:
                let m = file.entry(forKey: "memsize")
                return ["\(kernelWhere): \(error)\(m.map { " (memsize set on line \($0.line))" } ?? "")"]
            default:
                return ["\(kernelWhere): \(error)"]
            }
        }
    }

    struct Problems: Error {
        let lines: [String]
        init(_ lines: [String]) { self.lines = lines }
    }
}
