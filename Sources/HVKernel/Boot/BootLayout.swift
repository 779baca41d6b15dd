import HVMemory

/// How the boot loader enters the guest kernel.
package enum BootMode: String, Sendable, CaseIterable, CustomStringConvertible {
    /// Xen PVH: 32-bit protected mode, paging off, EBX = `hvm_start_info` address,
    /// at the address in the image's XEN_ELFNOTE_PHYS32_ENTRY note. The default when
    /// the note exists.
    case pvh
    /// 64-bit long mode at `e_entry` with the first 4 GiB identity-mapped by 2 MiB
    /// pages; RBX and RSI = `hvm_start_info` address. `hv.boot = "elf64"`, and the
    /// default when the image has no PVH note.
    case elf64
    /// Multiboot v1: 32-bit protected mode, EAX = 0x2BADB002, EBX = multiboot info.
    case multiboot
    /// Linux boot protocol 2.02+, 32-bit entry: ESI = boot_params (the "zero page").
    case linux
    /// Linux boot protocol 2.12+ with XLF_KERNEL_64, 64-bit entry (load address +
    /// 0x200) in long mode with the first 4 GiB identity-mapped: RSI = boot_params.
    case linux64

    /// Entered in long mode, through the boot identity map.
    var isLongMode: Bool { self == .elf64 || self == .linux64 }

    package var description: String { rawValue }
}

/// The fixed guest-physical addresses the boot loader writes to. They all live in the
/// boot area `0x6000..<0x16000` of low memory (below the EBDA, above the real-mode IVT
/// and BIOS data area); an image segment may not overlap it.
///
/// | range              | contents                                                         |
/// |--------------------|------------------------------------------------------------------|
/// | `0x6000..<0x6030`  | GDT: null, 0x08 unused, 0x10 code, 0x18 data, 0x20 TSS (16 bytes)  |
/// | `0x7000..<0x7038`  | `struct hvm_start_info` (version 1)                              |
/// | `0x7040..<0x7340`  | memory map, up to 32 `hvm_memmap_table_entry`                    |
/// | `0x8000..<0x8800`  | kernel command line, NUL-terminated (2 KiB including the NUL)    |
/// | `0x9000..<0x10000` | boot stack (RSP = 0x10000 at entry)                              |
/// | `0x10000..<0x11000`| PML4 (64-bit entry only)                                         |
/// | `0x11000..<0x12000`| PDPT (64-bit entry only)                                         |
/// | `0x12000..<0x16000`| 4 page directories of 2 MiB pages covering 0-4 GiB (64-bit only) |
///
/// The memory map handed to the guest lists all of this as RAM: the guest owns it once
/// it runs (Linux copies start-info and the command line early, as the PVH ABI expects).
enum BootLayout {
    static let bootAreaStart: UInt64 = 0x6000
    static let bootAreaEnd: UInt64 = 0x16000

    static let gdtAddress: UInt64 = 0x6000
    static let startInfoAddress: UInt64 = 0x7000
    static let memoryMapAddress: UInt64 = 0x7040
    static let memoryMapCapacity = 32
    static let commandLineAddress: UInt64 = 0x8000
    /// Bytes available for the command line, including its terminating NUL.
    static let commandLineLimit = 2048
    static let stackTop: UInt64 = 0x10000
    static let pml4Address: UInt64 = 0x10000
    static let pdptAddress: UInt64 = 0x11000
    /// First of four consecutive page directories (0x12000, 0x13000, 0x14000, 0x15000).
    static let pageDirectoryAddress: UInt64 = 0x12000

    /// GDT selectors (both modes use the same table shape).
    static let codeSelector: UInt16 = 0x10
    static let dataSelector: UInt16 = 0x18
    static let tssSelector: UInt16 = 0x20
    /// 5 eight-byte slots plus the upper half of the 16-byte TSS descriptor.
    static let gdtLimit: UInt16 = 0x2F

    /// The EBDA and legacy BIOS/VGA area the memory map marks reserved.
    static let legacyReservedStart: UInt64 = 0x9FC00
    static let legacyReservedEnd: UInt64 = 0x10_0000
    static let ioapicBase: UInt64 = 0xFEC0_0000
    static let lapicBase: UInt64 = 0xFEE0_0000

    /// Smallest guest RAM the layout works with: the boot area and 1 MiB.
    static let minimumMemorySize: UInt64 = 0x10_0000

    /// Guest-physical ranges that are RAM for `memorySize` bytes of memory (the same
    /// split as `GuestMemory`: RAM above 0xC0000000 is relocated to 4 GiB).
    static func ramRanges(memorySize: UInt64) -> [Range<UInt64>] {
        let low = min(memorySize, GuestMemory.lowMemoryLimit)
        var ranges: [Range<UInt64>] = [0..<low]
        if memorySize > low { ranges.append(0x1_0000_0000..<(0x1_0000_0000 + memorySize - low)) }
        return ranges
    }

    /// Checks that every range lies in guest RAM of `memorySize` bytes and outside the
    /// boot area and the legacy BIOS area (for loaders without ELF program headers).
    static func checkPlacement(_ ranges: [Range<UInt64>], memorySize: UInt64, path: String) throws(BootError) {
        func fail(_ r: BootError.Reason) -> BootError { BootError(file: path, reason: r) }
        guard memorySize >= minimumMemorySize else {
            throw fail(.memoryTooSmall(size: memorySize, minimum: minimumMemorySize))
        }
        let ram = ramRanges(memorySize: memorySize)
        for (i, r) in ranges.enumerated() {
            guard ram.contains(where: { $0.lowerBound <= r.lowerBound && r.upperBound <= $0.upperBound }) else {
                throw fail(.segmentBeyondRAM(index: i, start: r.lowerBound, end: r.upperBound, memorySize: memorySize))
            }
            for area in forbiddenAreas where area.range.overlaps(r) {
                throw fail(.segmentOverlapsReserved(index: i, start: r.lowerBound, end: r.upperBound, area: area.name,
                                                    areaStart: area.range.lowerBound, areaEnd: area.range.upperBound))
            }
        }
    }

    /// Ranges an image may not load into, with a name for messages.
    static let forbiddenAreas: [(name: String, range: Range<UInt64>)] = [
        ("boot area", bootAreaStart..<bootAreaEnd),
        ("reserved EBDA/BIOS area", legacyReservedStart..<legacyReservedEnd),
    ]
}

/// One entry of the E820-style memory map in `hvm_start_info`
/// (`struct hvm_memmap_table_entry`: addr u64, size u64, type u32, reserved u32).
struct MemoryMapEntry: Equatable, Sendable, CustomStringConvertible {
    enum Kind: UInt32, Sendable {
        case ram = 1
        case reserved = 2
    }

    var address: UInt64
    var size: UInt64
    var kind: Kind

    init(address: UInt64, size: UInt64, kind: Kind) {
        self.address = address
        self.size = size
        self.kind = kind
    }

    static let encodedSize = 24

    var description: String {
        "\(bootHex(address))-\(bootHex(address + size)) \(kind == .ram ? "RAM" : "reserved")"
    }

    /// The PC memory map for `memorySize` bytes of guest RAM, sorted by address:
    /// RAM 0-0x9FC00, reserved 0x9FC00-1 MiB, RAM 1 MiB-min(size, 3 GiB), the I/O APIC
    /// and local APIC pages reserved, and RAM from 4 GiB for the rest. Empty ranges
    /// are left out.
    static func pcMap(memorySize: UInt64) -> [MemoryMapEntry] {
        let low = min(memorySize, GuestMemory.lowMemoryLimit)
        var map: [MemoryMapEntry] = []
        map.append(.init(address: 0, size: min(low, BootLayout.legacyReservedStart), kind: .ram))
        map.append(.init(address: BootLayout.legacyReservedStart,
                         size: BootLayout.legacyReservedEnd - BootLayout.legacyReservedStart, kind: .reserved))
        if low > BootLayout.legacyReservedEnd {
            map.append(.init(address: BootLayout.legacyReservedEnd, size: low - BootLayout.legacyReservedEnd, kind: .ram))
        }
        map.append(.init(address: BootLayout.ioapicBase, size: 0x1000, kind: .reserved))
        map.append(.init(address: BootLayout.lapicBase, size: 0x1000, kind: .reserved))
        if memorySize > low {
            map.append(.init(address: 0x1_0000_0000, size: memorySize - low, kind: .ram))
        }
        return map.filter { $0.size > 0 }
    }

    func encoded() -> [UInt8] {
        var b = BootBytes()
        b.append(address)
        b.append(size)
        b.append(kind.rawValue)
        b.append(UInt32(0))
        return b.bytes
    }
}

/// `struct hvm_start_info` (Xen's `arch-x86/hvm/start_info.h`, version 1), 56 bytes.
struct HVMStartInfo: Equatable, Sendable {
    static let magic: UInt32 = 0x336E_C578
    static let encodedSize = 56

    var version: UInt32 = 1
    var flags: UInt32 = 0
    var moduleCount: UInt32 = 0
    var moduleListAddress: UInt64 = 0
    var commandLineAddress: UInt64 = 0
    var rsdpAddress: UInt64 = 0
    var memoryMapAddress: UInt64 = 0
    var memoryMapEntries: UInt32 = 0

    init() {}

    func encoded() -> [UInt8] {
        var b = BootBytes()
        b.append(Self.magic)
        b.append(version)
        b.append(flags)
        b.append(moduleCount)
        b.append(moduleListAddress)
        b.append(commandLineAddress)
        b.append(rsdpAddress)
        b.append(memoryMapAddress)
        b.append(memoryMapEntries)
        b.append(UInt32(0))
        return b.bytes
    }
}

struct BootBytes {
    var bytes: [UInt8] = []
    mutating func append<T: FixedWidthInteger>(_ v: T) {
        withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) }
    }
}
