import Foundation
import XCTest

/// The SVGA plugin on real VMs: the drawing guest's screenshot against a picture this
/// test computes, SeaBIOS's VGA BIOS text, and the same guest on QEMU's `-vga vmware`.
final class SVGADisplayTests: XCTestCase {
    // MARK: pictures

    struct Picture: Equatable {
        var width: Int
        var height: Int
        /// width * height * 3 bytes.
        var rgb: [UInt8]

        init(width: Int, height: Int, rgb: [UInt8]) {
            self.width = width
            self.height = height
            self.rgb = rgb
        }

        init(width: Int, height: Int, fill: UInt32) {
            self.init(width: width, height: height, rgb: [UInt8](repeating: 0, count: width * height * 3))
            fillRect(0, 0, width, height, fill)
        }

        func pixel(_ x: Int, _ y: Int) -> UInt32 {
            let o = (y * width + x) * 3
            return UInt32(rgb[o]) << 16 | UInt32(rgb[o + 1]) << 8 | UInt32(rgb[o + 2])
        }

        mutating func set(_ x: Int, _ y: Int, _ c: UInt32) {
            let o = (y * width + x) * 3
            rgb[o] = UInt8(c >> 16 & 0xFF)
            rgb[o + 1] = UInt8(c >> 8 & 0xFF)
            rgb[o + 2] = UInt8(c & 0xFF)
        }

        mutating func fillRect(_ x: Int, _ y: Int, _ w: Int, _ h: Int, _ c: UInt32) {
            for j in y..<(y + h) { for i in x..<(x + w) { set(i, j, c) } }
        }

        /// How many pixels differ and where the first is; nil when equal.
        func difference(from other: Picture) -> String? {
            guard width == other.width, height == other.height else {
                return "size \(width)x\(height) vs \(other.width)x\(other.height)"
            }
            var count = 0
            var first: String?
            for y in 0..<height {
                for x in 0..<width where pixel(x, y) != other.pixel(x, y) {
                    count += 1
                    if first == nil { first = "(\(x), \(y)): \(String(pixel(x, y), radix: 16)) vs \(String(other.pixel(x, y), radix: 16))" }
                }
            }
            return first.map { "\(count) pixels differ, first at \($0)" }
        }
    }

    /// Decodes a PNG (8-bit RGB, any filter, any deflate level) with Python's zlib, so
    /// the check shares no code with the encoder it checks.
    static func decodePNG(_ path: String) throws -> Picture {
        let script = """
            import sys, zlib, struct
            d = open(sys.argv[1], 'rb').read()
            assert d[:8] == b'\\x89PNG\\r\\n\\x1a\\n'
            pos, idat = 8, b''
            while pos < len(d):
                n, = struct.unpack('>I', d[pos:pos+4]); t = d[pos+4:pos+8]; body = d[pos+8:pos+8+n]; pos += 12 + n
                if t == b'IHDR':
                    w, h, depth, ctype = struct.unpack('>IIBB', body[:10]); assert depth == 8 and ctype == 2
                elif t == b'IDAT':
                    idat += body
            raw = zlib.decompress(idat); stride = w * 3; out = bytearray(); prev = bytearray(stride)
            for y in range(h):
                f = raw[y * (stride + 1)]; line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
                if f:
                    for i in range(stride):
                        a = line[i - 3] if i >= 3 else 0; b = prev[i]; c = prev[i - 3] if i >= 3 else 0
                        if f == 1: line[i] = (line[i] + a) & 255
                        elif f == 2: line[i] = (line[i] + b) & 255
                        elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
                        else:
                            p = a + b - c; pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                            line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
                out += line; prev = line
            open(sys.argv[2], 'wb').write(struct.pack('<II', w, h) + bytes(out))
            """
        let rawPath = path + ".raw"
        let r = HostHarness.run("/usr/bin/python3", ["-c", script, path, rawPath], timeout: 120)
        XCTAssertEqual(r.status, 0, "decoding \(path): \(r.stderr)")
        return try readRaw(rawPath)
    }

    /// `<u32 width><u32 height>` then RGB bytes.
    static func readRaw(_ path: String) throws -> Picture {
        let data = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let w = Int(data[0]) | Int(data[1]) << 8 | Int(data[2]) << 16 | Int(data[3]) << 24
        let h = Int(data[4]) | Int(data[5]) << 8 | Int(data[6]) << 16 | Int(data[7]) << 24
        return Picture(width: w, height: h, rgb: Array(data[8...]))
    }

    /// QEMU's screendump format (binary PPM, maxval 255).
    static func decodePPM(_ path: String) throws -> Picture {
        let data = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        var fields: [String] = []
        var i = 0
        while fields.count < 4 {
            var word = ""
            while i < data.count, data[i] == 0x20 || data[i] == 0x0A { i += 1 }
            while i < data.count, data[i] != 0x20, data[i] != 0x0A { word.append(Character(Unicode.Scalar(data[i]))); i += 1 }
            fields.append(word)
        }
        i += 1
        XCTAssertEqual(fields[0], "P6")
        let w = Int(fields[1])!, h = Int(fields[2])!
        return Picture(width: w, height: h, rgb: Array(data[i..<(i + w * h * 3)]))
    }

    // MARK: the drawing guest's picture, computed from its description (guests/svga-draw)

    /// The 5x7 glyphs from guests/svga-draw/font.h (`['A'] = {0x0E, ...},` lines).
    static func glyphs() throws -> [Character: [UInt8]] {
        let text = try String(contentsOfFile: HostHarness.repoRoot + "/guests/svga-draw/font.h", encoding: .utf8)
        var out: [Character: [UInt8]] = [:]
        for line in text.split(separator: "\n") where line.contains("['") {
            let ch = line[line.index(line.firstIndex(of: "'")!, offsetBy: 1)]
            let inside = line.split(separator: "{")[1].split(separator: "}")[0]
            out[ch] = inside.split(separator: ",").map { UInt8($0.trimmingCharacters(in: .whitespaces).dropFirst(2), radix: 16)! }
        }
        return out
    }

    static func expectedDrawing(cursor: Bool) throws -> Picture {
        var p = Picture(width: 800, height: 600, fill: 0x203048)
        p.fillRect(40, 40, 200, 120, 0xCC2020)
        p.fillRect(280, 40, 160, 120, 0x20B040)
        let font = try glyphs()
        for (i, ch) in "SVGA DRAW OK".enumerated() {
            let rows = font[ch] ?? [UInt8](repeating: 0, count: 7)
            for (r, bits) in rows.enumerated() {
                for c in 0..<5 where bits & (0x10 >> c) != 0 {
                    p.fillRect(40 + i * 24 + c * 4, 200 + r * 4, 4, 4, 0xFFE060)
                }
            }
        }
        var copy = p
        for y in 0..<28 { for x in 0..<240 { copy.set(360 + x, 320 + y, p.pixel(40 + x, 200 + y)) } }
        p = copy
        if cursor {
            for y in 0..<16 {
                for x in 0...y { p.set(320 + x, 240 + y, x == 0 || x == y || y == 15 ? 0x000000 : 0xFFFFFF) }
            }
        }
        return p
    }

    // MARK: helpers

    func requireSVGAPlugin() throws {
        try HostHarness.requireHost()
        let lib = URL(fileURLWithPath: HostHarness.hvhost).deletingLastPathComponent().appendingPathComponent("libSVGA.so").path
        XCTAssertTrue(FileManager.default.fileExists(atPath: lib), "\(lib) is not built (swift build)")
    }

    /// Polls `done` every 50 ms until it holds or `timeout` passes.
    func wait(_ what: String, timeout: TimeInterval, _ done: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if done() { return true }
            usleep(50_000)
        }
        XCTFail("timed out after \(timeout) s waiting for \(what)")
        return false
    }

    func serialText(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }

    /// Boots svga-draw with `cmdline`, waits for "svga-draw: ready" and saves screenshots.
    func screenshotDrawingGuest(name: String, cmdline: String = "", shots: [(file: String, cursor: Bool)]) throws -> String {
        let dir = HostHarness.workDir + "/" + name
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let serial = dir + "/serial.txt"
        var extra = ["svga.present": "TRUE", "hv.serial": "file:" + serial]
        if !cmdline.isEmpty { extra["hv.cmdline"] = cmdline }
        let vmx = HostHarness.vmx(name, guest: "svga-draw", extra: extra)
        let socket = dir + "/console.sock"
        var replies: [HostHarness.Result] = []
        let r = HostHarness.hvhostRun(["run", "--console", socket, vmx], timeout: 90) { _ in
            guard self.wait("svga-draw: ready", timeout: 60, { self.serialText(serial).contains("svga-draw: ready") }) else { return }
            for shot in shots {
                replies.append(HostHarness.hvhostRun(["console", "--socket", socket, "screenshot", name, dir + "/" + shot.file]
                                                     + (shot.cursor ? [] : ["nocursor"]), timeout: 30))
            }
            _ = HostHarness.hvhostRun(["console", "--socket", socket, "poweroff", name], timeout: 10)
        }
        XCTAssertFalse(r.timedOut, r.stderr)
        for reply in replies { XCTAssertEqual(reply.status, 0, reply.stdout + reply.stderr) }
        return dir
    }

    // MARK: tests

    /// svga-draw sets 800x600x32 and draws with RECT_FILL, CPU writes + UPDATE, its own
    /// glyphs, RECT_COPY, an alpha cursor and a FENCE; the screenshot (cursor blended
    /// in, and without it) equals the picture computed here.
    func testDrawingGuestScreenshotIsPixelExact() throws {
        try requireSVGAPlugin()
        let dir = try screenshotDrawingGuest(name: "svga-draw", shots: [("cursor.png", true), ("plain.png", false)])
        let serial = serialText(dir + "/serial.txt")
        XCTAssertTrue(serial.contains("svga-draw: fence 0x5eed passed"), serial)
        let withCursor = try Self.decodePNG(dir + "/cursor.png")
        XCTAssertNil(withCursor.difference(from: try Self.expectedDrawing(cursor: true)))
        let plain = try Self.decodePNG(dir + "/plain.png")
        XCTAssertNil(plain.difference(from: try Self.expectedDrawing(cursor: false)))
    }

    /// SeaBIOS (bios-256k.bin) runs vgabios-vmware.bin from our expansion ROM: its banner
    /// is in the text buffer at 0xB8000 (read through the plugin's `text` command) and the
    /// screenshot shows it as 9x16 light-grey-on-black text.
    func testSeaBIOSTextModeShowsTheBanner() throws {
        try requireSVGAPlugin()
        for f in ["/usr/share/seabios/bios-256k.bin", "/usr/share/seabios/vgabios-vmware.bin"]
        where !FileManager.default.fileExists(atPath: f) {
            throw XCTSkip("\(f) is missing (apt-get install seabios)")
        }
        let name = "svga-bios"
        let dir = HostHarness.workDir + "/" + name
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let vmx = HostHarness.writeVMX(name, ["displayName": name, "memsize": "64", "svga.present": "TRUE",
                                              "hv.serial": "none", "bios.bootOrder": "hdd",
                                              "hv.firmware.log": dir + "/bios.log"])
        let socket = dir + "/console.sock"
        var text = "", shot: HostHarness.Result?
        var seconds = 0.0
        let r = HostHarness.hvhostRun(["run", "--console", socket, vmx], timeout: 60) { _ in
            let start = Date()
            _ = self.wait("the banner in the VGA text buffer", timeout: 30) {
                text = HostHarness.hvhostRun(["console", "--socket", socket, "device", name, "svga", "text"], timeout: 10).stdout
                return text.contains("SeaBIOS (version")
            }
            seconds = Date().timeIntervalSince(start)
            shot = HostHarness.hvhostRun(["console", "--socket", socket, "screenshot", name, dir + "/text.png"], timeout: 30)
            _ = HostHarness.hvhostRun(["console", "--socket", socket, "poweroff", name], timeout: 10)
        }
        XCTAssertFalse(r.timedOut, r.stderr)
        print("VGA BIOS banner in the text buffer after \(String(format: "%.2f", seconds)) s")
        XCTAssertLessThanOrEqual(seconds, 10, "budget: 10 s to the banner")
        let log = serialText(dir + "/bios.log")
        XCTAssertTrue(log.contains("Start SeaVGABIOS"), "the VGA BIOS ran from our ROM:\n\(log.suffix(2000))")
        XCTAssertEqual(shot?.status, 0, (shot?.stdout ?? "") + (shot?.stderr ?? ""))
        let p = try Self.decodePNG(dir + "/text.png")
        XCTAssertEqual([p.width, p.height], [720, 400], "80x25 cells of 9x16")
        // Row 0 holds the banner: every pixel is the text colour or black, and each cell
        // holding a printable character has some of the text colour; the last row is blank.
        let banner = Array(text.split(separator: "\n").first ?? "")
        var colors = Set<UInt32>()
        for y in 0..<16 { for x in 0..<720 { colors.insert(p.pixel(x, y)) } }
        XCTAssertEqual(colors, [0x000000, 0xAAAAAA])
        for (i, ch) in banner.enumerated() where ch != " " {
            var lit = 0
            for y in 0..<16 { for x in 0..<9 where p.pixel(i * 9 + x, y) == 0xAAAAAA { lit += 1 } }
            XCTAssertGreaterThan(lit, 0, "cell \(i) ('\(ch)') is dark")
        }
        for y in 384..<400 { for x in 0..<720 { XCTAssertEqual(p.pixel(x, y), 0, "(\(x), \(y))"); if p.pixel(x, y) != 0 { return } } }
    }

    /// The same guest on QEMU 7.2's `-vga vmware` (its screendump) and on hvhost, both
    /// drawing by CPU (`accel=0`: QEMU's RECT_FILL and RECT_COPY are broken, see
    /// guests/svga-draw), equal each other and the computed picture.
    func testDrawingGuestMatchesQEMU() throws {
        try requireSVGAPlugin()
        let qemu = try HostHarness.requireQEMU()
        let dir = try screenshotDrawingGuest(name: "svga-draw-cpu", cmdline: "accel=0", shots: [("ours.png", false)])
        let ours = try Self.decodePNG(dir + "/ours.png")

        let serial = dir + "/qemu-serial.txt", qmp = dir + "/qmp.sock", dump = dir + "/qemu.ppm"
        let args = ["-enable-kvm", "-M", "pc", "-m", "128", "-cpu", "max,arch-capabilities=off", "-display", "none",
                    "-no-reboot", "-serial", "file:" + serial, "-vga", "vmware", "-qmp", "unix:\(qmp),server,nowait",
                    "-kernel", HostHarness.guest("svga-draw"), "-append", "accel=0"]
        var reply = ""
        _ = HostHarness.run(qemu, args, timeout: 90) { p in
            defer { kill(p.processIdentifier, SIGTERM) }
            guard self.wait("svga-draw: ready under QEMU", timeout: 60, { self.serialText(serial).contains("svga-draw: ready") }) else { return }
            reply = Self.qmpScreendump(socket: qmp, file: dump)
        }
        XCTAssertTrue(reply.contains("\"return\""), "QMP: \(reply)")
        let theirs = try Self.decodePPM(dump)
        XCTAssertNil(ours.difference(from: theirs), "hvhost vs QEMU")
        XCTAssertNil(ours.difference(from: try Self.expectedDrawing(cursor: false)), "hvhost vs computed")
    }

    /// qmp_capabilities, then screendump; returns the screendump's reply line.
    static func qmpScreendump(socket path: String, file: String) -> String {
        let fd = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return "socket failed" }
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { buf in
            for (i, b) in path.utf8.prefix(buf.count - 1).enumerated() { buf[i] = b }
        }
        let ok = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard ok == 0 else { return "connect failed" }
        var pending: [UInt8] = []
        // QMP ends lines in CRLF; split on the LF byte (a Swift String treats CRLF as one
        // character).
        func line() -> String {
            while !pending.contains(0x0A) {
                var buf = [UInt8](repeating: 0, count: 4096)
                let n = read(fd, &buf, buf.count)
                if n <= 0 { return String(decoding: pending, as: UTF8.self) }
                pending += buf[0..<n]
            }
            let i = pending.firstIndex(of: 0x0A)!
            defer { pending = Array(pending[(i + 1)...]) }
            return String(decoding: pending[..<i], as: UTF8.self)
        }
        func send(_ s: String) { _ = s.withCString { write(fd, $0, strlen($0)) } }
        _ = line()   // greeting
        send("{\"execute\":\"qmp_capabilities\"}\n")
        _ = line()
        send("{\"execute\":\"screendump\",\"arguments\":{\"filename\":\"\(file)\"}}\n")
        var reply = line()
        while reply.contains("\"event\"") { reply = line() }
        return reply
    }
}
