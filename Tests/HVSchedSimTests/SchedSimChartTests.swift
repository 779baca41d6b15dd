import Foundation
import Testing
@testable import HVPluginHost
@testable import HVSched
@testable import HVSchedSim
import HVSupport

/// The charts: valid PNG files by the PNG rules (signature, IHDR, chunk CRCs, a zlib
/// stream Python's zlib inflates), small, with every VM's line visible when shares are
/// equal, in the console font, and the same drawing as SVG.
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

    @Test func encodesAValidPNG() throws {
        var r = ChartRaster(width: 300, height: 100, fonts: try ChartFont.shared())
        r.fillRect(x: 10, y: 10, width: 5, height: 5, ChartColor(1, 2, 3))
        let png = r.png()
        let chunks = try Self.chunks(png)
        #expect(chunks.map(\.type) == ["IHDR", "IDAT", "IEND"])
        for c in chunks { #expect(PNGEncoder.crc32(Array(c.type.utf8) + c.data) == c.crc, "\(c.type)") }
        let ihdr = chunks[0].data
        #expect(Self.be32(ihdr, 0) == 300 && Self.be32(ihdr, 4) == 100)
        #expect(Array(ihdr[8...]) == [8, 2, 0, 0, 0])
        // Deflated: far smaller than the 90 KB of raw scanlines.
        #expect(chunks[1].data.count < 2000, "IDAT is \(chunks[1].data.count) bytes")
    }

    @Test func textUsesTheConsoleFont() throws {
        let fonts = try ChartFont.shared()
        var r = ChartRaster(width: 40, height: 20, fonts: fonts)
        r.text("p", x: 0, y: 0, .black, size: .small)
        r.text("r", x: 10, y: 0, .black, size: .small)
        var p: [Bool] = [], q: [Bool] = []
        for y in 0..<12 { for x in 0..<6 { p.append(r.pixel(x: x, y: y) == .black); q.append(r.pixel(x: 10 + x, y: y) == .black) } }
        #expect(p.contains(true) && q.contains(true))
        #expect(p != q, "'p' and 'r' look the same")
        for y in 0..<12 { for x in 0..<6 { #expect((r.pixel(x: x, y: y) == .black) == fonts.small.isSet("p", x: x, y: y)) } }
        #expect(SchedSimChart.textWidth("abc", .large) == 24 && SchedSimChart.textWidth("abc", .small) == 18)
    }

    @Test func chartOfASimulationIsAValidPNG() throws {
        let r = try SchedPolicyFixtures.simulate(try SchedPolicyFixtures.scenario("redivide.sched"))
        let raster = try SchedSimChart.render(r)
        let png = raster.png()
        let chunks = try Self.chunks(png)
        #expect(Self.be32(chunks[0].data, 0) == UInt32(SchedSimChart.width))
        #expect(Self.be32(chunks[0].data, 4) == UInt32(SchedSimChart.height))
        for c in chunks { #expect(PNGEncoder.crc32(Array(c.type.utf8) + c.data) == c.crc) }
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
        #expect(try SchedSimChart.render(r).png() == png)

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

    /// Every shipped scenario under its own policy: the PNG is under 100 KB and the SVG
    /// has one dashed entitlement line and one achieved line per VM.
    @Test func shippedScenarioChartsAreSmall() throws {
        let dir = SchedPolicyFixtures.scenariosDir
        let names = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".sched") }.sorted()
        #expect(names.count >= 9)
        for name in names {
            let r = try SchedPolicyFixtures.simulate(try SchedPolicyFixtures.scenario(name))
            let chart = SchedSimChart(r)
            let png = try chart.png()
            print("\(name): PNG \(png.count) bytes")
            #expect(png.count < 100_000, "\(name): PNG is \(png.count) bytes")
            let svg = chart.svg()
            #expect(svg.hasPrefix("<?xml") && svg.hasSuffix("</svg>\n"))
            let polylines = svg.components(separatedBy: "<polyline").count - 1
            #expect(polylines >= 2 * r.vms.count, "\(name): \(polylines) polylines for \(r.vms.count) VMs")
            #expect(svg.contains("stroke-dasharray=\"6 4\""))
            for vm in r.vms { #expect(svg.contains(">\(vm.name)</text>"), "\(name): no legend entry for \(vm.name)") }
        }
    }

    /// Three VMs with equal shares have the same line: each one's colour still shows in
    /// the plot area (dash patterns and offsets keep them apart).
    @Test func overlappingSeriesStayDistinguishable() throws {
        let r = try SchedPolicyFixtures.simulate(try SchedPolicyFixtures.scenario("shares-equal.sched"))
        let raster = try SchedSimChart.render(r)
        for vi in r.vms.indices {
            let c = ChartColor.palette[vi]
            var n = 0
            for y in 70..<(SchedSimChart.height - 64) { for x in 71..<(SchedSimChart.width - 230) where raster.pixel(x: x, y: y) == c { n += 1 } }
            #expect(n > 300, "\(r.vms[vi].name): only \(n) pixels of its colour in the plot")
        }
    }
}
