import Foundation
import Testing
@testable import HVBackendKVM
@testable import HVDevices
@testable import HVHostIO
@testable import HVKernel
@testable import HVMemory
@testable import HVSched
@testable import HVSupport

@Suite struct BootLoaderTests {
    private func memory(_ size: UInt64, fill: UInt8 = 0xAA) throws -> GuestMemory {
        let m = try GuestMemory(size: size)
        memset(m.pointer(at: 0, length: Int(size))!, Int32(fill), Int(size))
        return m
    }

    private func u32(_ m: GuestMemory, _ a: UInt64) throws -> UInt32 { try m.load(UInt32.self, at: a) }
    private func u64(_ m: GuestMemory, _ a: UInt64) throws -> UInt64 { try m.load(UInt64.self, at: a) }

    @Test func pvhLoadPlacesSegmentsAndZeroesBSS() throws {
        let image = try ELFImage(bytes: BootTestELF.kernel().bytes(), path: "k.elf")
        let mem = try memory(8 << 20)
        let plan = try BootLoader.load(image: image, into: mem, commandLine: "console=ttyS0 quiet")
        #expect(plan.mode == .pvh)
        #expect(try mem.read(at: 0x10_0000, count: 64) == (0..<64).map { UInt8($0) })
        #expect(try mem.read(at: 0x20_0000, count: 100) == [UInt8](repeating: 0x5A, count: 100))
        #expect(try mem.read(at: 0x20_0064, count: 0x3000 - 100).allSatisfy { $0 == 0 })
        #expect(try mem.read(at: 0x20_3000, count: 16) == [UInt8](repeating: 0xAA, count: 16))  // past p_memsz: untouched
        #expect(plan.loadedRanges == [0x10_0000..<0x10_0040, 0x20_0000..<0x20_3000])
    }

    @Test func pvhStartInfoMemoryMapAndCommandLine() throws {
        let image = try ELFImage(bytes: BootTestELF.kernel().bytes(), path: "k.elf")
        let mem = try memory(8 << 20)
        let plan = try BootLoader.load(image: image, into: mem, commandLine: "console=ttyS0 quiet")
        let si: UInt64 = 0x7000
        #expect(plan.startInfoAddress == si)
        #expect(try u32(mem, si) == 0x336E_C578)       // magic
        #expect(try u32(mem, si + 4) == 1)             // version
        #expect(try u32(mem, si + 8) == 0)             // flags
        #expect(try u32(mem, si + 12) == 0)            // nr_modules
        #expect(try u64(mem, si + 16) == 0)            // modlist_paddr
        #expect(try u64(mem, si + 24) == 0x8000)       // cmdline_paddr
        #expect(try u64(mem, si + 32) == 0)            // rsdp_paddr
        #expect(try u64(mem, si + 40) == 0x7040)       // memmap_paddr
        #expect(try u32(mem, si + 48) == 5)            // memmap_entries
        #expect(try u32(mem, si + 52) == 0)            // reserved

        let expected: [(UInt64, UInt64, UInt32)] = [
            (0, 0x9FC00, 1), (0x9FC00, 0x60400, 2), (0x10_0000, 0x70_0000, 1),
            (0xFEC0_0000, 0x1000, 2), (0xFEE0_0000, 0x1000, 2),
        ]
        for (i, e) in expected.enumerated() {
            let at = 0x7040 + UInt64(i) * 24
            #expect(try u64(mem, at) == e.0)
            #expect(try u64(mem, at + 8) == e.1)
            #expect(try u32(mem, at + 16) == e.2)
            #expect(try u32(mem, at + 20) == 0)
        }
        #expect(try mem.read(at: 0x8000, count: 20) == Array("console=ttyS0 quiet".utf8) + [0])
    }

    @Test func pvhCPUStateAndGDT() throws {
        let image = try ELFImage(bytes: BootTestELF.kernel().bytes(), path: "k.elf")
        let mem = try memory(8 << 20)
        let cpu = try BootLoader.load(image: image, into: mem).cpu
        #expect(cpu.rip == 0x10_0020)
        #expect(cpu.rbx == 0x7000)
        #expect(cpu.rflags == 0x2)
        #expect(cpu.cr0 == 0x11)
        #expect(cpu.cr3 == 0 && cpu.cr4 == 0 && cpu.efer == 0)
        #expect(cpu.gdt == .init(base: 0x6000, limit: 0x2F))
        #expect(cpu.cs == .init(selector: 0x10, base: 0, limit: 0xFFFF_FFFF, type: 0xB, present: true, dpl: 0,
                                db: true, s: true, l: false, g: true, avl: false, unusable: false))
        for seg in [cpu.ds, cpu.es, cpu.fs, cpu.gs, cpu.ss] {
            #expect(seg.selector == 0x18 && seg.type == 0x3 && seg.db && seg.g && seg.present && seg.limit == 0xFFFF_FFFF)
        }
        #expect(cpu.tr.selector == 0x20 && cpu.tr.type == 0xB && cpu.tr.present && !cpu.tr.unusable)
        #expect(cpu.tr.base == 0 && cpu.tr.limit == 0x67 && !cpu.tr.s)
        #expect(cpu.ldtr.unusable)
        // The GDT in memory matches the selectors.
        #expect(try u64(mem, 0x6000) == 0)
        #expect(try u64(mem, 0x6008) == 0)
        #expect(try u64(mem, 0x6010) == 0x00CF_9B00_0000_FFFF)
        #expect(try u64(mem, 0x6018) == 0x00CF_9300_0000_FFFF)
        #expect(try u64(mem, 0x6020) == 0x0000_8B00_0000_0067)
        #expect(try u64(mem, 0x6028) == 0)
    }

    @Test func elf64ModeBuildsIdentityMapAndLongModeState() throws {
        // The PVH image forced into 64-bit entry, and an image without the note (auto).
        for (elf, mode) in [(BootTestELF.kernel(), BootMode?.some(.elf64)), (BootTestELF.kernel(pvh: false), nil)] {
            let image = try ELFImage(bytes: elf.bytes(), path: "k.elf")
            let mem = try memory(8 << 20)
            let plan = try BootLoader.load(image: image, into: mem, commandLine: "x", mode: mode)
            #expect(plan.mode == .elf64)
            let cpu = plan.cpu
            #expect(cpu.rip == 0x10_0010)
            #expect(cpu.rbx == 0x7000 && cpu.rsi == 0x7000)
            #expect(cpu.rflags == 0x2)
            #expect(cpu.cr0 == 0x8000_0011)
            #expect(cpu.cr3 == 0x10000)
            #expect(cpu.cr4 == 0x20)
            #expect(cpu.efer == 0x500)
            #expect(cpu.cs.selector == 0x10 && cpu.cs.l && !cpu.cs.db && cpu.cs.type == 0xB)
            #expect(cpu.ss.selector == 0x18)
            #expect(try u64(mem, 0x6010) == 0x00AF_9B00_0000_FFFF)
            #expect(try u64(mem, 0x6018) == 0x00CF_9300_0000_FFFF)

            #expect(try u64(mem, 0x10000) == 0x11003)              // PML4[0] → PDPT
            #expect(try mem.read(at: 0x10008, count: 4096 - 8).allSatisfy { $0 == 0 })
            for i in 0..<4 { #expect(try u64(mem, 0x11000 + UInt64(i) * 8) == 0x12003 + UInt64(i) * 0x1000) }
            #expect(try u64(mem, 0x11020) == 0)
            #expect(try u64(mem, 0x12000) == 0x83)                 // 0-2 MiB
            #expect(try u64(mem, 0x12008) == 0x20_0083)            // 2-4 MiB
            #expect(try u64(mem, 0x13000) == 0x4000_0083)          // 1 GiB
            #expect(try u64(mem, 0x15FF8) == 0xFFE0_0083)          // last 2 MiB below 4 GiB
            #expect(try u32(mem, 0x7000) == 0x336E_C578)
        }
    }

    @Test func reloadClearsTheBootArea() throws {
        let image = try ELFImage(bytes: BootTestELF.kernel().bytes(), path: "k.elf")
        let mem = try memory(8 << 20)
        try BootLoader.load(image: image, into: mem, commandLine: String(repeating: "a", count: 500), mode: .elf64)
        try BootLoader.load(image: image, into: mem, commandLine: "short", mode: .pvh)
        #expect(try u64(mem, 0x10000) == 0)  // no stale page tables
        #expect(try mem.read(at: 0x8000, count: 8) == Array("short".utf8) + [0, 0, 0])
    }

    @Test func commandLineLimit() throws {
        let image = try ELFImage(bytes: BootTestELF.kernel().bytes(), path: "k.elf")
        _ = try BootLoader.plan(image: image, memorySize: 8 << 20, commandLine: String(repeating: "x", count: 2047))
        let e = #expect(throws: BootError.self) {
            try BootLoader.plan(image: image, memorySize: 8 << 20, commandLine: String(repeating: "x", count: 2048))
        }
        #expect(e?.reason == .commandLineTooLong(length: 2048, limit: 2048))
        #expect(e?.description == "k.elf: kernel command line is 2048 bytes, the limit is 2047 (plus the terminating NUL)")
        #expect(throws: BootError(file: "k.elf", reason: .commandLineContainsNUL)) {
            try BootLoader.plan(image: image, memorySize: 8 << 20, commandLine: "a\u{0}b")
        }
    }

    @Test func loadRejectsImagesThatDoNotFit() throws {
        let image = try ELFImage(bytes: BootTestELF.kernel().bytes(), path: "k.elf")
        let small = try memory(2 << 20)
        let e = #expect(throws: BootError.self) { try BootLoader.load(image: image, into: small) }
        if case .segmentBeyondRAM(index: 1, _, _, _)? = e?.reason {} else { Issue.record("got \(String(describing: e))") }
        #expect(try small.read(at: 0x10_0000, count: 4) == [0xAA, 0xAA, 0xAA, 0xAA])  // nothing written
        let tiny = try memory(512 << 10)
        #expect(throws: BootError(file: "k.elf", reason: .memoryTooSmall(size: 512 << 10, minimum: 1 << 20))) {
            try BootLoader.load(image: image, into: tiny)
        }
        let noNote = try ELFImage(bytes: BootTestELF.kernel(pvh: false).bytes(), path: "k.elf")
        #expect(throws: BootError(file: "k.elf", reason: .pvhNoteMissing)) {
            try BootLoader.plan(image: noNote, memorySize: 8 << 20, mode: .pvh)
        }
    }

    @Test func memoryMapAboveThePCIHole() {
        #expect(MemoryMapEntry.pcMap(memorySize: 4 << 30) == [
            .init(address: 0, size: 0x9FC00, kind: .ram),
            .init(address: 0x9FC00, size: 0x60400, kind: .reserved),
            .init(address: 0x10_0000, size: 0xC000_0000 - 0x10_0000, kind: .ram),
            .init(address: 0xFEC0_0000, size: 0x1000, kind: .reserved),
            .init(address: 0xFEE0_0000, size: 0x1000, kind: .reserved),
            .init(address: 0x1_0000_0000, size: 1 << 30, kind: .ram),
        ])
        #expect(MemoryMapEntry.pcMap(memorySize: 3 << 30).count == 5)
        #expect(MemoryMapEntry.pcMap(memorySize: 1 << 20).count == 4)  // no RAM above 1 MiB
        #expect(BootLayout.ramRanges(memorySize: 4 << 30) == [0..<0xC000_0000, 0x1_0000_0000..<0x1_4000_0000])
    }

    @Test func descriptorEncoding() {
        typealias S = VCPURegisterState.Segment
        #expect(S.flatCode(selector: 0x10, long: true).descriptor == 0x00AF_9B00_0000_FFFF)
        #expect(S.flatCode(selector: 0x10, long: false).descriptor == 0x00CF_9B00_0000_FFFF)
        #expect(S.flatData(selector: 0x18).descriptor == 0x00CF_9300_0000_FFFF)
        #expect(S.busyTSS(selector: 0x20).descriptor == 0x0000_8B00_0000_0067)
        var s = S.flatData(selector: 0)
        s.base = 0x1234_5678
        s.g = false
        s.limit = 0xABCDE
        #expect(s.descriptor == 0x124A_9334_5678_BCDE)
        #expect(BootLoader.gdtBytes(for: .pvh).count == 48)
    }

    // MARK: - A real toolchain's output

    private static let linkerScript = """
        ENTRY(_start)
        SECTIONS {
          . = 0x100000;
          .text : { *(.text.entry) *(.text*) }
          .rodata : { *(.rodata*) }
          .note.Xen : { *(.note.Xen) }
          . = ALIGN(0x1000);
          .data : { *(.data*) }
          .bss : { *(.bss*) *(COMMON) }
          /DISCARD/ : { *(.comment) *(.note.gnu*) *(.eh_frame*) }
        }
        """

    private static let guestSource = """
        __asm__(".pushsection .note.Xen, \\"a\\", @note\\n"
                ".balign 4\\n.long 4\\n.long 4\\n.long 18\\n.asciz \\"Xen\\"\\n.balign 4\\n"
                ".long pvh_start\\n.balign 4\\n.popsection\\n");
        volatile unsigned int marker = 0xC0FFEE11u;
        static volatile unsigned char scratch[16384];
        __attribute__((section(".text.entry"))) void _start(void) {
            for (;;) { scratch[0]++; __asm__ volatile("hlt"); }
        }
        __attribute__((section(".text.entry"))) void pvh_start(void) { _start(); }
        """

    @Test func bootsAnImageBuiltByTheHostToolchain() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/cc") else {
            Issue.record("skipped: /usr/bin/cc not found")
            return
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("hv-boot-cc-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try Self.linkerScript.write(to: dir.appendingPathComponent("link.ld"), atomically: true, encoding: .utf8)
        try Self.guestSource.write(to: dir.appendingPathComponent("guest.c"), atomically: true, encoding: .utf8)
        let out = dir.appendingPathComponent("guest.elf").path
        let cc = Process()
        cc.executableURL = URL(fileURLWithPath: "/usr/bin/cc")
        cc.arguments = ["-O1", "-ffreestanding", "-nostdlib", "-static", "-fno-pic", "-no-pie", "-mno-red-zone",
                        "-Wl,-T," + dir.appendingPathComponent("link.ld").path, "-Wl,--build-id=none",
                        "-Wl,-z,max-page-size=0x1000", "-o", out, dir.appendingPathComponent("guest.c").path]
        let errPipe = Pipe()
        cc.standardError = errPipe
        try cc.run()
        cc.waitUntilExit()
        let err = String(decoding: errPipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        try #require(cc.terminationStatus == 0, "cc failed: \(err)")

        let image = try ELFImage(contentsOf: out)
        let pvh = try #require(image.pvhEntry)
        #expect(pvh >= 0x10_0000 && pvh < 0x10_1000)
        #expect(image.entry == 0x10_0000)
        let mem = try memory(16 << 20)
        let plan = try BootLoader.load(image: image, into: mem, commandLine: "hello")
        #expect(plan.cpu.rip == UInt64(pvh))
        for s in image.segments {
            let fileBytes = Array(image.bytes[Int(s.fileOffset)..<Int(s.fileOffset + s.fileSize)])
            #expect(try mem.read(at: s.physicalAddress, count: Int(s.fileSize)) == fileBytes)
            let bss = try mem.read(at: s.physicalAddress + s.fileSize, count: Int(s.memorySize - s.fileSize))
            #expect(bss.allSatisfy { $0 == 0 })
        }
        // The marker variable is somewhere in a loaded segment.
        let total = image.segments.flatMap { s in (try? mem.read(at: s.physicalAddress, count: Int(s.memorySize))) ?? [] }
        let marker: [UInt8] = [0x11, 0xEE, 0xFF, 0xC0]
        #expect((0...(total.count - 4)).contains { Array(total[$0..<($0 + 4)]) == marker })
        #expect(image.segments.contains { $0.memorySize >= $0.fileSize + 16384 })  // the bss
    }
}
