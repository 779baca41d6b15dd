import Glibc

/// Reads a shared object's dynamic symbol table without loading it, so the host can
/// tell a plugin from another library before `dlopen` runs any of its constructors.
/// Every offset and size comes from the file: all arithmetic on them is checked, and a
/// file that does not parse is "not a plugin", never handed to `dlopen`.
enum PluginELFSymbols {
    enum Verdict: Equatable {
        /// The file defines the symbol in its `.dynsym`.
        case defines
        /// A well-formed ELF shared object without the symbol.
        case lacks
        /// Not something this host loads: unreadable, not ELF64 little-endian, no section
        /// headers or `.dynsym`, or a table that points outside the file.
        case unreadable(String)
    }

    /// Largest library examined (and loaded): 1 GiB.
    static let maximumFileSize = 1 << 30

    static func inspect(_ path: String, for name: String) -> Verdict {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return .unreadable("cannot open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return .unreadable("not a regular file") }
        guard st.st_size > 0 else { return .unreadable("an empty file") }
        guard st.st_size <= maximumFileSize else { return .unreadable("larger than 1 GiB") }
        let size = Int(st.st_size)
        guard let map = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), map != MAP_FAILED else {
            return .unreadable("cannot map: \(String(cString: strerror(errno)))")
        }
        defer { munmap(map, size) }
        return inspect(UnsafeRawBufferPointer(start: map, count: size), for: name)
    }

    /// The same on bytes in memory (the fuzzer feeds mutated files here).
    static func inspect(_ file: UnsafeRawBufferPointer, for name: String) -> Verdict {
        /// `a + b`, `a * b` on file-provided values: nil when they overflow.
        func add(_ a: Int, _ b: Int) -> Int? { let r = a.addingReportingOverflow(b); return r.overflow ? nil : r.partialValue }
        func mul(_ a: Int, _ b: Int) -> Int? { let r = a.multipliedReportingOverflow(by: b); return r.overflow ? nil : r.partialValue }
        func fits(_ o: Int, _ n: Int) -> Bool { o >= 0 && add(o, n).map { $0 <= file.count } == true }
        func u16(_ o: Int?) -> Int? { guard let o, fits(o, 2) else { return nil }; return Int(UInt16(littleEndian: file.loadUnaligned(fromByteOffset: o, as: UInt16.self))) }
        func u32(_ o: Int?) -> Int? { guard let o, fits(o, 4) else { return nil }; return Int(UInt32(littleEndian: file.loadUnaligned(fromByteOffset: o, as: UInt32.self))) }
        func u64(_ o: Int?) -> Int? {
            guard let o, fits(o, 8) else { return nil }
            let v = UInt64(littleEndian: file.loadUnaligned(fromByteOffset: o, as: UInt64.self))
            return v <= UInt64(Int.max) ? Int(v) : nil
        }
        guard file.count >= 4, file[0] == 0x7F, file[1] == 0x45, file[2] == 0x4C, file[3] == 0x46 else {
            return .unreadable("not an ELF file")
        }
        guard file.count >= 64 else { return .unreadable("too small for an ELF header") }
        guard file[4] == 2, file[5] == 1 else { return .unreadable("not a 64-bit little-endian ELF file") }
        guard u16(0x10) == 3 else { return .unreadable("not a shared object (ELF type \(u16(0x10) ?? 0))") }
        guard let shoff = u64(0x28), let shentsize = u16(0x3A), let shnum = u16(0x3C), shnum > 0, shoff > 0 else {
            return .unreadable("no section headers")
        }
        guard shentsize >= 64, let table = mul(shnum, shentsize), fits(shoff, table) else {
            return .unreadable("section headers outside the file")
        }
        let wanted = Array(name.utf8)
        let shtDynsym = 11
        for i in 0..<shnum {
            let sh = shoff + i * shentsize                 // inside the table checked above
            guard u32(sh + 4) == shtDynsym else { continue }
            guard let symOff = u64(sh + 0x18), let symSize = u64(sh + 0x20), let link = u32(sh + 0x28),
                  let entsize = u64(sh + 0x38), entsize >= 24, link < shnum, fits(symOff, symSize) else {
                return .unreadable("malformed .dynsym section header")
            }
            let strHeader = shoff + link * shentsize
            guard let strOff = u64(strHeader + 0x18), let strSize = u64(strHeader + 0x20), fits(strOff, strSize) else {
                return .unreadable("malformed .dynstr section header")
            }
            let count = symSize / entsize
            guard count > 1 else { return .lacks }
            for s in 1..<count {
                let sym = symOff + s * entsize               // < symOff + symSize, inside the file
                guard let nameOff = u32(sym), let shndx = u16(sym + 6), shndx != 0, nameOff < strSize else { continue }
                let start = strOff + nameOff
                guard wanted.count < strSize - nameOff else { continue }
                if file[start + wanted.count] == 0,
                   wanted.withUnsafeBytes({ memcmp($0.baseAddress!, file.baseAddress! + start, wanted.count) == 0 }) {
                    return .defines
                }
            }
            return .lacks
        }
        return .unreadable("no dynamic symbol table (.dynsym)")
    }
}
