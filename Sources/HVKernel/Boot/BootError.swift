import HVMemory

/// A kernel image that cannot be booted, or a boot that cannot be set up.
///
/// `description` reads `<file>: <what is wrong>`, e.g.
/// `guests/hello.elf: program header 2 (PT_LOAD): file range 0x1000+0x4000 ends past the end of the file (0x3000 bytes)`.
package struct BootError: Error, CustomStringConvertible, Equatable, Sendable {
    /// What is wrong, precisely enough to assert on in tests.
    package enum Reason: Equatable, Sendable {
        /// The file could not be read (`errno` text).
        case unreadable(String)
        /// The file ends before `what` (which needs `needed` bytes, the file has `size`).
        case truncated(what: String, needed: UInt64, size: UInt64)
        case badMagic
        case notELF64(elfClass: UInt8)
        case notLittleEndian(encoding: UInt8)
        case badELFVersion(UInt32)
        /// `e_type` is not ET_EXEC.
        case notExecutable(type: UInt16)
        /// `e_machine` is not EM_X86_64.
        case wrongMachine(UInt16)
        /// A header-size field (`e_ehsize`, `e_phentsize`) holds an unexpected value.
        case badHeaderField(field: String, value: UInt64, expected: UInt64)
        case noProgramHeaders
        /// Program header `index`'s file range is outside the file.
        case segmentOutsideFile(index: Int, offset: UInt64, size: UInt64, fileSize: UInt64)
        /// A PT_LOAD segment whose p_filesz exceeds its p_memsz.
        case fileSizeExceedsMemorySize(index: Int, fileSize: UInt64, memorySize: UInt64)
        /// p_paddr + p_memsz (or the virtual equivalent) wraps around.
        case segmentAddressOverflow(index: Int)
        /// Two PT_LOAD segments cover the same guest-physical bytes.
        case segmentsOverlap(first: Int, second: Int)
        case noLoadableSegments
        /// A PT_NOTE segment that does not parse as ELF notes.
        case malformedNote(index: Int, detail: String)
        /// The Xen PHYS32_ENTRY note exists but its value is unusable.
        case badPVHNote(detail: String)
        /// The entry point does not lie inside any PT_LOAD segment.
        case entryOutsideSegments(entry: UInt64, mode: BootMode)
        /// PVH boot was requested but the image carries no XEN_ELFNOTE_PHYS32_ENTRY note.
        case pvhNoteMissing
        /// 64-bit entry needs p_vaddr == p_paddr (the boot page tables are an identity map).
        case notIdentityMapped(index: Int, virtualAddress: UInt64, physicalAddress: UInt64)
        /// 64-bit entry point above the identity-mapped first 4 GiB.
        case entryNotMapped(entry: UInt64)
        /// A segment's guest-physical range is not entirely guest RAM.
        case segmentBeyondRAM(index: Int, start: UInt64, end: UInt64, memorySize: UInt64)
        /// A segment overlaps a range the boot loader reserves (boot area, legacy BIOS area).
        case segmentOverlapsReserved(index: Int, start: UInt64, end: UInt64, area: String,
                                     areaStart: UInt64, areaEnd: UInt64)
        /// The guest has too little RAM for the boot layout.
        case memoryTooSmall(size: UInt64, minimum: UInt64)
        case commandLineTooLong(length: Int, limit: Int)
        case commandLineContainsNUL
        /// Writing into guest memory failed (should not happen after validation).
        case guestMemory(String)
        /// An ELF32 image without a 32-bit entry (a PVH note or a multiboot header).
        case noEntryFor32BitImage
        /// Neither ELF, a Linux bzImage, nor a multiboot image.
        case unknownKernelFormat
        /// A multiboot header (at `offset` in the file) this loader cannot honour.
        case badMultibootHeader(offset: Int, detail: String)
        /// A Linux image the 32-bit boot protocol cannot start.
        case badLinuxImage(String)
        /// `hv.boot` chooses between ELF entries; other formats have their own.
        case modeNotForFormat(mode: BootMode, format: String)
        /// `hv.initrd` with a format that has no place for it.
        case initrdNotSupported(format: String)
        /// The initrd/module does not fit between the kernel and the top of low RAM.
        case initrdDoesNotFit(size: UInt64, below: UInt64, kernelEnd: UInt64)
        /// A firmware image whose size is not whole 64 KiB blocks up to 16 MiB.
        case badFirmwareSize(UInt64)
        /// `hv.kernel` with `hv.firmware`: the BIOS loads only Linux images (through fw_cfg).
        case notLinuxForFirmware(format: String)
        /// QEMU's linuxboot_dma.bin, which loads the kernel for the BIOS, is missing.
        case linuxBootROMMissing(String)
    }

    /// The kernel image's path (or the name given when parsing bytes).
    package var file: String
    package var reason: Reason

    init(file: String, reason: Reason) {
        self.file = file
        self.reason = reason
    }

    package var description: String { "\(file): \(reason.text)" }
}

@inline(__always) func bootHex(_ v: some BinaryInteger) -> String { "0x" + String(v, radix: 16) }

extension BootError.Reason {
    /// The reason alone, without the file name.
    package var message: String { text }

    var text: String {
        switch self {
        case let .unreadable(why):
            return "cannot read the kernel image: \(why)"
        case let .truncated(what, needed, size):
            return "truncated: \(what) needs \(needed) bytes, the file has \(size)"
        case .badMagic:
            return "not an ELF file (bad magic; expected 7f 45 4c 46)"
        case let .notELF64(c):
            return "ELF class \(c) is neither ELFCLASS32 (1) nor ELFCLASS64 (2)"
        case let .notLittleEndian(d):
            return "ELF data encoding \(d) is not little-endian (ELFDATA2LSB = 1)"
        case let .badELFVersion(v):
            return "ELF version \(v), expected 1 (EV_CURRENT)"
        case let .notExecutable(t):
            let kind = t == 1 ? "a relocatable object (ET_REL)" : t == 3 ? "a shared object or PIE (ET_DYN)"
                : t == 4 ? "a core file (ET_CORE)" : "ELF type \(t)"
            return "\(kind), expected a statically linked executable (ET_EXEC)"
        case let .wrongMachine(m):
            return "machine \(m) is not x86-64 (EM_X86_64 = 62)"
        case let .badHeaderField(field, value, expected):
            return "\(field) is \(value), expected \(expected)"
        case .noProgramHeaders:
            return "no program headers (e_phnum = 0); a bootable image needs PT_LOAD segments"
        case let .segmentOutsideFile(index, offset, size, fileSize):
            return "program header \(index): file range \(bootHex(offset))+\(bootHex(size)) ends past the end of the file (\(bootHex(fileSize)) bytes)"
        case let .fileSizeExceedsMemorySize(index, f, m):
            return "program header \(index) (PT_LOAD): p_filesz \(bootHex(f)) is larger than p_memsz \(bootHex(m))"
        case let .segmentAddressOverflow(index):
            return "program header \(index) (PT_LOAD): address + p_memsz overflows 64 bits"
        case let .segmentsOverlap(a, b):
            return "PT_LOAD segments \(a) and \(b) overlap in guest-physical memory"
        case .noLoadableSegments:
            return "no loadable segments (no PT_LOAD with p_memsz > 0)"
        case let .malformedNote(index, detail):
            return "program header \(index) (PT_NOTE): \(detail)"
        case let .badPVHNote(detail):
            return "Xen PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY): \(detail)"
        case let .entryOutsideSegments(entry, mode):
            let which = mode == .pvh ? "PVH entry (physical)" : "entry point e_entry"
            return "\(which) \(bootHex(entry)) is not inside any loaded segment"
        case .pvhNoteMissing:
            return "PVH boot requested (hv.boot = \"pvh\") but the image has no XEN_ELFNOTE_PHYS32_ENTRY note (name \"Xen\", type 18); use hv.boot = \"elf64\" or add the note"
        case let .notIdentityMapped(index, v, p):
            return "program header \(index) (PT_LOAD): p_vaddr \(bootHex(v)) != p_paddr \(bootHex(p)); 64-bit ELF entry identity-maps the first 4 GiB, so segments must be linked at their physical addresses (or boot with PVH)"
        case let .entryNotMapped(entry):
            return "entry point \(bootHex(entry)) is above 4 GiB, outside the boot page tables' identity map"
        case let .segmentBeyondRAM(index, start, end, size):
            return "PT_LOAD segment \(index) at \(bootHex(start))-\(bootHex(end)) is not inside guest RAM (memsize \(size / (1 << 20)) MiB: RAM is 0-\(bootHex(min(size, GuestMemory.lowMemoryLimit)))\(size > GuestMemory.lowMemoryLimit ? " and 0x100000000-\(bootHex(0x1_0000_0000 + size - GuestMemory.lowMemoryLimit))" : ""))"
        case let .segmentOverlapsReserved(index, start, end, area, aStart, aEnd):
            return "PT_LOAD segment \(index) at \(bootHex(start))-\(bootHex(end)) overlaps the \(area) (\(bootHex(aStart))-\(bootHex(aEnd))); link the image at 1 MiB (0x100000) or above"
        case let .memoryTooSmall(size, minimum):
            return "guest memory of \(size) bytes is too small to boot (at least \(minimum) bytes)"
        case let .commandLineTooLong(length, limit):
            return "kernel command line is \(length) bytes, the limit is \(limit - 1) (plus the terminating NUL)"
        case .commandLineContainsNUL:
            return "kernel command line contains a NUL byte"
        case let .guestMemory(why):
            return "writing the boot image into guest memory failed: \(why)"
        case .notLinuxForFirmware(let format):
            return "\(format) cannot be handed to the firmware: with hv.firmware, hv.kernel must be a Linux bzImage (the BIOS runs its setup code), or drop hv.firmware to boot it directly"
        case .linuxBootROMMissing(let path):
            return "the BIOS loads hv.kernel with QEMU's boot ROM \(path), which is not installed (apt-get install qemu-system-data)"
        case .unknownKernelFormat:
            return "not a kernel this loader knows: neither ELF, a Linux bzImage (\"HdrS\" at 0x202) nor a multiboot image (0x1BADB002 in the first 8 KiB)"
        case let .badMultibootHeader(offset, detail):
            return "multiboot header at file offset \(bootHex(offset)): \(detail)"
        case let .badLinuxImage(why):
            return "Linux image: \(why)"
        case let .modeNotForFormat(mode, format):
            return "hv.boot = \"\(mode)\" chooses an ELF entry; a \(format) image has its own entry (remove hv.boot)"
        case let .initrdNotSupported(format):
            return "hv.initrd is for Linux and multiboot kernels; \(format) has no place for it"
        case let .initrdDoesNotFit(size, below, kernelEnd):
            return "the initrd (\(size) bytes) does not fit between the kernel's end \(bootHex(kernelEnd)) and \(bootHex(below)); raise memsize"
        case .noEntryFor32BitImage:
            return "ELF32 image has neither a PVH note (XEN_ELFNOTE_PHYS32_ENTRY) nor a multiboot header: a 32-bit image needs one of these 32-bit entries"
        case let .badFirmwareSize(size):
            return "firmware image is \(size) bytes; a BIOS image is a whole number of 64 KiB blocks, at most 16 MiB (e.g. SeaBIOS's 128 or 256 KiB)"
        }
    }
}
