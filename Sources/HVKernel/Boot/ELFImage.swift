import Glibc
import HVSupport

/// A validated ELF executable for x86 — ELF64 x86-64, or ELF32 i386 (`ld -m elf_i386`
/// output, which the PVH spec allows since PVH enters in 32-bit mode) — its loadable
/// segments, entry point and the Xen PVH entry note, parsed from bytes kept for loading.
///
/// Parsing checks the whole structure (magic, class, byte order, type, machine,
/// header sizes, every program header and the file range of every PT_LOAD and PT_NOTE
/// segment, p_filesz <= p_memsz, address arithmetic without overflow, no two PT_LOAD
/// segments overlapping). Where the image may go in a particular guest is checked
/// separately by `checkPlacement(memorySize:)`, because it depends on the VM's memory size.
package struct ELFImage: Sendable {
    /// One PT_LOAD program header.
    struct Segment: Equatable, Sendable {
        /// Index of the program header in the file (for messages).
        var index: Int
        var fileOffset: UInt64
        var fileSize: UInt64
        var memorySize: UInt64
        /// p_paddr: where the loader puts the segment in guest-physical memory.
        var physicalAddress: UInt64
        /// p_vaddr: where the image is linked to run.
        var virtualAddress: UInt64
        /// p_flags (PF_X 1, PF_W 2, PF_R 4).
        var flags: UInt32

        /// Guest-physical bytes the segment occupies (file part plus zeroed bss).
        var physicalRange: Range<UInt64> { physicalAddress..<(physicalAddress + memorySize) }
        var virtualRange: Range<UInt64> { virtualAddress..<(virtualAddress + memorySize) }
    }

    /// ELF constants this parser uses.
    enum Constants {
        static let headerSize = 64
        static let programHeaderSize = 56
        static let header32Size = 52
        static let programHeader32Size = 32
        static let typeExecutable: UInt16 = 2
        static let machineX86_64: UInt16 = 62
        static let machine386: UInt16 = 3
        static let ptLoad: UInt32 = 1
        static let ptNote: UInt32 = 4
        /// XEN_ELFNOTE_PHYS32_ENTRY, in a note named "Xen".
        static let xenPhys32EntryNote: UInt32 = 18
    }

    /// The path the image was read from, or the name given with the bytes.
    let path: String
    /// The whole file.
    let bytes: [UInt8]
    /// e_entry (a virtual address).
    package let entry: UInt64
    /// PT_LOAD segments with p_memsz > 0, in file order.
    let segments: [Segment]
    /// The 32-bit physical entry from the XEN_ELFNOTE_PHYS32_ENTRY note, if present.
    let pvhEntry: UInt32?
    /// ELFCLASS32 (i386): only 32-bit entries (PVH, multiboot) can start it.
    let is32Bit: Bool

    /// Reads and parses the file at `path`: the ELF header first (anything that is not
    /// ELF is refused before more is read), then only as far as its program headers and
    /// the PT_LOAD/PT_NOTE segments they name reach, not the whole file.
    package init(contentsOf path: String) throws(BootError) {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw BootError(file: path, reason: .unreadable(String(cString: strerror(errno)))) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw BootError(file: path, reason: .unreadable(String(cString: strerror(errno)))) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw BootError(file: path, reason: .unreadable("not a regular file")) }
        let size = UInt64(st.st_size)
        /// `count` bytes at `offset` (fewer at the end of the file); nil on a read error.
        func read(at offset: UInt64, count: UInt64) -> [UInt8]? {
            guard count <= UInt64(Int.max), offset <= UInt64(Int64.max) else { return nil }
            var bytes = [UInt8](repeating: 0, count: Int(count))
            var filled = 0
            while filled < bytes.count {
                let n = bytes.withUnsafeMutableBytes {
                    pread(fd, $0.baseAddress! + filled, $0.count - filled, off_t(offset) + off_t(filled))
                }
                if n < 0 && errno == EINTR { continue }
                guard n >= 0 else { return nil }
                if n == 0 { break }
                filled += n
            }
            return Array(bytes[0..<filled])
        }
        let unreadable = BootError(file: path, reason: .unreadable("read error"))
        guard let header = read(at: 0, count: min(size, UInt64(Constants.headerSize))) else { throw unreadable }
        // A short or non-ELF header: the parser says what is wrong with these bytes.
        guard header.count == Constants.headerSize, header.starts(with: [0x7F, 0x45, 0x4C, 0x46]) else {
            try self.init(bytes: header, path: path)
            throw BootError(file: path, reason: .badMagic)
        }
        let extent = Self.extent(header: header, size: size, read: read)
        guard let bytes = read(at: 0, count: extent) else { throw unreadable }
        try self.init(bytes: bytes, path: path)
    }

    /// How much of a file of `size` bytes the image needs: the header, the program
    /// header table and every PT_LOAD/PT_NOTE file range (the whole file when one of
    /// them does not fit, so the parser reports it against the real size).
    private static func extent(header: [UInt8], size: UInt64,
                               read: (_ at: UInt64, _ count: UInt64) -> [UInt8]?) -> UInt64 {
        let h = ELFByteReader(bytes: header)
        let phoff = h.u64(32), phnum = UInt64(h.u16(56))
        let (tableEnd, overflow) = phoff.addingReportingOverflow(phnum &* UInt64(Constants.programHeaderSize))
        guard !overflow, tableEnd <= size, h.u16(54) == UInt16(Constants.programHeaderSize) else { return size }
        guard let table = read(phoff, tableEnd - phoff), UInt64(table.count) == tableEnd - phoff else { return size }
        let t = ELFByteReader(bytes: table)
        var end = max(UInt64(Constants.headerSize), tableEnd)
        for i in 0..<Int(phnum) {
            let at = i * Constants.programHeaderSize
            let type = t.u32(at)
            guard type == Constants.ptLoad || type == Constants.ptNote else { continue }
            let (segmentEnd, o) = t.u64(at + 8).addingReportingOverflow(t.u64(at + 32))
            guard !o, segmentEnd <= size else { return size }
            end = max(end, segmentEnd)
        }
        return end
    }

    /// Parses `bytes` as the contents of the file named `path` (used in messages).
    package init(bytes: [UInt8], path: String) throws(BootError) {
        func fail(_ r: BootError.Reason) -> BootError { BootError(file: path, reason: r) }
        let size = UInt64(bytes.count)
        let reader = ELFByteReader(bytes: bytes)

        let magic: [UInt8] = [0x7F, 0x45, 0x4C, 0x46]
        guard bytes.count >= 4 else {
            // An empty file, or one cut off inside the magic, is truncated; anything else is not ELF.
            guard bytes.elementsEqual(magic.prefix(bytes.count)) else { throw fail(.badMagic) }
            throw fail(.truncated(what: "the ELF header", needed: UInt64(Constants.headerSize), size: size))
        }
        guard bytes[0] == 0x7F, bytes[1] == 0x45, bytes[2] == 0x4C, bytes[3] == 0x46 else { throw fail(.badMagic) }
        guard bytes.count >= 8 else {
            throw fail(.truncated(what: "the ELF header", needed: UInt64(Constants.headerSize), size: size))
        }
        guard bytes[4] == 1 || bytes[4] == 2 else { throw fail(.notELF64(elfClass: bytes[4])) }
        let is32 = bytes[4] == 1
        guard bytes[5] == 1 else { throw fail(.notLittleEndian(encoding: bytes[5])) }
        guard bytes[6] == 1 else { throw fail(.badELFVersion(UInt32(bytes[6]))) }
        let headerSize = is32 ? Constants.header32Size : Constants.headerSize
        let phSize = is32 ? Constants.programHeader32Size : Constants.programHeaderSize
        guard bytes.count >= headerSize else {
            throw fail(.truncated(what: "the ELF header", needed: UInt64(headerSize), size: size))
        }
        // Word-sized fields: 4 bytes in ELF32, 8 in ELF64; the offsets after e_entry shift.
        func word(_ at: Int) -> UInt64 { is32 ? UInt64(reader.u32(at)) : reader.u64(at) }
        let w = is32 ? 4 : 8

        let type = reader.u16(16)
        let machine = reader.u16(18)
        let version = reader.u32(20)
        let entry = word(24)
        let phoff = word(24 + w)
        let ehsize = reader.u16(24 + 3 * w + 4)
        let phentsize = reader.u16(24 + 3 * w + 6)
        let phnum = reader.u16(24 + 3 * w + 8)

        guard type == Constants.typeExecutable else { throw fail(.notExecutable(type: type)) }
        guard machine == (is32 ? Constants.machine386 : Constants.machineX86_64) else { throw fail(.wrongMachine(machine)) }
        guard version == 1 else { throw fail(.badELFVersion(version)) }
        guard ehsize == UInt16(headerSize) else {
            throw fail(.badHeaderField(field: "e_ehsize", value: UInt64(ehsize), expected: UInt64(headerSize)))
        }
        guard phnum > 0 else { throw fail(.noProgramHeaders) }
        guard phnum != 0xFFFF else {
            throw fail(.badHeaderField(field: "e_phnum", value: 0xFFFF, expected: 0xFFFE))  // PN_XNUM: not for kernels
        }
        guard phentsize == UInt16(phSize) else {
            throw fail(.badHeaderField(field: "e_phentsize", value: UInt64(phentsize), expected: UInt64(phSize)))
        }
        let tableSize = UInt64(phnum) * UInt64(phSize)
        let (tableEnd, tableOverflow) = phoff.addingReportingOverflow(tableSize)
        guard !tableOverflow, tableEnd <= size else {
            throw fail(.truncated(what: "the program header table (\(phnum) entries at \(bootHex(phoff)))",
                                  needed: tableOverflow ? UInt64.max : tableEnd, size: size))
        }

        var segments: [Segment] = []
        var pvhEntry: UInt32?
        for i in 0..<Int(phnum) {
            let at = Int(phoff) + i * phSize
            let pType = reader.u32(at)
            // ELF64: type, flags, offset, vaddr, paddr, filesz, memsz, align;
            // ELF32: type, offset, vaddr, paddr, filesz, memsz, flags, align.
            let pFlags = is32 ? reader.u32(at + 24) : reader.u32(at + 4)
            let f = is32 ? 4 : 8
            func field(_ n: Int) -> UInt64 { word(at + f + n * w) }
            let pOffset = field(0)
            let pVaddr = field(1)
            let pPaddr = field(2)
            let pFilesz = field(3)
            let pMemsz = field(4)
            let pAlign = is32 ? word(at + 28) : field(5)
            guard pType == Constants.ptLoad || pType == Constants.ptNote else { continue }

            let (fileEnd, fileOverflow) = pOffset.addingReportingOverflow(pFilesz)
            guard !fileOverflow, fileEnd <= size else {
                throw fail(.segmentOutsideFile(index: i, offset: pOffset, size: pFilesz, fileSize: size))
            }
            if pType == Constants.ptNote {
                if let note = try Self.pvhNote(in: bytes, offset: Int(pOffset), size: Int(pFilesz),
                                               align: pAlign, index: i, path: path), pvhEntry == nil {
                    pvhEntry = note
                }
                continue
            }
            guard pFilesz <= pMemsz else {
                throw fail(.fileSizeExceedsMemorySize(index: i, fileSize: pFilesz, memorySize: pMemsz))
            }
            guard pMemsz > 0 else { continue }
            guard !pPaddr.addingReportingOverflow(pMemsz).overflow,
                  !pVaddr.addingReportingOverflow(pMemsz).overflow
            else { throw fail(.segmentAddressOverflow(index: i)) }
            segments.append(Segment(index: i, fileOffset: pOffset, fileSize: pFilesz, memorySize: pMemsz,
                                    physicalAddress: pPaddr, virtualAddress: pVaddr, flags: pFlags))
        }
        guard !segments.isEmpty else { throw fail(.noLoadableSegments) }

        let sorted = segments.sorted { $0.physicalAddress < $1.physicalAddress }
        for (a, b) in zip(sorted, sorted.dropFirst()) where a.physicalRange.overlaps(b.physicalRange) {
            throw fail(.segmentsOverlap(first: min(a.index, b.index), second: max(a.index, b.index)))
        }

        self.path = path
        self.bytes = bytes
        self.entry = entry
        self.segments = segments
        self.pvhEntry = pvhEntry
        self.is32Bit = is32
    }

    /// The mode used when the configuration does not ask for one: PVH when the image
    /// carries the note, else 64-bit entry.
    var defaultMode: BootMode { pvhEntry != nil ? .pvh : .elf64 }

    /// The first instruction's address for `mode` (guest-physical for PVH; virtual,
    /// equal to physical under the identity map, for 64-bit entry), after checking
    /// that the mode is possible and the entry lies inside a loaded segment.
    func entryAddress(for mode: BootMode) throws(BootError) -> UInt64 {
        func fail(_ r: BootError.Reason) -> BootError { BootError(file: path, reason: r) }
        switch mode {
        case .pvh, .multiboot, .linux, .linux64:
            guard let pvh = pvhEntry else { throw fail(.pvhNoteMissing) }
            let e = UInt64(pvh)
            guard segments.contains(where: { $0.physicalRange.contains(e) }) else {
                throw fail(.entryOutsideSegments(entry: e, mode: .pvh))
            }
            return e
        case .elf64:
            guard !is32Bit else { throw fail(.noEntryFor32BitImage) }
            for s in segments where s.virtualAddress != s.physicalAddress {
                throw fail(.notIdentityMapped(index: s.index, virtualAddress: s.virtualAddress,
                                              physicalAddress: s.physicalAddress))
            }
            guard segments.contains(where: { $0.virtualRange.contains(entry) }) else {
                throw fail(.entryOutsideSegments(entry: entry, mode: .elf64))
            }
            guard entry < 0x1_0000_0000 else { throw fail(.entryNotMapped(entry: entry)) }
            return entry
        }
    }

    /// Checks that every segment lies in guest RAM of `memorySize` bytes and does not
    /// overlap the boot area or the reserved EBDA/BIOS area (see `BootLayout`).
    func checkPlacement(memorySize: UInt64) throws(BootError) {
        func fail(_ r: BootError.Reason) -> BootError { BootError(file: path, reason: r) }
        guard memorySize >= BootLayout.minimumMemorySize else {
            throw fail(.memoryTooSmall(size: memorySize, minimum: BootLayout.minimumMemorySize))
        }
        let ram = BootLayout.ramRanges(memorySize: memorySize)
        for s in segments {
            let r = s.physicalRange
            guard ram.contains(where: { $0.lowerBound <= r.lowerBound && r.upperBound <= $0.upperBound }) else {
                throw fail(.segmentBeyondRAM(index: s.index, start: r.lowerBound, end: r.upperBound,
                                             memorySize: memorySize))
            }
            for area in BootLayout.forbiddenAreas where area.range.overlaps(r) {
                throw fail(.segmentOverlapsReserved(index: s.index, start: r.lowerBound, end: r.upperBound,
                                                    area: area.name, areaStart: area.range.lowerBound,
                                                    areaEnd: area.range.upperBound))
            }
        }
    }

    // MARK: - Notes

    /// Walks the notes of one PT_NOTE segment; returns the PHYS32_ENTRY value if found.
    private static func pvhNote(in bytes: [UInt8], offset: Int, size: Int, align: UInt64,
                                index: Int, path: String) throws(BootError) -> UInt32? {
        func fail(_ detail: String) -> BootError {
            BootError(file: path, reason: .malformedNote(index: index, detail: detail))
        }
        let reader = ELFByteReader(bytes: bytes)
        // Notes are 4-byte aligned; GNU tools also emit 8-byte aligned note segments.
        let pad = align == 8 ? 8 : 4
        func roundUp(_ v: Int) -> Int { (v + pad - 1) / pad * pad }
        var at = offset
        let end = offset + size
        var found: UInt32?
        while at < end {
            guard end - at >= 12 else { throw fail("note header at file offset \(bootHex(at)) is cut off") }
            let namesz = Int(reader.u32(at))
            let descsz = Int(reader.u32(at + 4))
            let type = reader.u32(at + 8)
            let nameAt = at + 12
            guard namesz <= end - nameAt else { throw fail("note name (\(namesz) bytes) runs past the segment") }
            let descAt = nameAt + roundUp(namesz)
            guard descAt <= end, descsz <= end - descAt else {
                throw fail("note descriptor (\(descsz) bytes) runs past the segment")
            }
            var name = Array(bytes[nameAt..<(nameAt + namesz)])
            if name.last == 0 { name.removeLast() }
            if type == Constants.xenPhys32EntryNote, name == Array("Xen".utf8), found == nil {
                let value: UInt64
                switch descsz {
                case 4: value = UInt64(reader.u32(descAt))
                case 8: value = reader.u64(descAt)
                default:
                    throw BootError(file: path, reason: .badPVHNote(detail: "descriptor is \(descsz) bytes, expected 4 or 8"))
                }
                guard value <= UInt64(UInt32.max) else {
                    throw BootError(file: path, reason: .badPVHNote(detail: "entry \(bootHex(value)) is above 4 GiB; PVH enters in 32-bit mode"))
                }
                found = UInt32(value)
            }
            at = descAt + roundUp(descsz)
        }
        return found
    }
}

/// Little-endian field reads at offsets the caller has bounds-checked.
struct ELFByteReader {
    let bytes: [UInt8]
    func u16(_ at: Int) -> UInt16 { UInt16(bytes[at]) | UInt16(bytes[at + 1]) << 8 }
    func u32(_ at: Int) -> UInt32 { UInt32(u16(at)) | UInt32(u16(at + 2)) << 16 }
    func u64(_ at: Int) -> UInt64 { UInt64(u32(at)) | UInt64(u32(at + 4)) << 32 }
}
