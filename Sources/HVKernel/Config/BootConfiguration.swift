/// How the guest kernel is entered (`hv.boot`).
public enum BootProtocol: String, Sendable, CaseIterable {
    /// The Xen PVH entry point from the ELF note (the same binary boots under QEMU -kernel).
    case pvh
    /// The ELF64 entry point, in long mode.
    case elf64
}

/// Where the first serial port's output goes (`hv.serial`).
public enum SerialSetting: Equatable, Sendable, CustomStringConvertible {
    /// hvhost's standard output.
    case stdout
    /// A file (created or truncated), path resolved against the `.vmx` directory.
    case file(String)
    /// A Unix stream socket the host listens on, path resolved likewise.
    case unix(String)
    /// Discarded.
    case none

    public var description: String {
        switch self {
        case .stdout: "stdout"
        case .file(let p): "file:" + p
        case .unix(let p): "unix:" + p
        case .none: "none"
        }
    }
}

/// What to boot (`hv.kernel`, `hv.cmdline`, `hv.boot`).
public struct BootConfiguration: Equatable, Sendable {
    /// The guest ELF, resolved against the `.vmx` directory; it existed at validation.
    public var kernelPath: String
    /// Kernel command line, "" when absent.
    public var commandLine: String
    public var bootProtocol: BootProtocol

    public init(kernelPath: String, commandLine: String = "", bootProtocol: BootProtocol = .pvh) {
        self.kernelPath = kernelPath
        self.commandLine = commandLine
        self.bootProtocol = bootProtocol
    }
}
