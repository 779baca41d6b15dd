import Testing
@testable import HVBackendKVM
@testable import HVKernel

/// Multiboot v1 and Linux boot-protocol images built as bytes: format recognition,
/// the entry state and placement each protocol promises, and refusals that name the file.
@Suite struct BootKernelFormatTests {
    static let mib: UInt64 = 1 << 20

    static func put32(_ b: inout [UInt8], _ at: Int, _ v: UInt32) {
        for i in 0..<4 { b[at + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(i))) }
    }

    /// An a.out-kludge multiboot image: header at offset 0 loaded at 1 MiB, entry 1 MiB + 0x40.
    static func multiboot(flags: UInt32 = 0x0001_0003, size: Int = 0x1000, bssEnd: UInt32 = 0x10_2000) -> [UInt8] {
        var b = [UInt8](repeating: 0x90, count: size)
        put32(&b, 0, 0x1BAD_B002)
        put32(&b, 4, flags)
        put32(&b, 8, 0 &- (0x1BAD_B002 &+ flags))
        put32(&b, 12, 0x10_0000)        // header_addr
        put32(&b, 16, 0x10_0000)        // load_addr
        put32(&b, 20, 0)                // load_end_addr: the whole file
        put32(&b, 24, bssEnd)
        put32(&b, 28, 0x10_0040)        // entry_addr
        return b
    }

    /// A bzImage with `setupSects` real-mode sectors and a protected-mode part of `kernel` bytes.
    static func bzImage(version: UInt16 = 0x020A, loadFlags: UInt8 = 1, kernel: Int = 0x800,
                        initSize: UInt32 = 0x4000, xloadflags: UInt8 = 0) -> [UInt8] {
        var b = [UInt8](repeating: 0, count: 2 * 512 + kernel)
        b[0x1F1] = 1
        b[0x1FE] = 0x55; b[0x1FF] = 0xAA
        b[0x200] = 0xEB; b[0x201] = 0x66
        b.replaceSubrange(0x202..<0x206, with: Array("HdrS".utf8))
        b[0x206] = UInt8(version & 0xFF); b[0x207] = UInt8(version >> 8)
        b[0x211] = loadFlags
        put32(&b, 0x22C, 0x37FF_FFFF)
        put32(&b, 0x238, 255)
        put32(&b, 0x260, initSize)
        b[0x236] = xloadflags
        return b
    }

    @Test func multibootAOutKludgeEntersWithMagicAndInfo() throws {
        let image = try KernelImage(bytes: Self.multiboot(), path: "mb.bin")
        guard case .multiboot = image else { Issue.record("not multiboot: \(image)"); return }
        let plan = try image.plan(memorySize: 64 * Self.mib, commandLine: "a=1", initrd: [1, 2, 3])
        #expect(plan.mode == .multiboot)
        #expect(plan.cpu.rip == 0x10_0040 && plan.cpu.rax == 0x2BAD_B002 && plan.cpu.rbx == 0x7000)
        #expect(plan.cpu.cr0 & 1 == 1 && plan.cpu.cr0 & (1 << 31) == 0, "protected mode, paging off")
        #expect(plan.loadedRanges[0] == 0x10_0000..<0x10_2000, "file then bss up to bss_end_addr")
        // Module 0 page-aligned at the top of RAM.
        #expect(plan.loadedRanges[1] == (64 * Self.mib - 0x1000)..<(64 * Self.mib - 0x1000 + 3))
    }

    @Test func multibootRefusalsNameTheFileAndReason() {
        #expect(throws: BootError(file: "v.bin", reason: .badMultibootHeader(
            offset: 0, detail: "flag 2 asks for a video mode; this loader has no framebuffer to hand over"))) {
            _ = try KernelImage(bytes: Self.multiboot(flags: 0x0001_0007), path: "v.bin")
        }
        #expect(throws: BootError(file: "n.bin", reason: .badMultibootHeader(
            offset: 0, detail: "a non-ELF multiboot image needs the address fields (flag 16)"))) {
            _ = try KernelImage(bytes: Self.multiboot(flags: 0x3), path: "n.bin")
        }
        var bad = Self.multiboot()
        Self.put32(&bad, 28, 0x20_0000)                 // entry past the image
        #expect(throws: BootError.self) { _ = try KernelImage(bytes: bad, path: "e.bin") }
        #expect(throws: BootError(file: "z.bin", reason: .unknownKernelFormat)) {
            _ = try KernelImage(bytes: [UInt8](repeating: 0, count: 4096), path: "z.bin")
        }
    }

    @Test func linuxEntersAtOneMiBWithBootParamsInESI() throws {
        let image = try KernelImage(bytes: Self.bzImage(), path: "bz")
        let plan = try image.plan(memorySize: 64 * Self.mib, commandLine: "console=ttyS0", initrd: [UInt8](repeating: 7, count: 5000))
        #expect(plan.mode == .linux)
        #expect(plan.cpu.rip == 0x10_0000 && plan.cpu.rsi == 0x7000 && plan.cpu.rbx == 0)
        #expect(plan.cpu.cs.selector == 0x10 && plan.cpu.ds.selector == 0x18, "__BOOT_CS, __BOOT_DS")
        #expect(plan.loadedRanges[0] == 0x10_0000..<0x10_4000, "init_size covers the decompression footprint")
        #expect(plan.loadedRanges[1].lowerBound == 64 * Self.mib - 0x2000 && plan.loadedRanges[1].count == 5000)
        #expect(plan.commandLine == Array("console=ttyS0".utf8) + [0])
    }

    /// XLF_KERNEL_64 (protocol 2.12+): long mode at 1 MiB + 0x200 through the identity
    /// map, RSI = boot_params; the flag in an older header is not trusted.
    @Test func linux64BitEntryWhenTheHeaderOffersIt() throws {
        let plan = try KernelImage(bytes: Self.bzImage(version: 0x020C, xloadflags: 1), path: "bz64").plan(memorySize: 64 * Self.mib)
        #expect(plan.mode == .linux64)
        #expect(plan.cpu.rip == 0x10_0200 && plan.cpu.rsi == 0x7000 && plan.cpu.rbx == 0)
        #expect(plan.cpu.efer & (1 << 10) != 0 && plan.cpu.cr0 & (1 << 31) != 0 && plan.cpu.cr3 == 0x10000, "long mode, paging")
        #expect(plan.cpu.cs.selector == 0x10 && plan.cpu.cs.l && plan.cpu.ds.selector == 0x18)
        let old = try KernelImage(bytes: Self.bzImage(version: 0x020B, xloadflags: 1), path: "bz").plan(memorySize: 64 * Self.mib)
        #expect(old.mode == .linux && old.cpu.rip == 0x10_0000)
    }

    @Test func linuxRefusals() throws {
        #expect(throws: BootError(file: "old", reason: .badLinuxImage(
            "boot protocol version 0x201 is older than 2.02 (0x202, which adds cmd_line_ptr)"))) {
            _ = try KernelImage(bytes: Self.bzImage(version: 0x0201), path: "old")
        }
        #expect(throws: BootError(file: "zimage", reason: .badLinuxImage(
            "not a bzImage (loadflags LOADED_HIGH clear): a zImage loads below 1 MiB and needs real mode"))) {
            _ = try KernelImage(bytes: Self.bzImage(loadFlags: 0), path: "zimage")
        }
        let image = try KernelImage(bytes: Self.bzImage(), path: "bz")
        // cmdline_size 255: 255 characters plus the NUL fit, 256 do not.
        _ = try image.plan(memorySize: 64 * Self.mib, commandLine: String(repeating: "x", count: 255))
        #expect(throws: BootError(file: "bz", reason: .commandLineTooLong(length: 256, limit: 256))) {
            _ = try image.plan(memorySize: 64 * Self.mib, commandLine: String(repeating: "x", count: 256))
        }
        #expect(throws: BootError.self) {
            _ = try image.plan(memorySize: 4 * Self.mib, initrd: [UInt8](repeating: 0, count: 4 << 20))
        }
        #expect(throws: BootError(file: "bz", reason: .modeNotForFormat(mode: .elf64, format: "Linux bzImage"))) {
            _ = try image.plan(memorySize: 64 * Self.mib, mode: .elf64)
        }
    }
}
