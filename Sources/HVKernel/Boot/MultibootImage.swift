import HVBackendKVM
import HVMemory

/// The multiboot v1 header: magic 0x1BADB002, flags, checksum (the three sum to 0), and
/// with flag 16 the a.out-kludge load addresses. It lies 4-byte aligned in the file's
/// first 8 KiB.
struct MultibootHeader: Equatable, Sendable {
    static let magic: UInt32 = 0x1BAD_B002
    static let searchLimit = 8192
    /// Flags this loader honours: 0 page-align modules, 1 memory info, 16 load addresses.
    static let pageAlignModules: UInt32 = 1 << 0
    static let memoryInfo: UInt32 = 1 << 1
    static let videoMode: UInt32 = 1 << 2
    static let addressFields: UInt32 = 1 << 16

    var fileOffset: Int
    var flags: UInt32
    var headerAddress: UInt32 = 0
    var loadAddress: UInt32 = 0
    var loadEndAddress: UInt32 = 0
    var bssEndAddress: UInt32 = 0
    var entryAddress: UInt32 = 0

    /// The first header in `bytes`, checked; nil when there is none.
    static func find(in bytes: [UInt8], path: String) throws(BootError) -> MultibootHeader? {
        let r = ELFByteReader(bytes: bytes)
        var at = 0
        while at + 12 <= min(bytes.count, searchLimit) {
            defer { at += 4 }
            guard r.u32(at) == magic else { continue }
            let flags = r.u32(at + 4)
            guard magic &+ flags &+ r.u32(at + 8) == 0 else { continue }
            func fail(_ why: String) -> BootError { BootError(file: path, reason: .badMultibootHeader(offset: at, detail: why)) }
            // Bits 0-15 are requirements: a loader that cannot meet one must refuse the image.
            let unsupported = flags & 0xFFFF & ~(pageAlignModules | memoryInfo)
            guard unsupported == 0 else {
                throw fail(unsupported & videoMode != 0
                    ? "flag 2 asks for a video mode; this loader has no framebuffer to hand over"
                    : "required flags \(bootHex(unsupported)) are not supported (only 0 and 1)")
            }
            var h = MultibootHeader(fileOffset: at, flags: flags)
            if flags & addressFields != 0 {
                guard at + 32 <= bytes.count else { throw fail("the address fields run past the end of the file") }
                h.headerAddress = r.u32(at + 12)
                h.loadAddress = r.u32(at + 16)
                h.loadEndAddress = r.u32(at + 20)
                h.bssEndAddress = r.u32(at + 24)
                h.entryAddress = r.u32(at + 28)
            }
            return h
        }
        return nil
    }
}

/// A multiboot v1 kernel: loaded from its ELF program headers, or with header flag 16
/// from the header's addresses, and entered in 32-bit protected mode with paging off,
/// EAX = 0x2BADB002 and EBX = the multiboot information structure, which carries the
/// memory sizes, the memory map, the command line and at most one module (`hv.initrd`).
///
/// Boot-area layout (below the ELF/PVH ones' stack at 0x9000, see `BootLayout`):
/// information structure 0x7000, memory map 0x7100, module list 0x7800, module name
/// 0x7880, command line 0x8000.
package struct MultibootImage: Sendable {
    static let bootMagic: UInt64 = 0x2BAD_B002
    static let infoAddress: UInt64 = 0x7000
    static let infoSize = 88
    static let memoryMapAddress: UInt64 = 0x7100
    static let moduleListAddress: UInt64 = 0x7800
    static let moduleNameAddress: UInt64 = 0x7880
    static let moduleName = "initrd"

    let path: String
    let bytes: [UInt8]
    let header: MultibootHeader
    /// (file range, guest-physical address, zeroed bytes after it).
    let loads: [(file: Range<Int>, address: UInt64, bss: UInt64)]
    let entry: UInt32

    init(header: MultibootHeader, elf: ELFImage?, bytes: [UInt8], path: String) throws(BootError) {
        func fail(_ why: String) -> BootError {
            BootError(file: path, reason: .badMultibootHeader(offset: header.fileOffset, detail: why))
        }
        self.path = path
        self.bytes = bytes
        self.header = header
        if header.flags & MultibootHeader.addressFields != 0 {
            let h = header
            guard h.headerAddress >= h.loadAddress, UInt64(h.headerAddress - h.loadAddress) <= UInt64(h.fileOffset) else {
                throw fail("header_addr \(bootHex(h.headerAddress)) and load_addr \(bootHex(h.loadAddress)) put the load start before the file")
            }
            let start = h.fileOffset - Int(h.headerAddress - h.loadAddress)
            let end: Int
            if h.loadEndAddress == 0 {
                end = bytes.count
            } else {
                guard h.loadEndAddress >= h.loadAddress,
                      start + Int(h.loadEndAddress - h.loadAddress) <= bytes.count else {
                    throw fail("load_end_addr \(bootHex(h.loadEndAddress)) is past the end of the file")
                }
                end = start + Int(h.loadEndAddress - h.loadAddress)
            }
            let loadEnd = UInt64(h.loadAddress) + UInt64(end - start)
            guard h.bssEndAddress == 0 || UInt64(h.bssEndAddress) >= loadEnd else {
                throw fail("bss_end_addr \(bootHex(h.bssEndAddress)) is below the loaded end \(bootHex(loadEnd))")
            }
            let bss = h.bssEndAddress == 0 ? 0 : UInt64(h.bssEndAddress) - loadEnd
            loads = [(start..<end, UInt64(h.loadAddress), bss)]
            guard UInt64(h.entryAddress) >= UInt64(h.loadAddress), UInt64(h.entryAddress) < loadEnd + bss else {
                throw fail("entry_addr \(bootHex(h.entryAddress)) is outside the loaded image")
            }
            entry = h.entryAddress
        } else if let elf {
            loads = elf.segments.map {
                (Int($0.fileOffset)..<Int($0.fileOffset + $0.fileSize), $0.physicalAddress, $0.memorySize - $0.fileSize)
            }
            guard elf.entry <= UInt64(UInt32.max), elf.segments.contains(where: { $0.physicalRange.contains(elf.entry) }) else {
                throw BootError(file: path, reason: .entryOutsideSegments(entry: elf.entry, mode: .pvh))
            }
            entry = UInt32(elf.entry)
        } else {
            throw fail("a non-ELF multiboot image needs the address fields (flag 16)")
        }
    }

    var ranges: [Range<UInt64>] {
        loads.map { $0.address..<($0.address + UInt64($0.file.count) + $0.bss) }
    }

    /// Plans (memory nil) or loads the image.
    func load(into memory: GuestMemory?, memorySize: UInt64, commandLine: String,
              module: [UInt8]?) throws(BootError) -> BootPlan {
        try BootLayout.checkPlacement(ranges, memorySize: memorySize, path: path)
        let cmdline = try encodedCommandLine(commandLine, limit: BootLayout.commandLineLimit, path: path)
        let map = MemoryMapEntry.pcMap(memorySize: memorySize)
        let kernelEnd = ranges.map(\.upperBound).max() ?? 0
        var moduleAddress: UInt64 = 0
        if let module {
            moduleAddress = try placeTopOfLowRAM(size: module.count, memorySize: memorySize, ceiling: 0xFFFF_F000,
                                                 kernelEnd: kernelEnd, path: path)
        }

        var info = BootBytes()
        let low = min(memorySize, GuestMemory.lowMemoryLimit)
        // Flags: 0 memory sizes, 2 command line, 3 modules, 6 memory map.
        info.append(UInt32(1 << 0 | 1 << 2 | 1 << 3 | 1 << 6))
        info.append(UInt32(BootLayout.legacyReservedStart / 1024))                 // mem_lower (KiB)
        info.append(UInt32((low - BootLayout.legacyReservedEnd) / 1024))          // mem_upper (KiB from 1 MiB)
        info.append(UInt32(0xFFFF_FFFF))                                          // boot_device: none
        info.append(UInt32(BootLayout.commandLineAddress))
        info.append(UInt32(module == nil ? 0 : 1))
        info.append(UInt32(Self.moduleListAddress))
        for _ in 0..<4 { info.append(UInt32(0)) }                                 // syms
        var mapBytes = BootBytes()
        for e in map {
            mapBytes.append(UInt32(20))                                           // size of the rest of the entry
            mapBytes.append(e.address)
            mapBytes.append(e.size)
            mapBytes.append(e.kind.rawValue)
        }
        info.append(UInt32(mapBytes.bytes.count))
        info.append(UInt32(Self.memoryMapAddress))
        while info.bytes.count < Self.infoSize { info.append(UInt8(0)) }

        var cpu = VCPURegisterState.pvh(entry: entry, startInfo: Self.infoAddress)
        cpu.rax = Self.bootMagic
        let plan = BootPlan(mode: .multiboot, cpu: cpu, startInfoAddress: Self.infoAddress, startInfo: HVMStartInfo(),
                            memoryMap: map, commandLine: cmdline,
                            loadedRanges: ranges + (module.map { [moduleAddress..<(moduleAddress + UInt64($0.count))] } ?? []))
        guard let memory else { return plan }
        try memory.bootZero(at: BootLayout.bootAreaStart, count: BootLayout.bootAreaEnd - BootLayout.bootAreaStart, path: path)
        for l in loads {
            try memory.bootWrite(bytes[l.file], at: l.address, path: path)
            try memory.bootZero(at: l.address + UInt64(l.file.count), count: l.bss, path: path)
        }
        try memory.bootWrite(BootLoader.gdtBytes(for: .pvh), at: BootLayout.gdtAddress, path: path)
        try memory.bootWrite(info.bytes, at: Self.infoAddress, path: path)
        try memory.bootWrite(mapBytes.bytes, at: Self.memoryMapAddress, path: path)
        try memory.bootWrite(cmdline, at: BootLayout.commandLineAddress, path: path)
        if let module {
            var list = BootBytes()
            list.append(UInt32(moduleAddress))
            list.append(UInt32(moduleAddress + UInt64(module.count)))
            list.append(UInt32(Self.moduleNameAddress))
            list.append(UInt32(0))
            try memory.bootWrite(list.bytes, at: Self.moduleListAddress, path: path)
            try memory.bootWrite(Array(Self.moduleName.utf8) + [0], at: Self.moduleNameAddress, path: path)
            try memory.bootWrite(module, at: moduleAddress, path: path)
        }
        return plan
    }
}
