import Glibc

/// The 8x16 VGA font a guest without a VGA BIOS finds in plane 2, taken from the VGA
/// BIOS image itself (SeaBIOS's vgabios-vmware.bin carries the IBM 8x16 font) rather
/// than typed into the source.
enum VGAFont {
    static let glyphBytes = 16
    static let size = 256 * glyphBytes

    /// The font inside `rom`: 256 glyphs of 16 rows where the blank (0x00, 0x20), full
    /// block (0xDB), lower half (0xDC) and upper half (0xDF) glyphs are where the IBM
    /// code page 437 layout puts them. nil when no such block exists.
    static func find(in rom: [UInt8]) -> [UInt8]? {
        guard rom.count >= size else { return nil }
        func glyph(_ o: Int, _ c: Int) -> ArraySlice<UInt8> { rom[(o + c * glyphBytes)..<(o + (c + 1) * glyphBytes)] }
        for o in 0...(rom.count - size) {
            guard glyph(o, 0xDB).allSatisfy({ $0 == 0xFF }), glyph(o, 0x00).allSatisfy({ $0 == 0 }),
                  glyph(o, 0x20).allSatisfy({ $0 == 0 }) else { continue }
            let lower = glyph(o, 0xDC), upper = glyph(o, 0xDF)
            guard lower.first == 0, lower.last == 0xFF, upper.first == 0xFF, upper.last == 0 else { continue }
            return Array(rom[o..<(o + size)])
        }
        return nil
    }

    /// Reads `path` whole; nil when it cannot be read.
    static func readFile(_ path: String) -> [UInt8]? {
        guard let f = fopen(path, "rb") else { return nil }
        defer { fclose(f) }
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = fread(&buffer, 1, buffer.count, f)
            if n <= 0 { break }
            out.append(contentsOf: buffer[0..<n])
            if out.count > 16 << 20 { return nil }
        }
        return out
    }
}
