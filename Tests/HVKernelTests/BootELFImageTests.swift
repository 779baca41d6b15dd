import Glibc
import Testing
@testable import HVBackendKVM
@testable import HVDevices
@testable import HVHostIO
@testable import HVKernel
@testable import HVMemory
@testable import HVSched
@testable import HVSupport

/// Builds small ELF64 images byte by byte for the boot tests.
struct BootTestELF {
    struct Segment {
        var type: UInt32 = 1  // PT_LOAD
        var flags: UInt32 = 5
        var virtualAddress: UInt64
        var physicalAddress: UInt64
        var data: [UInt8]
        var memorySize: UInt64
        var align: UInt64 = 0x1000

        static func load(at address: UInt64, data: [UInt8], memorySize: UInt64? = nil) -> Segment {
            Segment(virtualAddress: address, physicalAddress: address, data: data,
                    memorySize: memorySize ?? UInt64(data.count))
        }

        static func note(_ data: [UInt8], align: UInt64 = 4) -> Segment {
            Segment(type: 4, flags: 4, virtualAddress: 0, physicalAddress: 0, data: data,
                    memorySize: UInt64(data.count), align: align)
        }
    }

    var entry: UInt64
    var segments: [Segment]
    var elfClass: UInt8 = 2
    var type: UInt16 = 2
    var machine: UInt16 = 62

    /// Program headers at 64, then each segment's data at a 16-byte aligned offset.
    func bytes() -> [UInt8] {
        var b = BootBytes()
        let dataStart = 64 + 56 * segments.count
        var offsets: [Int] = []
        var at = (dataStart + 15) & ~15
        for s in segments {
            offsets.append(at)
            at = (at + s.data.count + 15) & ~15
        }
        b.bytes = [0x7F, 0x45, 0x4C, 0x46, elfClass, 1, 1, 0] + [UInt8](repeating: 0, count: 8)
        b.append(type)
        b.append(machine)
        b.append(UInt32(1))
        b.append(entry)
        b.append(UInt64(64))           // e_phoff
        b.append(UInt64(0))            // e_shoff
        b.append(UInt32(0))            // e_flags
        b.append(UInt16(64))           // e_ehsize
        b.append(UInt16(56))           // e_phentsize
        b.append(UInt16(segments.count))
        b.append(UInt16(64))           // e_shentsize
        b.append(UInt16(0))            // e_shnum
        b.append(UInt16(0))            // e_shstrndx
        for (s, off) in zip(segments, offsets) {
            b.append(s.type)
            b.append(s.flags)
            b.append(UInt64(off))
            b.append(s.virtualAddress)
            b.append(s.physicalAddress)
            b.append(UInt64(s.data.count))
            b.append(s.memorySize)
            b.append(s.align)
        }
        var out = b.bytes
        for (s, off) in zip(segments, offsets) {
            if out.count < off { out += [UInt8](repeating: 0, count: off - out.count) }
            out += s.data
        }
        return out
    }

    /// An ELF note; `descSize` 4 or 8 for the PVH entry.
    static func note(name: String, type: UInt32, desc: [UInt8]) -> [UInt8] {
        var b = BootBytes()
        let nameBytes = Array(name.utf8) + [0]
        b.append(UInt32(nameBytes.count))
        b.append(UInt32(desc.count))
        b.append(type)
        b.bytes += nameBytes + [UInt8](repeating: 0, count: (4 - nameBytes.count % 4) % 4)
        b.bytes += desc + [UInt8](repeating: 0, count: (4 - desc.count % 4) % 4)
        return b.bytes
    }

    static func pvhNote(entry: UInt32, descSize: Int = 4) -> [UInt8] {
        var d = BootBytes()
        if descSize == 8 { d.append(UInt64(entry)) } else { d.append(entry) }
        // Another vendor's note first, to check the walk skips it.
        return note(name: "GNU", type: 3, desc: [1, 2, 3, 4, 5, 6, 7, 8]) + note(name: "Xen", type: 18, desc: d.bytes)
    }

    /// The standard test kernel: text at 1 MiB (entry 1 MiB + 0x10), data with bss at
    /// 2 MiB, and optionally the PVH note (entry 1 MiB + 0x20).
    static func kernel(pvh: Bool = true, noteDescSize: Int = 4) -> BootTestELF {
        let text = (0..<64).map { UInt8($0) }
        let data = [UInt8](repeating: 0x5A, count: 100)
        var segs: [Segment] = [.load(at: 0x10_0000, data: text), .load(at: 0x20_0000, data: data, memorySize: 0x3000)]
        if pvh { segs.append(.note(pvhNote(entry: 0x10_0020, descSize: noteDescSize))) }
        return BootTestELF(entry: 0x10_0010, segments: segs)
    }
}

@Suite struct BootELFImageTests {
    @Test func parsesSegmentsEntryAndPVHNote() throws {
        let image = try ELFImage(bytes: BootTestELF.kernel().bytes(), path: "k.elf")
        #expect(image.entry == 0x10_0010)
        #expect(image.pvhEntry == 0x10_0020)
        #expect(image.defaultMode == .pvh)
        #expect(image.segments.count == 2)
        #expect(image.segments[0].physicalRange == 0x10_0000..<0x10_0040)
        #expect(image.segments[1].fileSize == 100)
        #expect(image.segments[1].memorySize == 0x3000)
        #expect(image.segments[1].index == 1)
    }

    @Test func eightByteNoteAndEightByteAlignedNoteSegments() throws {
        let image = try ELFImage(bytes: BootTestELF.kernel(noteDescSize: 8).bytes(), path: "k.elf")
        #expect(image.pvhEntry == 0x10_0020)
        var elf = BootTestELF.kernel(pvh: false)
        // 8-aligned note segment: name "Xen\0" (4) pads to 8, desc 8.
        var d = BootBytes()
        d.append(UInt32(4)); d.append(UInt32(8)); d.append(UInt32(18))
        d.bytes += Array("Xen".utf8) + [0, 0, 0, 0, 0]
        d.append(UInt64(0x10_0030))
        elf.segments.append(.note(d.bytes, align: 8))
        #expect(try ELFImage(bytes: elf.bytes(), path: "k.elf").pvhEntry == 0x10_0030)
    }

    @Test func noNoteMeansElf64Default() throws {
        let image = try ELFImage(bytes: BootTestELF.kernel(pvh: false).bytes(), path: "k.elf")
        #expect(image.pvhEntry == nil)
        #expect(image.defaultMode == .elf64)
        #expect(try image.entryAddress(for: .elf64) == 0x10_0010)
        #expect(throws: BootError(file: "k.elf", reason: .pvhNoteMissing)) { try image.entryAddress(for: .pvh) }
    }

    private func parseError(_ bytes: [UInt8], path: String = "bad.elf") -> BootError? {
        do {
            _ = try ELFImage(bytes: bytes, path: path)
            return nil
        } catch {
            return error
        }
    }

    @Test func rejectsBadMagicAndTruncation() {
        #expect(parseError([0x7F, 0x45, 0x4C, 0x47] + [UInt8](repeating: 0, count: 60))?.reason == .badMagic)
        #expect(parseError(Array("#!/bin/sh\n".utf8))?.description == "bad.elf: not an ELF file (bad magic; expected 7f 45 4c 46)")
        #expect(parseError([])?.reason == .truncated(what: "the ELF header", needed: 64, size: 0))
        let good = BootTestELF.kernel().bytes()
        #expect(parseError(Array(good.prefix(40)))?.reason == .truncated(what: "the ELF header", needed: 64, size: 40))
        let e = parseError(Array(good.prefix(100)))
        #expect(e?.reason == .truncated(what: "the program header table (3 entries at 0x40)", needed: 64 + 3 * 56, size: 100))
        #expect(e?.description.hasPrefix("bad.elf: truncated: the program header table") == true)
        // Cut inside the first segment's data (text at file offset 240..<304).
        let cut = parseError(Array(good.prefix(300)))
        if case .segmentOutsideFile(index: 0, _, _, fileSize: 300)? = cut?.reason {} else {
            Issue.record("expected segmentOutsideFile, got \(String(describing: cut))")
        }
    }

    @Test func rejectsWrongClassMachineAndType() {
        var elf = BootTestELF.kernel()
        elf.elfClass = 3
        #expect(parseError(elf.bytes())?.reason == .notELF64(elfClass: 3))
        elf.elfClass = 1                      // ELF32 must be i386 (3), not x86-64 (62)
        #expect(parseError(elf.bytes())?.reason == .wrongMachine(62))
        elf = BootTestELF.kernel()
        elf.machine = 3
        #expect(parseError(elf.bytes())?.description == "bad.elf: machine 3 is not x86-64 (EM_X86_64 = 62)")
        elf = BootTestELF.kernel()
        elf.type = 3
        #expect(parseError(elf.bytes())?.reason == .notExecutable(type: 3))
        var bytes = BootTestELF.kernel().bytes()
        bytes[54] = 32  // e_phentsize
        #expect(parseError(bytes)?.reason == .badHeaderField(field: "e_phentsize", value: 32, expected: 56))
        bytes = BootTestELF.kernel().bytes()
        bytes[56] = 0; bytes[57] = 0  // e_phnum
        #expect(parseError(bytes)?.reason == .noProgramHeaders)
    }

    @Test func rejectsBadSegments() {
        var elf = BootTestELF.kernel()
        elf.segments[1].memorySize = 10  // less than the 100 file bytes
        #expect(parseError(elf.bytes())?.reason == .fileSizeExceedsMemorySize(index: 1, fileSize: 100, memorySize: 10))

        elf = BootTestELF.kernel()
        elf.segments[1].physicalAddress = 0x10_0020  // overlaps segment 0
        #expect(parseError(elf.bytes())?.reason == .segmentsOverlap(first: 0, second: 1))

        elf = BootTestELF.kernel()
        elf.segments[1].physicalAddress = UInt64.max - 0x10
        #expect(parseError(elf.bytes())?.reason == .segmentAddressOverflow(index: 1))

        elf = BootTestELF(entry: 0, segments: [.note(BootTestELF.pvhNote(entry: 0x10_0000))])
        #expect(parseError(elf.bytes())?.reason == .noLoadableSegments)
    }

    @Test func rejectsMalformedNotes() {
        var elf = BootTestELF.kernel(pvh: false)
        var bad = BootBytes()
        bad.append(UInt32(4)); bad.append(UInt32(4000)); bad.append(UInt32(18))
        bad.bytes += Array("Xen".utf8) + [0]
        elf.segments.append(.note(bad.bytes))
        let e = parseError(elf.bytes())
        #expect(e?.reason == .malformedNote(index: 2, detail: "note descriptor (4000 bytes) runs past the segment"))

        elf = BootTestELF.kernel(pvh: false)
        elf.segments.append(.note(BootTestELF.note(name: "Xen", type: 18, desc: [1, 2])))
        #expect(parseError(elf.bytes())?.reason == .badPVHNote(detail: "descriptor is 2 bytes, expected 4 or 8"))
    }

    @Test func entryChecks() throws {
        var elf = BootTestELF.kernel(pvh: false)
        elf.entry = 0x30_0000
        let image = try ELFImage(bytes: elf.bytes(), path: "k.elf")
        #expect(throws: BootError(file: "k.elf", reason: .entryOutsideSegments(entry: 0x30_0000, mode: .elf64))) {
            try image.entryAddress(for: .elf64)
        }
        elf = BootTestELF.kernel(pvh: false)
        elf.segments.append(.note(BootTestELF.pvhNote(entry: 0x50_0000)))
        let pvh = try ELFImage(bytes: elf.bytes(), path: "k.elf")
        #expect(throws: BootError(file: "k.elf", reason: .entryOutsideSegments(entry: 0x50_0000, mode: .pvh))) {
            try pvh.entryAddress(for: .pvh)
        }
        // A higher-half image (like vmlinux) boots with PVH but not with the identity map.
        elf = BootTestELF.kernel()
        elf.segments[0].virtualAddress = 0xFFFF_FFFF_8100_0000
        elf.entry = 0xFFFF_FFFF_8100_0010
        let higher = try ELFImage(bytes: elf.bytes(), path: "k.elf")
        #expect(try higher.entryAddress(for: .pvh) == 0x10_0020)
        #expect(throws: BootError(file: "k.elf", reason: .notIdentityMapped(
            index: 0, virtualAddress: 0xFFFF_FFFF_8100_0000, physicalAddress: 0x10_0000))) {
            try higher.entryAddress(for: .elf64)
        }
    }

    @Test func placementChecks() throws {
        let image = try ELFImage(bytes: BootTestELF.kernel().bytes(), path: "k.elf")
        try image.checkPlacement(memorySize: 4 << 20)
        // 2 MiB of RAM ends inside the data segment at 2 MiB.
        let e = #expect(throws: BootError.self) { try image.checkPlacement(memorySize: 2 << 20) }
        #expect(e?.reason == .segmentBeyondRAM(index: 1, start: 0x20_0000, end: 0x20_3000, memorySize: 2 << 20))
        #expect(e?.description == "k.elf: PT_LOAD segment 1 at 0x200000-0x203000 is not inside guest RAM (memsize 2 MiB: RAM is 0-0x200000)")

        var elf = BootTestELF.kernel()
        elf.segments[0] = .load(at: 0x8000, data: [0x90])
        elf.segments[2] = .note(BootTestELF.pvhNote(entry: 0x8000))
        let low = try ELFImage(bytes: elf.bytes(), path: "low.elf")
        let e2 = #expect(throws: BootError.self) { try low.checkPlacement(memorySize: 64 << 20) }
        #expect(e2?.reason == .segmentOverlapsReserved(index: 0, start: 0x8000, end: 0x8001, area: "boot area",
                                                      areaStart: 0x6000, areaEnd: 0x16000))

        elf.segments[0] = .load(at: 0xA0000, data: [0x90])
        let bios = try ELFImage(bytes: elf.bytes(), path: "bios.elf")
        #expect(throws: BootError.self) { try bios.checkPlacement(memorySize: 64 << 20) }

        // In the PCI hole (RAM above 3 GiB moves to 4 GiB).
        elf.segments[0] = .load(at: 0xD000_0000, data: [0x90])
        let hole = try ELFImage(bytes: elf.bytes(), path: "hole.elf")
        #expect(throws: BootError.self) { try hole.checkPlacement(memorySize: 4 << 30) }
        elf.segments[0] = .load(at: 0x1_0000_0000, data: [0x90])
        try ELFImage(bytes: elf.bytes(), path: "high.elf").checkPlacement(memorySize: 4 << 30)
    }

    @Test func readsFilesAndNamesThem() throws {
        let e = #expect(throws: BootError.self) { try ELFImage(contentsOf: "/nonexistent/kernel.elf") }
        #expect(e?.description == "/nonexistent/kernel.elf: cannot read the kernel image: No such file or directory")
        let path = "/tmp/hv-boot-test-\(getpid()).elf"
        let bytes = BootTestELF.kernel().bytes()
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        #expect(fd >= 0)
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        defer { unlink(path) }
        let image = try ELFImage(contentsOf: path)
        #expect(image.bytes == bytes)
        #expect(image.path == path)
    }
}
