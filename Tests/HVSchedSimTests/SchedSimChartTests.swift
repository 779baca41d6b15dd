import Foundation
import Testing
@testable import HVPluginHost
@testable import HVSched
@testable import HVSchedSim
@testable import HVSupport

/// The PNG encoder and the chart: a valid file by the PNG rules (signature, IHDR, chunk
/// CRCs, zlib stream and Adler-32), checked here by hand and by Python's zlib when
/// python3 is installed.
@Suite struct SchedSimChartTests {
    struct Chunk { let type: String; let data: [UInt8]; let crc: UInt32 }

    static func be32(_ b: [UInt8], _ i: Int) -> UInt32 {
        UInt32(b[i]) << 24 | UInt32(b[i + 1]) << 16 | UInt32(b[i + 2]) << 8 | UInt32(b[i + 3])
    }

    static func chunks(_ png: [UInt8]) throws -> [Chunk] {
        try #require(Array(png.prefix(8)) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        var out: [Chunk] = []
        var i = 8
        while i < png.count {
            let n = Int(be32(png, i))
            let type = String(decoding: png[(i + 4)..<(i + 8)], as: UTF8.self)
            out.append(Chunk(type: type, data: Array(png[(i + 8)..<(i + 8 + n)]), crc: be32(png, i + 8 + n)))
            i += 12 + n
        }
        #expect(i == png.count)
        return out
    }

    /// Inflates stored-only deflate blocks (what ChartPNG writes).
    static func inflateStored(_ z: [UInt8]) throws -> [UInt8] {
        try #require(z.count >= 6 && (UInt16(z[0]) << 8 | UInt16(z[1])) % 31 == 0 && z[0] & 0x0F == 8)
        var out: [UInt8] = []
        var i = 2
        while true {
            let header = z[i]
            try #require(header & 0x06 == 0, "only stored blocks expected")
            let len = Int(z[i + 1]) | Int(z[i + 2]) << 8
            let nlen = Int(z[i + 3]) | Int(z[i + 4]) << 8
            try #require(len ^ 0xFFFF == nlen)
            out += z[(i + 5)..<(i + 5 + len)]
            i += 5 + len
            if header & 1 == 1 { break }
        }
        #expect(be32(z, i) == ChartPNG.adler32(out))
        #expect(i + 4 == z.count)
        return out
    }

    @Test func checksumsMatchKnownValues() {
        #expect(ChartPNG.crc32(Array("123456789".utf8)) == 0xCBF4_3926)
        #expect(ChartPNG.adler32(Array("Wikipedia".utf8)) == 0x11E6_0398)
        #expect(ChartPNG.adler32([]) == 1)
        // Long input: the modulo runs often enough not to overflow.
        let big = [UInt8](repeating: 0xFF, count: 100_000)
        var a: UInt64 = 1, b: UInt64 = 0
        for x in big { a = (a + UInt64(x)) % 65521; b = (b + a) % 65521 }
        #expect(ChartPNG.adler32(big) == UInt32(b << 16 | a))
    }

    @Test func encodesAValidPNG() throws {
        // 300 × 100 is more than 65535 bytes of scanlines: several stored blocks.
        var r = ChartRaster(width: 300, height: 100)
        r.fillRect(x: 10, y: 10, width: 5, height: 5, ChartColor(1, 2, 3))
        let png = r.png()
        let chunks = try Self.chunks(png)
        #expect(chunks.map(\.type) == ["IHDR", "IDAT", "IEND"])
        for c in chunks { #expect(ChartPNG.crc32(Array(c.type.utf8) + c.data) == c.crc, "\(c.type)") }
        let ihdr = chunks[0].data
        #expect(Self.be32(ihdr, 0) == 300 && Self.be32(ihdr, 4) == 100)
        #expect(Array(ihdr[8...]) == [8, 2, 0, 0, 0])
        let raw = try Self.inflateStored(chunks[1].data)
        #expect(raw.count == (300 * 3 + 1) * 100)
        let row = 12 * (300 * 3 + 1)
        #expect(raw[row] == 0)                                     // filter None
        #expect(Array(raw[(row + 1 + 12 * 3)..<(row + 1 + 12 * 3 + 3)]) == [1, 2, 3])
        #expect(Array(raw[1..<4]) == [255, 255, 255])
    }

    @Test func textUsesTheBitmapFont() {
        var r = ChartRaster(width: 20, height: 10)
        r.text("1", x: 0, y: 0, .black)
        // '1': ..#.. / .##.. / ..#.. ... / .###.
        #expect(r.pixel(x: 2, y: 0) == .black && r.pixel(x: 0, y: 0) == .white)
        #expect(r.pixel(x: 1, y: 1) == .black && r.pixel(x: 1, y: 6) == .black && r.pixel(x: 3, y: 6) == .black)
        #expect(ChartRaster.textWidth("abc", scale: 2) == 34)
    }

    @Test func chartOfASimulationIsAValidPNG() throws {
        let r = try SchedPolicyFixtures.simulate(try SchedPolicyFixtures.scenario("redivide.sched"))
        let raster = SchedSimChart.render(r)
        let png = raster.png()
        let chunks = try Self.chunks(png)
        #expect(Self.be32(chunks[0].data, 0) == UInt32(SchedSimChart.width))
        #expect(Self.be32(chunks[0].data, 4) == UInt32(SchedSimChart.height))
        for c in chunks { #expect(ChartPNG.crc32(Array(c.type.utf8) + c.data) == c.crc) }
        // Every VM's colour appears (its lines and legend swatch).
        for vi in r.vms.indices {
            let c = ChartColor.palette[vi]
            var found = false
            for y in 0..<raster.height where !found {
                for x in 0..<raster.width where raster.pixel(x: x, y: y) == c { found = true; break }
            }
            #expect(found, "no pixel in the colour of \(r.vms[vi].name)")
        }
        // Same result, same bytes.
        #expect(SchedSimChart.render(r).png() == png)

        // An independent decoder, when there is one.
        let python = ["/usr/bin/python3", "/usr/local/bin/python3"].first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let python else { return }
        let path = NSTemporaryDirectory() + "hv-sched-chart-\(getpid()).png"
        try Data(png).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let script = """
            import struct, sys, zlib
            d = open(sys.argv[1], 'rb').read()
            assert d[:8] == b'\\x89PNG\\r\\n\\x1a\\n'
            i, idat, w, h = 8, b'', 0, 0
            while i < len(d):
                n, = struct.unpack('>I', d[i:i+4]); t = d[i+4:i+8]; body = d[i+8:i+8+n]
                assert zlib.crc32(t + body) & 0xffffffff == struct.unpack('>I', d[i+8+n:i+12+n])[0]
                if t == b'IHDR': w, h = struct.unpack('>II', body[:8])
                if t == b'IDAT': idat += body
                i += 12 + n
            raw = zlib.decompress(idat)
            assert len(raw) == (w * 3 + 1) * h
            print(w, h)
            """
        let p = Process()
        p.executableURL = URL(fileURLWithPath: python)
        p.arguments = ["-c", script, path]
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationStatus == 0, "\(out)")
        #expect(out == "\(SchedSimChart.width) \(SchedSimChart.height)\n")
    }
}
