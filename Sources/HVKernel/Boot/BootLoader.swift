import HVBackendKVM
import HVMemory

/// Everything the boot loader decided for one boot: the mode, the CPU state at entry
/// and what it wrote where. `BootLoader.plan` computes it without touching memory;
/// `BootLoader.load` computes it and writes the guest.
package struct BootPlan: Equatable, Sendable {
    var mode: BootMode
    /// The boot processor's registers at the kernel's first instruction.
    var cpu: VCPURegisterState
    /// Guest-physical address of the protocol's boot information: `struct hvm_start_info`
    /// (PVH, 64-bit entry; in RBX), the multiboot information (EBX) or Linux's boot_params (ESI).
    var startInfoAddress: UInt64
    /// What PVH and 64-bit entry write there; empty for multiboot and Linux.
    var startInfo: HVMStartInfo
    /// The memory map handed to the guest (PVH: at `BootLayout.memoryMapAddress`).
    var memoryMap: [MemoryMapEntry]
    /// Command-line bytes written at `BootLayout.commandLineAddress`, NUL included.
    var commandLine: [UInt8]
    /// Guest-physical ranges the image's segments occupy, in file order.
    var loadedRanges: [Range<UInt64>]
}

/// Loads an ELF64 kernel into guest memory and prepares the boot processor for
/// Xen PVH entry (32-bit, the default when the image has the note) or 64-bit entry
/// (`hv.boot = "elf64"`, or images without the note). Addresses: see `BootLayout`.
package enum BootLoader {
    /// Validates that `image` can boot in `mode` (nil: the image's default) with
    /// `memorySize` bytes of RAM and `commandLine`, and returns the plan.
    package static func plan(image: ELFImage, memorySize: UInt64, commandLine: String = "",
                            mode requested: BootMode? = nil) throws(BootError) -> BootPlan {
        func fail(_ r: BootError.Reason) -> BootError { BootError(file: image.path, reason: r) }
        let mode = requested ?? image.defaultMode
        try image.checkPlacement(memorySize: memorySize)
        let entry = try image.entryAddress(for: mode)

        var cmdline = Array(commandLine.utf8)
        guard !cmdline.contains(0) else { throw fail(.commandLineContainsNUL) }
        guard cmdline.count < BootLayout.commandLineLimit else {
            throw fail(.commandLineTooLong(length: cmdline.count, limit: BootLayout.commandLineLimit))
        }
        cmdline.append(0)

        let map = MemoryMapEntry.pcMap(memorySize: memorySize)
        precondition(map.count <= BootLayout.memoryMapCapacity)
        var info = HVMStartInfo()
        info.commandLineAddress = BootLayout.commandLineAddress
        info.memoryMapAddress = BootLayout.memoryMapAddress
        info.memoryMapEntries = UInt32(map.count)

        let start = BootLayout.startInfoAddress
        let cpu: VCPURegisterState = mode == .elf64
            ? .longMode(entry: entry, startInfo: start, pml4: BootLayout.pml4Address)
            : .pvh(entry: UInt32(entry), startInfo: start)
        return BootPlan(mode: mode, cpu: cpu, startInfoAddress: start, startInfo: info, memoryMap: map,
                        commandLine: cmdline, loadedRanges: image.segments.map(\.physicalRange))
    }

    /// Validates as `plan` does, then writes the guest: clears the boot area, copies
    /// every PT_LOAD segment to its p_paddr and zeroes its bss, and writes the GDT,
    /// start-info, memory map, command line and (64-bit entry) the page tables.
    @discardableResult
    static func load(image: ELFImage, into memory: GuestMemory, commandLine: String = "",
                            mode: BootMode? = nil) throws(BootError) -> BootPlan {
        let plan = try plan(image: image, memorySize: memory.size, commandLine: commandLine, mode: mode)
        do {
            try memory.zero(at: BootLayout.bootAreaStart, count: BootLayout.bootAreaEnd - BootLayout.bootAreaStart)
            for s in image.segments {
                let from = Int(s.fileOffset)
                try memory.write(image.bytes[from..<(from + Int(s.fileSize))], at: s.physicalAddress)
                try memory.zero(at: s.physicalAddress + s.fileSize, count: s.memorySize - s.fileSize)
            }
            try memory.write(gdtBytes(for: plan.mode), at: BootLayout.gdtAddress)
            try memory.write(plan.startInfo.encoded(), at: plan.startInfoAddress)
            try memory.write(plan.memoryMap.flatMap { $0.encoded() }, at: BootLayout.memoryMapAddress)
            try memory.write(plan.commandLine, at: BootLayout.commandLineAddress)
            if plan.mode.isLongMode {
                for (address, table) in identityMapTables() {
                    try memory.write(table, at: address)
                }
            }
        } catch {
            throw BootError(file: image.path, reason: .guestMemory("\(error)"))
        }
        return plan
    }

    /// The GDT: null, 0x08 unused (null), 0x10 code (32-bit for PVH, 64-bit for
    /// elf64 and linux64), 0x18 flat data, 0x20 busy TSS (16-byte system descriptor).
    /// (Every 32-bit entry — PVH, multiboot, Linux — uses the PVH table; Linux's
    /// __BOOT_CS/__BOOT_DS are 0x10/0x18, as here.)
    static func gdtBytes(for mode: BootMode) -> [UInt8] {
        let cpu: VCPURegisterState = mode.isLongMode
            ? .longMode(entry: 0, startInfo: 0, pml4: 0) : .pvh(entry: 0, startInfo: 0)
        var b = BootBytes()
        b.append(UInt64(0))
        b.append(UInt64(0))
        b.append(cpu.cs.descriptor)
        b.append(cpu.ds.descriptor)
        b.append(cpu.tr.descriptor)
        b.append(cpu.tr.base >> 32)  // upper half of the 64-bit TSS descriptor
        return b.bytes
    }

    /// Page-table entry flags.
    static let ptePresent: UInt64 = 1 << 0
    static let pteWritable: UInt64 = 1 << 1
    static let ptePageSize: UInt64 = 1 << 7

    /// The 64-bit entry's page tables: PML4[0] → PDPT, PDPT[0..3] → 4 page directories
    /// whose 2 MiB entries identity-map 0-4 GiB, as (guest address, 4 KiB table) pairs.
    static func identityMapTables() -> [(UInt64, [UInt8])] {
        func table(_ entries: [UInt64]) -> [UInt8] {
            var b = BootBytes()
            for e in entries { b.append(e) }
            for _ in entries.count..<512 { b.append(UInt64(0)) }
            return b.bytes
        }
        var tables: [(UInt64, [UInt8])] = []
        tables.append((BootLayout.pml4Address, table([BootLayout.pdptAddress | ptePresent | pteWritable])))
        tables.append((BootLayout.pdptAddress, table((0..<4).map {
            (BootLayout.pageDirectoryAddress + UInt64($0) * 0x1000) | ptePresent | pteWritable
        })))
        for pd in 0..<4 {
            let entries = (0..<512).map { i -> UInt64 in
                (UInt64(pd) << 30 | UInt64(i) << 21) | ptePresent | pteWritable | ptePageSize
            }
            tables.append((BootLayout.pageDirectoryAddress + UInt64(pd) * 0x1000, table(entries)))
        }
        return tables
    }
}
