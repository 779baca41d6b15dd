import CZlib
import Glibc

/// A fixed-width bitmap font in the Linux console's PSF format (version 1 or 2, plain or
/// gzip-compressed, as Debian's console-setup and kbd ship them under
/// /usr/share/consolefonts), with its Unicode table mapping characters to glyphs.
package struct PSFFont: Sendable {
    package let width: Int
    package let height: Int
    /// Glyph bitmaps: `height` rows of `rowBytes` bytes each, leftmost pixel in the top bit.
    private let bitmaps: [UInt8]
    private let rowBytes: Int
    private let glyphBytes: Int
    private let glyphCount: Int
    private let glyphOf: [Unicode.Scalar: Int]

    package struct LoadError: Error, CustomStringConvertible, Sendable {
        package let description: String
    }

    /// Where Debian installs its console fonts.
    package static let systemDirectory = "/usr/share/consolefonts"

    /// Loads `path` (`.psf`, `.psfu` or either gzipped; zlib reads both).
    package static func load(_ path: String) throws(LoadError) -> PSFFont {
        guard let file = gzopen(path, "rb") else {
            throw LoadError(description: "\(path): cannot open: \(String(cString: strerror(errno)))")
        }
        defer { gzclose(file) }
        var data: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { gzread(file, $0.baseAddress, UInt32($0.count)) }
            guard n >= 0 else { throw LoadError(description: "\(path): cannot read (corrupt gzip data?)") }
            if n == 0 { break }
            data += chunk[0..<Int(n)]
            guard data.count <= 8 << 20 else { throw LoadError(description: "\(path): larger than 8 MiB; not a console font") }
        }
        return try parse(data, name: path)
    }

    /// Parses PSF bytes; `name` labels errors.
    package static func parse(_ d: [UInt8], name: String) throws(LoadError) -> PSFFont {
        func le32(_ i: Int) -> Int { Int(d[i]) | Int(d[i + 1]) << 8 | Int(d[i + 2]) << 16 | Int(d[i + 3]) << 24 }
        func bad(_ why: String) -> LoadError { LoadError(description: "\(name): \(why)") }
        var width = 8, height: Int, count: Int, glyphBytes: Int, start: Int, hasTable: Bool, v2: Bool
        if d.count >= 4, d[0] == 0x36, d[1] == 0x04 {                     // PSF 1
            v2 = false
            let mode = d[2]
            count = mode & 0x01 != 0 ? 512 : 256
            hasTable = mode & 0x06 != 0
            glyphBytes = Int(d[3])
            height = glyphBytes
            start = 4
        } else if d.count >= 32, Array(d[0..<4]) == [0x72, 0xB5, 0x4A, 0x86] {   // PSF 2
            v2 = true
            start = le32(8)
            hasTable = le32(12) & 1 != 0
            count = le32(16)
            glyphBytes = le32(20)
            height = le32(24)
            width = le32(28)
        } else {
            throw bad("not a PSF console font (bad magic)")
        }
        let rowBytes = (width + 7) / 8
        guard width > 0, width <= 64, height > 0, height <= 64, count > 0, count <= 65536,
              glyphBytes == rowBytes * height, start >= 0, start + count * glyphBytes <= d.count else {
            throw bad("inconsistent header (\(count) glyphs of \(width)×\(height), \(glyphBytes) bytes each, file \(d.count) bytes)")
        }
        let bitmaps = Array(d[start..<(start + count * glyphBytes)])
        var map: [Unicode.Scalar: Int] = [:]
        var i = start + count * glyphBytes
        if hasTable {
            // Per glyph: its characters, then optional sequences, then a terminator.
            for g in 0..<count {
                var inSequence = false
                if v2 {
                    var utf8: [UInt8] = []
                    while i < d.count, d[i] != 0xFF {
                        if d[i] == 0xFE { inSequence = true; i += 1; continue }
                        let lead = d[i]
                        let len = lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4
                        guard i + len <= d.count else { throw bad("Unicode table cut short") }
                        utf8 = Array(d[i..<(i + len)])
                        i += len
                        if !inSequence, let s = String(decoding: utf8, as: UTF8.self).unicodeScalars.first, map[s] == nil { map[s] = g }
                    }
                    i += 1
                } else {
                    while i + 1 < d.count {
                        let u = Int(d[i]) | Int(d[i + 1]) << 8
                        i += 2
                        if u == 0xFFFF { break }
                        if u == 0xFFFE { inSequence = true; continue }
                        if !inSequence, let s = Unicode.Scalar(u), map[s] == nil { map[s] = g }
                    }
                }
            }
        } else {
            for g in 0..<min(count, 256) { if let s = Unicode.Scalar(g) { map[s] = g } }
        }
        return PSFFont(width: width, height: height, bitmaps: bitmaps, rowBytes: rowBytes, glyphBytes: glyphBytes,
                       glyphCount: count, glyphOf: map)
    }

    /// Whether the font draws `c` (others draw as '?').
    package func hasGlyph(_ c: Character) -> Bool { c.unicodeScalars.first.map { glyphOf[$0] != nil } ?? false }

    /// Whether pixel (x, y) of `c`'s glyph is set.
    package func isSet(_ c: Character, x: Int, y: Int) -> Bool {
        guard x >= 0, x < width, y >= 0, y < height else { return false }
        let g = c.unicodeScalars.first.flatMap { glyphOf[$0] } ?? glyphOf["?"] ?? 0
        let byte = bitmaps[g * glyphBytes + y * rowBytes + x / 8]
        return byte & (0x80 >> UInt8(x % 8)) != 0
    }

    /// The glyph's rows as strings of '#' and '.' (tests, debugging).
    package func rows(_ c: Character) -> [String] {
        (0..<height).map { y in String((0..<width).map { isSet(c, x: $0, y: y) ? "#" : "." }) }
    }
}
