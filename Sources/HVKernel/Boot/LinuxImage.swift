import HVBackendKVM
import HVMemory

/// A Linux x86 kernel (bzImage) booted without firmware: the protected-mode part (after
/// the `setup_sects + 1` real-mode sectors) is loaded at 1 MiB. A kernel that offers the
/// 64-bit entry (protocol 2.12+, XLF_KERNEL_64, as every x86-64 kernel since 3.8 does)
/// is entered there, at 1 MiB + 0x200 in long mode with the boot identity map, as
/// Firecracker and cloud-hypervisor do; others by the 32-bit entry at 1 MiB in flat
/// 32-bit mode with paging off. Both with interrupts off, CS/DS 0x10/0x18
/// (__BOOT_CS/__BOOT_DS) and ESI = boot_params. boot_params (the
/// "zero page") holds a copy of the image's setup header with the loader's fields set
/// (type_of_loader 0xFF, cmd_line_ptr, ramdisk_image/size) and the E820 map.
///
/// Needs protocol 2.02 (cmd_line_ptr) and LOADED_HIGH (a bzImage). Boot-area layout:
/// boot_params 0x7000-0x7FFF, command line 0x8000, stack below 0x10000.
package struct LinuxImage: Sendable {
    /// Setup-header and boot_params offsets (Documentation/arch/x86/boot.rst, zero-page.rst).
    enum Offset {
        static let altMemK = 0x1E0
        static let e820Entries = 0x1E8
        static let setupSects = 0x1F1
        static let bootFlag = 0x1FE
        static let jump = 0x200
        static let header = 0x202
        static let version = 0x206
        static let typeOfLoader = 0x210
        static let loadFlags = 0x211
        static let code32Start = 0x214
        static let heapEndPtr = 0x224
        static let ramdiskImage = 0x218
        static let ramdiskSize = 0x21C
        static let cmdLinePtr = 0x228
        static let initrdAddrMax = 0x22C
        static let cmdlineSize = 0x238
        static let xloadflags = 0x236
        static let initSize = 0x260
        static let e820Table = 0x2D0
    }

    static let bootParamsAddress: UInt64 = 0x7000
    static let bootParamsSize = 4096
    static let loadAddress: UInt64 = 0x10_0000
    static let e820Capacity = 128
    static let loadedHigh: UInt8 = 0x01
    /// xloadflags XLF_KERNEL_64: a 64-bit entry at the load address + 0x200.
    static let kernel64: UInt16 = 0x0001
    static let entry64Offset: UInt64 = 0x200

    let path: String
    let bytes: [UInt8]
    let version: UInt16
    /// Start of the protected-mode kernel in the file.
    let kernelOffset: Int
    /// Bytes the kernel needs from the load address while it decompresses (init_size,
    /// 2.10+), at least its own size.
    let footprint: UInt64
    /// How `load` enters it: `.linux64` when the header offers the 64-bit entry.
    let mode: BootMode

    static func hasHeader(_ bytes: [UInt8]) -> Bool {
        bytes.count >= Offset.header + 4 && Array(bytes[Offset.header..<(Offset.header + 4)]) == Array("HdrS".utf8)
    }

    init(bytes: [UInt8], path: String) throws(BootError) {
        func fail(_ why: String) -> BootError { BootError(file: path, reason: .badLinuxImage(why)) }
        let r = ELFByteReader(bytes: bytes)
        guard bytes.count >= 0x264 else { throw fail("the setup header is cut off (\(bytes.count) bytes)") }
        guard r.u16(Offset.bootFlag) == 0xAA55 else { throw fail("boot_flag at 0x1FE is not 0xAA55") }
        let version = r.u16(Offset.version)
        guard version >= 0x0202 else {
            throw fail("boot protocol version \(bootHex(version)) is older than 2.02 (0x202, which adds cmd_line_ptr)")
        }
        guard bytes[Offset.loadFlags] & Self.loadedHigh != 0 else {
            throw fail("not a bzImage (loadflags LOADED_HIGH clear): a zImage loads below 1 MiB and needs real mode")
        }
        let sects = bytes[Offset.setupSects] == 0 ? 4 : Int(bytes[Offset.setupSects])
        let offset = (sects + 1) * 512
        guard offset < bytes.count else { throw fail("setup_sects \(sects) leaves no protected-mode kernel in the file") }
        self.path = path
        self.bytes = bytes
        self.version = version
        kernelOffset = offset
        let initSize = version >= 0x020A ? UInt64(r.u32(Offset.initSize)) : 0
        footprint = max(UInt64(bytes.count - offset), initSize)
        mode = version >= 0x020C && r.u16(Offset.xloadflags) & Self.kernel64 != 0 ? .linux64 : .linux
    }

    /// Plans (memory nil) or loads the kernel.
    func load(into memory: GuestMemory?, memorySize: UInt64, commandLine: String,
              initrd: [UInt8]?) throws(BootError) -> BootPlan {
        let r = ELFByteReader(bytes: bytes)
        let kernelRange = Self.loadAddress..<(Self.loadAddress + footprint)
        try BootLayout.checkPlacement([kernelRange], memorySize: memorySize, path: path)
        let limit = version >= 0x0206 ? min(Int(r.u32(Offset.cmdlineSize)) + 1, BootLayout.commandLineLimit) : 256
        let cmdline = try encodedCommandLine(commandLine, limit: limit, path: path)
        let map = MemoryMapEntry.pcMap(memorySize: memorySize)

        var params = [UInt8](repeating: 0, count: Self.bootParamsSize)
        // The setup header runs from 0x1F1 to 0x202 + the jump's offset byte at 0x201.
        let headerEnd = min(Offset.header + Int(bytes[Offset.jump + 1]), bytes.count, Self.bootParamsSize)
        params.replaceSubrange(Offset.setupSects..<headerEnd, with: bytes[Offset.setupSects..<headerEnd])
        func put32(_ at: Int, _ v: UInt64) {
            for i in 0..<4 { params[at + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(i))) }
        }
        params[Offset.typeOfLoader] = 0xFF                       // undefined boot loader
        put32(Offset.cmdLinePtr, BootLayout.commandLineAddress)
        let low = min(memorySize, GuestMemory.lowMemoryLimit)
        put32(Offset.altMemK, (low - BootLayout.legacyReservedEnd) / 1024)
        var initrdAddress: UInt64 = 0
        if let initrd {
            let ceiling = version >= 0x0203 ? UInt64(r.u32(Offset.initrdAddrMax)) + 1 : 0x3800_0000
            initrdAddress = try placeTopOfLowRAM(size: initrd.count, memorySize: memorySize, ceiling: ceiling,
                                                 kernelEnd: kernelRange.upperBound, path: path)
            put32(Offset.ramdiskImage, initrdAddress)
            put32(Offset.ramdiskSize, UInt64(initrd.count))
        }
        precondition(map.count <= Self.e820Capacity)
        params[Offset.e820Entries] = UInt8(map.count)
        var e820 = BootBytes()
        for e in map {
            e820.append(e.address)
            e820.append(e.size)
            e820.append(e.kind.rawValue)
        }
        params.replaceSubrange(Offset.e820Table..<(Offset.e820Table + e820.bytes.count), with: e820.bytes)

        var cpu: VCPURegisterState
        if mode == .linux64 {
            cpu = .longMode(entry: Self.loadAddress + Self.entry64Offset, startInfo: Self.bootParamsAddress,
                            pml4: BootLayout.pml4Address)
            cpu.rbx = 0
        } else {
            cpu = .pvh(entry: UInt32(Self.loadAddress), startInfo: 0)
            cpu.rsi = Self.bootParamsAddress
        }
        let plan = BootPlan(mode: mode, cpu: cpu, startInfoAddress: Self.bootParamsAddress, startInfo: HVMStartInfo(),
                            memoryMap: map, commandLine: cmdline,
                            loadedRanges: [kernelRange] + (initrd.map { [initrdAddress..<(initrdAddress + UInt64($0.count))] } ?? []))
        guard let memory else { return plan }
        try memory.bootZero(at: BootLayout.bootAreaStart, count: BootLayout.bootAreaEnd - BootLayout.bootAreaStart, path: path)
        try memory.bootWrite(bytes[kernelOffset...], at: Self.loadAddress, path: path)
        try memory.bootWrite(BootLoader.gdtBytes(for: mode), at: BootLayout.gdtAddress, path: path)
        if mode == .linux64 {
            for (address, table) in BootLoader.identityMapTables() { try memory.bootWrite(table, at: address, path: path) }
        }
        try memory.bootWrite(params, at: Self.bootParamsAddress, path: path)
        try memory.bootWrite(cmdline, at: BootLayout.commandLineAddress, path: path)
        if let initrd { try memory.bootWrite(initrd, at: initrdAddress, path: path) }
        return plan
    }
}

/// A Linux image split for a BIOS to load through fw_cfg (QEMU's `-kernel` with
/// firmware): the real-mode setup sectors, with the loader's fields set in their header,
/// go to `setupAddress` and the protected-mode part to `kernelAddress`; a boot ROM
/// (QEMU's linuxboot_dma.bin) copies both, the command line and the initrd, then jumps
/// to the setup code in real mode, which calls the BIOS as it would under a boot loader.
package struct LinuxFirmwareLoad: Equatable, Sendable {
    /// Where QEMU puts a 2.02+ bzImage: setup at 0x10000, command line at 0x20000
    /// (so heap_end_ptr can reach 0xFE00), the kernel at 1 MiB.
    static let setupAddress: UInt64 = 0x1_0000
    static let commandLineAddress: UInt64 = 0x2_0000
    /// Room SeaBIOS keeps at the top of low RAM for its tables (its high zone is 256 KiB).
    static let firmwareReserve: UInt64 = 0x10_0000
    static let canUseHeap: UInt8 = 0x80

    var setup: [UInt8]
    var kernel: [UInt8]
    var commandLine: [UInt8]
    var initrd: [UInt8]
    var initrdAddress: UInt64
}

extension LinuxImage {
    func firmwareLoad(memorySize: UInt64, commandLine: String, initrd: [UInt8]?) throws(BootError) -> LinuxFirmwareLoad {
        typealias L = LinuxFirmwareLoad
        let r = ELFByteReader(bytes: bytes)
        try BootLayout.checkPlacement([Self.loadAddress..<(Self.loadAddress + footprint)], memorySize: memorySize, path: path)
        let limit = version >= 0x0206 ? min(Int(r.u32(Offset.cmdlineSize)) + 1, BootLayout.commandLineLimit) : 256
        let cmdline = try encodedCommandLine(commandLine, limit: limit, path: path)
        var setup = Array(bytes[0..<kernelOffset])
        func put(_ at: Int, _ v: UInt64, _ width: Int) {
            for i in 0..<width { setup[at + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(i))) }
        }
        setup[Offset.typeOfLoader] = 0xFF
        setup[Offset.loadFlags] |= L.canUseHeap
        put(Offset.heapEndPtr, L.commandLineAddress - L.setupAddress - 0x200, 2)
        put(Offset.cmdLinePtr, L.commandLineAddress, 4)
        var initrdAddress: UInt64 = 0
        if let initrd {
            let addrMax = version >= 0x0203 ? UInt64(r.u32(Offset.initrdAddrMax)) + 1 : 0x3800_0000
            let low = min(memorySize, GuestMemory.lowMemoryLimit)
            let ceiling = min(addrMax, low > L.firmwareReserve ? low - L.firmwareReserve : 0)
            initrdAddress = try placeTopOfLowRAM(size: initrd.count, memorySize: memorySize, ceiling: ceiling,
                                                 kernelEnd: Self.loadAddress + footprint, path: path)
            put(Offset.ramdiskImage, initrdAddress, 4)
            put(Offset.ramdiskSize, UInt64(initrd.count), 4)
        }
        return LinuxFirmwareLoad(setup: setup, kernel: Array(bytes[kernelOffset...]), commandLine: cmdline,
                                 initrd: initrd ?? [], initrdAddress: initrdAddress)
    }
}
