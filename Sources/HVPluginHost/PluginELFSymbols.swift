import Glibc

/// Reads a shared object's dynamic symbol table without loading it, so the host can
/// tell a plugin from another library before `dlopen` runs any of its constructors.
enum PluginELFSymbols {
    /// Whether the ELF64 little-endian shared object at `path` defines the dynamic symbol
    /// `name`: true/false, or nil when the file cannot be read or does not parse (then
    /// `dlopen` gets to produce the error).
    static func definesSymbol(_ name: String, in path: String) -> Bool? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, st.st_size >= 64 else { return nil }
        let size = Int(st.st_size)
        guard let map = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), map != MAP_FAILED else { return nil }
        defer { munmap(map, size) }
        return definesSymbol(name, in: UnsafeRawBufferPointer(start: map, count: size))
    }

    static func definesSymbol(_ name: String, in file: UnsafeRawBufferPointer) -> Bool? {
        func u16(_ o: Int) -> Int? { o >= 0 && o + 2 <= file.count ? Int(UInt16(littleEndian: file.loadUnaligned(fromByteOffset: o, as: UInt16.self))) : nil }
        func u32(_ o: Int) -> Int? { o >= 0 && o + 4 <= file.count ? Int(UInt32(littleEndian: file.loadUnaligned(fromByteOffset: o, as: UInt32.self))) : nil }
        func u64(_ o: Int) -> Int? {
            guard o >= 0, o + 8 <= file.count else { return nil }
            let v = UInt64(littleEndian: file.loadUnaligned(fromByteOffset: o, as: UInt64.self))
            return v <= UInt64(Int.max) ? Int(v) : nil
        }
        guard file.count >= 64, file[0] == 0x7F, file[1] == 0x45, file[2] == 0x4C, file[3] == 0x46,
              file[4] == 2, file[5] == 1 else { return nil }
        guard let shoff = u64(0x28), let shentsize = u16(0x3A), let shnum = u16(0x3C),
              shentsize >= 64, shnum > 0 else { return nil }
        let wanted = Array(name.utf8)
        let shtDynsym = 11
        for i in 0..<shnum {
            let sh = shoff + i * shentsize
            guard let type = u32(sh + 4) else { return nil }
            guard type == shtDynsym else { continue }
            guard let symOff = u64(sh + 0x18), let symSize = u64(sh + 0x20), let link = u32(sh + 0x28),
                  let entsize = u64(sh + 0x38), entsize >= 24, link < shnum,
                  let strOff = u64(shoff + link * shentsize + 0x18), let strSize = u64(shoff + link * shentsize + 0x20),
                  symOff + symSize <= file.count, strOff + strSize <= file.count
            else { return nil }
            for s in 1..<max(1, symSize / entsize) {
                let sym = symOff + s * entsize
                guard let nameOff = u32(sym), let shndx = u16(sym + 6), shndx != 0, nameOff < strSize else { continue }
                let start = strOff + nameOff
                guard start + wanted.count < strOff + strSize else { continue }
                if file[start + wanted.count] == 0,
                   wanted.withUnsafeBytes({ memcmp($0.baseAddress!, file.baseAddress! + start, wanted.count) == 0 }) {
                    return true
                }
            }
            return false
        }
        return nil  // no .dynsym: let dlopen decide
    }
}
