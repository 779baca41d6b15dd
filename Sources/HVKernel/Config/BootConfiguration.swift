/// How the guest kernel is entered (`hv.boot`).
package enum BootProtocol: String, Sendable, CaseIterable {
    /// The Xen PVH entry point from the ELF note (the same binary boots under QEMU -kernel).
    case pvh
    /// The ELF64 entry point, in long mode.
    case elf64
}

/// Where the first serial port's output goes (`hv.serial`).
package enum SerialSetting: Equatable, Sendable, CustomStringConvertible {
    /// hvhost's standard output.
    case stdout
    /// A file (created or truncated), path resolved against the `.vmx` directory.
    case file(String)
    /// A Unix stream socket the host listens on, path resolved likewise.
    case unix(String)
    /// Discarded.
    case none

    package var description: String {
        switch self {
        case .stdout: "stdout"
        case .file(let p): "file:" + p
        case .unix(let p): "unix:" + p
        case .none: "none"
        }
    }
}

/// What to boot (`hv.kernel`, `hv.cmdline`, `hv.boot`).
package struct BootConfiguration: Equatable, Sendable {
    /// The guest ELF, resolved against the `.vmx` directory; it existed at validation.
    package var kernelPath: String
    /// Kernel command line, "" when absent.
    package var commandLine: String
    package var bootProtocol: BootProtocol

    init(kernelPath: String, commandLine: String = "", bootProtocol: BootProtocol = .pvh) {
        self.kernelPath = kernelPath
        self.commandLine = commandLine
        self.bootProtocol = bootProtocol
    }
}
