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

/// A device class in the firmware boot order (`bios.bootOrder`).
package enum FirmwareBootDevice: Equatable, Sendable, CustomStringConvertible {
    case floppy
    case hardDisk
    case cdrom
    /// `ethernetN`: network boot from NIC N's boot ROM.
    case network(Int)

    package var description: String {
        switch self {
        case .floppy: "floppy"
        case .hardDisk: "hdd"
        case .cdrom: "cdrom"
        case .network(let n): "ethernet\(n)"
        }
    }
}

/// The BIOS a VM without `hv.kernel` powers on into, as ESX does.
package struct FirmwareConfiguration: Equatable, Sendable {
    /// Debian's SeaBIOS build with every driver (`bios.bin` lacks mpt-scsi).
    package static let defaultImagePath = "/usr/share/seabios/bios-256k.bin"
    /// ESX 2.x's BIOS default: removable media, then the hard disk, then CD-ROM.
    package static let defaultBootOrder: [FirmwareBootDevice] = [.floppy, .hardDisk, .cdrom]

    /// `hv.firmware`, resolved; it existed at validation.
    package var imagePath: String
    /// `hv.firmware.log`: where the firmware's debug console (port 0x402) goes; nil
    /// leaves the port out.
    package var logPath: String?
    /// `bios.bootOrder`, at most three devices.
    package var bootOrder: [FirmwareBootDevice]

    package init(imagePath: String = FirmwareConfiguration.defaultImagePath, logPath: String? = nil,
                 bootOrder: [FirmwareBootDevice] = FirmwareConfiguration.defaultBootOrder) {
        self.imagePath = imagePath
        self.logPath = logPath
        self.bootOrder = bootOrder
    }
}

/// What to boot: a kernel (`hv.kernel`, `hv.cmdline`, `hv.boot`) or, without
/// `hv.kernel`, the firmware (`hv.firmware`, `hv.firmware.log`, `bios.bootOrder`).
package struct BootConfiguration: Equatable, Sendable {
    /// The guest kernel, resolved against the `.vmx` directory; it existed at
    /// validation. nil: the VM boots its firmware.
    package var kernelPath: String?
    /// Kernel command line, "" when absent.
    package var commandLine: String
    package var bootProtocol: BootProtocol
    /// `hv.initrd`, resolved: a Linux kernel's initrd or a multiboot kernel's module 0.
    package var initrdPath: String?
    /// The firmware: when `kernelPath` is nil, or with `hv.firmware` when the BIOS is to
    /// boot the kernel (a Linux image handed over by fw_cfg, as QEMU's -kernel does).
    package var firmware: FirmwareConfiguration?

    init(kernelPath: String, commandLine: String = "", bootProtocol: BootProtocol = .pvh, initrdPath: String? = nil) {
        self.kernelPath = kernelPath
        self.initrdPath = initrdPath
        self.commandLine = commandLine
        self.bootProtocol = bootProtocol
    }

    init(firmware: FirmwareConfiguration) {
        self.kernelPath = nil
        self.commandLine = ""
        self.bootProtocol = .pvh
        self.firmware = firmware
    }
}
