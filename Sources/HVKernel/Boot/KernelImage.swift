import Glibc
import HVMemory
import HVSupport

/// A kernel file in one of the formats the boot loader enters without firmware, told
/// apart by content: ELF (PVH note, or 64-bit entry), multiboot v1 (an ELF or a.out-kludge
/// image with the multiboot header; an ELF with a PVH note boots by PVH), and the Linux
/// x86 boot protocol 2.02+ (bzImage, "HdrS" at 0x202), which enters at its 32-bit entry.
package enum KernelImage: Sendable {
    case elf(ELFImage)
    case multiboot(MultibootImage)
    case linux(LinuxImage)

    /// Reads `path` and recognises its format.
    package init(contentsOf path: String) throws(BootError) {
        let bytes: [UInt8]
        do {
            bytes = try HostFile.read(path)
        } catch {
            throw BootError(file: path, reason: .unreadable(String(cString: strerror(error.errno))))
        }
        try self.init(bytes: bytes, path: path)
    }

    package init(bytes: [UInt8], path: String) throws(BootError) {
        if bytes.starts(with: [0x7F, 0x45, 0x4C, 0x46]) {
            let elf = try ELFImage(bytes: bytes, path: path)
            if elf.pvhEntry == nil, let header = try MultibootHeader.find(in: bytes, path: path) {
                self = .multiboot(try MultibootImage(header: header, elf: elf, bytes: bytes, path: path))
            } else {
                self = .elf(elf)
            }
        } else if LinuxImage.hasHeader(bytes) {
            self = .linux(try LinuxImage(bytes: bytes, path: path))
        } else if let header = try MultibootHeader.find(in: bytes, path: path) {
            self = .multiboot(try MultibootImage(header: header, elf: nil, bytes: bytes, path: path))
        } else {
            throw BootError(file: path, reason: .unknownKernelFormat)
        }
    }

    var path: String {
        switch self {
        case .elf(let i): i.path
        case .multiboot(let i): i.path
        case .linux(let i): i.path
        }
    }

    /// Checks that the image boots with `memorySize` bytes of RAM, `commandLine`, the
    /// `initrd` bytes (Linux: the initrd; multiboot: module 0) and, for ELF, `mode`
    /// (nil: the image's default; other formats take no mode).
    package func plan(memorySize: UInt64, commandLine: String = "", initrd: [UInt8]? = nil,
                      mode: BootMode? = nil) throws(BootError) -> BootPlan {
        try load(into: nil, memorySize: memorySize, commandLine: commandLine, initrd: initrd, mode: mode)
    }

    /// Validates as `plan` does, then writes the guest.
    @discardableResult
    func load(into memory: GuestMemory, commandLine: String = "", initrd: [UInt8]? = nil,
              mode: BootMode? = nil) throws(BootError) -> BootPlan {
        try load(into: memory, memorySize: memory.size, commandLine: commandLine, initrd: initrd, mode: mode)
    }

    /// The image split for the BIOS to load through fw_cfg (`hv.kernel` with `hv.firmware`).
    package func firmwareLoad(memorySize: UInt64, commandLine: String, initrd: [UInt8]?) throws(BootError) -> LinuxFirmwareLoad {
        switch self {
        case .linux(let image):
            return try image.firmwareLoad(memorySize: memorySize, commandLine: commandLine, initrd: initrd)
        case .elf(let image):
            throw BootError(file: image.path, reason: .notLinuxForFirmware(format: "an ELF image"))
        case .multiboot(let image):
            throw BootError(file: image.path, reason: .notLinuxForFirmware(format: "a multiboot image"))
        }
    }

    private func load(into memory: GuestMemory?, memorySize: UInt64, commandLine: String, initrd: [UInt8]?,
                      mode: BootMode?) throws(BootError) -> BootPlan {
        switch self {
        case .elf(let image):
            guard initrd == nil else { throw BootError(file: image.path, reason: .initrdNotSupported(format: "a PVH/ELF64 image")) }
            if let memory { return try BootLoader.load(image: image, into: memory, commandLine: commandLine, mode: mode) }
            return try BootLoader.plan(image: image, memorySize: memorySize, commandLine: commandLine, mode: mode)
        case .multiboot(let image):
            if let mode { throw BootError(file: image.path, reason: .modeNotForFormat(mode: mode, format: "multiboot")) }
            return try image.load(into: memory, memorySize: memorySize, commandLine: commandLine, module: initrd)
        case .linux(let image):
            if let mode { throw BootError(file: image.path, reason: .modeNotForFormat(mode: mode, format: "Linux bzImage")) }
            return try image.load(into: memory, memorySize: memorySize, commandLine: commandLine, initrd: initrd)
        }
    }
}

/// Checks and encodes the command line as every format writes it at
/// `BootLayout.commandLineAddress`: NUL-terminated, without inner NULs, within `limit`.
func encodedCommandLine(_ commandLine: String, limit: Int, path: String) throws(BootError) -> [UInt8] {
    var bytes = Array(commandLine.utf8)
    guard !bytes.contains(0) else { throw BootError(file: path, reason: .commandLineContainsNUL) }
    guard bytes.count < limit else {
        throw BootError(file: path, reason: .commandLineTooLong(length: bytes.count, limit: limit))
    }
    bytes.append(0)
    return bytes
}

/// Where an initrd or module goes: page-aligned at the top of RAM below `ceiling`, above
/// everything the kernel occupies (`kernelEnd`).
func placeTopOfLowRAM(size: Int, memorySize: UInt64, ceiling: UInt64, kernelEnd: UInt64,
                      path: String) throws(BootError) -> UInt64 {
    let top = min(min(memorySize, GuestMemory.lowMemoryLimit), ceiling)
    let need = (UInt64(size) + 0xFFF) & ~0xFFF
    guard top >= need, (top - need) & ~0xFFF >= kernelEnd else {
        throw BootError(file: path, reason: .initrdDoesNotFit(size: UInt64(size), below: top, kernelEnd: kernelEnd))
    }
    return (top - need) & ~0xFFF
}

extension GuestMemory {
    /// Writes `bytes` for the boot loader, mapping failures to a `BootError` for `path`.
    func bootWrite(_ bytes: [UInt8], at address: UInt64, path: String) throws(BootError) {
        do { try write(bytes, at: address) } catch {
            throw BootError(file: path, reason: .guestMemory("\(error)"))
        }
    }

    func bootWrite(_ bytes: ArraySlice<UInt8>, at address: UInt64, path: String) throws(BootError) {
        do { try write(bytes, at: address) } catch {
            throw BootError(file: path, reason: .guestMemory("\(error)"))
        }
    }

    func bootZero(at address: UInt64, count: UInt64, path: String) throws(BootError) {
        do { try zero(at: address, count: count) } catch {
            throw BootError(file: path, reason: .guestMemory("\(error)"))
        }
    }
}
