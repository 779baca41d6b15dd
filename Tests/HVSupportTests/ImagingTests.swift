import CZlib
import Glibc
import Testing
@testable import HVSupport

/// The PNG encoder (decoded here with zlib and the PNG filter rules) and the PSF
/// console-font loader (on Debian's Terminus fonts and on hand-made PSF1/PSF2 bytes).
@Suite struct ImagingTests {
    static func be32(_ b: [UInt8], _ i: Int) -> Int {
        Int(b[i]) << 24 | Int(b[i + 1]) << 16 | Int(b[i + 2]) << 8 | Int(b[i + 3])
    }

    /// Decodes what PNGEncoder writes (8-bit RGB/RGBA, filters None/Sub/Up): size and pixels.
    static func decode(_ png: [UInt8]) throws -> (width: Int, height: Int, bpp: Int, pixels: [UInt8]) {
        try #require(Array(png.prefix(8)) == PNGEncoder.signature)
        var i = 8, idat: [UInt8] = [], w = 0, h = 0, bpp = 0
        while i < png.count {
            let n = be32(png, i)
            let type = Array(png[(i + 4)..<(i + 8)])
            let body = Array(png[(i + 8)..<(i + 8 + n)])
            #expect(UInt32(be32(png, i + 8 + n)) == PNGEncoder.crc32(type + body))
            if type == Array("IHDR".utf8) { w = be32(body, 0); h = be32(body, 4); bpp = body[9] == 6 ? 4 : 3 }
            if type == Array("IDAT".utf8) { idat += body }
            i += 12 + n
        }
        let stride = w * bpp
        var rawSize = uLong((stride + 1) * h)
        var raw = [UInt8](repeating: 0, count: Int(rawSize))
        let rc = raw.withUnsafeMutableBufferPointer { d in idat.withUnsafeBufferPointer { s in uncompress(d.baseAddress, &rawSize, s.baseAddress, uLong(s.count)) } }
        try #require(rc == Z_OK && Int(rawSize) == raw.count)
        var px = [UInt8](repeating: 0, count: stride * h)
        for y in 0..<h {
            let f = raw[y * (stride + 1)]
            try #require(f <= 2, "filter \(f)")
            for x in 0..<stride {
                let v = raw[y * (stride + 1) + 1 + x]
                let left = x >= bpp ? px[y * stride + x - bpp] : 0
                let up = y > 0 ? px[(y - 1) * stride + x] : 0
                px[y * stride + x] = f == 0 ? v : f == 1 ? v &+ left : v &+ up
            }
        }
        return (w, h, bpp, px)
    }

    @Test func pngRoundTripsThroughZlib() throws {
        // A gradient (Sub/Up win), noise (None wins) and transparency.
        let w = 64, h = 48
        var rgba = [UInt8](repeating: 0, count: w * h * 4)
        var x: UInt32 = 12345
        for p in 0..<(w * h) {
            x = x &* 1_103_515_245 &+ 12345
            rgba[p * 4] = UInt8(p % w * 4)
            rgba[p * 4 + 1] = UInt8(p / w * 5)
            rgba[p * 4 + 2] = p / w > 30 ? UInt8(truncatingIfNeeded: x >> 16) : 7
            rgba[p * 4 + 3] = UInt8(p % 255)
        }
        let png = PNGEncoder.encode(width: w, height: h, rgba: rgba)
        let d = try Self.decode(png)
        #expect(d.width == w && d.height == h && d.bpp == 4)
        #expect(d.pixels == rgba)
        let flat = PNGEncoder.encode(width: 1000, height: 1000, pixels: [UInt8](repeating: 200, count: 3_000_000), format: .rgb)
        #expect(flat.count < 10_000, "a flat 1000×1000 image deflates to \(flat.count) bytes")
        #expect(try Self.decode(flat).pixels.allSatisfy { $0 == 200 })
    }

    @Test func crcMatchesTheKnownValue() {
        #expect(PNGEncoder.crc32(Array("123456789".utf8)) == 0xCBF4_3926)
    }

    @Test func terminusFontsDrawEveryASCIICharacterDistinctly() throws {
        for (file, w, h) in [("Lat15-Terminus12x6.psf.gz", 6, 12), ("Lat15-Terminus16.psf.gz", 8, 16)] {
            let font = try PSFFont.load(PSFFont.systemDirectory + "/" + file)
            #expect(font.width == w && font.height == h, "\(file)")
            var seen: [[String]: Character] = [:]
            for v in 0x21...0x7E {
                let c = Character(Unicode.Scalar(UInt8(v)))
                #expect(font.hasGlyph(c), "\(file): no glyph for \(c)")
                let rows = font.rows(c)
                #expect(rows.joined().contains("#"), "\(file): \(c) is blank")
                if let other = seen[rows] { Issue.record("\(file): '\(c)' looks like '\(other)'") }
                seen[rows] = c
            }
            #expect(font.rows("p") != font.rows("r"))
        }
    }

    @Test func parsesPSF1AndPSF2AndRejectsOthers() throws {
        // PSF1: 256 glyphs of 8×2 with a Unicode table mapping 'A' (and 'Å') to glyph 1.
        var v1: [UInt8] = [0x36, 0x04, 0x02, 2]
        v1 += [UInt8](repeating: 0, count: 512)
        v1[4 + 2] = 0x81; v1[4 + 3] = 0x18
        for g in 0..<256 {
            if g == 1 { v1 += [0x41, 0x00, 0xC5, 0x00] }
            v1 += [0xFF, 0xFF]
        }
        let f1 = try PSFFont.parse(v1, name: "v1")
        #expect(f1.width == 8 && f1.height == 2)
        #expect(f1.rows("A") == ["#......#", "...##..."] && f1.rows("Å") == f1.rows("A"))
        // PSF2: 2 glyphs of 3×1, no table (glyph i is character i).
        var v2: [UInt8] = [0x72, 0xB5, 0x4A, 0x86, 0, 0, 0, 0, 32, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 3, 0, 0, 0]
        v2 += [0x00, 0xA0]
        let f2 = try PSFFont.parse(v2, name: "v2")
        #expect(f2.rows("\u{1}") == ["#.#"])
        #expect(throws: PSFFont.LoadError.self) { try PSFFont.parse([1, 2, 3, 4], name: "junk") }
        #expect(throws: PSFFont.LoadError.self) { try PSFFont.parse(Array(v2.prefix(33)), name: "short") }
        #expect(throws: PSFFont.LoadError.self) { try PSFFont.load("/nonexistent/font.psf.gz") }
    }
}
