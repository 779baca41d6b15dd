import CZlib
import Glibc
import HVSupport
import XCTest
@testable import HVHostIO

/// A framebuffer the test writes: XRGB8888 pixels.
final class TestFramebuffer: DisplayFramebuffer, @unchecked Sendable {
    let lock = HostLock()
    var bytes: [UInt8]
    let width: Int, height: Int
    init(width: Int, height: Int) {
        self.width = width
        self.height = height
        bytes = [UInt8](repeating: 0, count: width * height * 4)
    }
    func copy(into buffer: inout [UInt8]) { lock.withLock { buffer = bytes } }
    func fill(_ r: DisplayRect, _ xrgb: UInt32) {
        lock.withLock {
            for y in r.y..<(r.y + r.height) {
                for x in r.x..<(r.x + r.width) {
                    let o = (y * width + x) * 4
                    bytes[o] = UInt8(xrgb & 0xFF); bytes[o + 1] = UInt8(xrgb >> 8 & 0xFF); bytes[o + 2] = UInt8(xrgb >> 16 & 0xFF)
                }
            }
        }
    }
    /// A pattern with many colours (so ZRLE uses raw, palette and solid tiles).
    func pattern() {
        lock.withLock {
            for y in 0..<height {
                for x in 0..<width {
                    let o = (y * width + x) * 4
                    let v: UInt32 = x < width / 3 ? 0x203040 : x < 2 * width / 3 ? UInt32((x / 8 + y / 8) % 3) * 0x404040 : UInt32(x * 7 + y * 13) & 0xFFFFFF
                    bytes[o] = UInt8(v & 0xFF); bytes[o + 1] = UInt8(v >> 8 & 0xFF); bytes[o + 2] = UInt8(v >> 16 & 0xFF)
                }
            }
        }
    }
    func xrgb(_ x: Int, _ y: Int) -> UInt32 {
        lock.withLock {
            let o = (y * width + x) * 4
            return UInt32(bytes[o]) | UInt32(bytes[o + 1]) << 8 | UInt32(bytes[o + 2]) << 16
        }
    }
    var all: [UInt32] { (0..<height).flatMap { y in (0..<width).map { x in xrgb(x, y) } } }
    /// Copies `source`'s pixels to the same-size rectangle at (toX, toY), as a blit does.
    func copyRect(_ source: DisplayRect, toX: Int, toY: Int) {
        let pixels = lock.withLock { bytes }
        lock.withLock {
            for y in 0..<source.height {
                for x in 0..<source.width {
                    let s = ((source.y + y) * width + source.x + x) * 4, d = ((toY + y) * width + toX + x) * 4
                    for k in 0..<4 { bytes[d + k] = pixels[s + k] }
                }
            }
        }
    }
}

/// Records what reaches the VM's input path.
final class RecordingInput: InputClient, @unchecked Sendable {
    let lock = HostLock()
    var keys: [(UInt32, Bool)] = []
    var pointers: [PointerEvent] = []
    func key(scancode: UInt32, pressed: Bool) -> Bool {
        lock.withLock { keys.append((scancode, pressed)); lock.broadcast() }
        return true
    }
    func pointer(_ event: PointerEvent) -> Bool {
        lock.withLock { pointers.append(event); lock.broadcast() }
        return true
    }
    /// Waits (up to 30 s) until `done` holds.
    func wait(_ done: (RecordingInput) -> Bool) -> Bool {
        let deadline = RFBConnection.now() + 30_000_000_000
        return lock.withLock {
            while !done(self) {
                if RFBConnection.now() >= deadline { return false }
                lock.wait(until: deadline)
            }
            return true
        }
    }
}

/// A VM's console without a VM: a surface with a test framebuffer and a router.
struct ConsoleFixture {
    let surface = DisplaySurface()
    let router = InputRouter()
    let input = RecordingInput()
    let framebuffer: TestFramebuffer
    let console: RemoteConsole
    let server: RFBServer

    init(width: Int = 200, height: Int = 120, password: String? = nil) throws {
        framebuffer = TestFramebuffer(width: width, height: height)
        framebuffer.pattern()
        _ = surface.attach(publisher: framebuffer)
        surface.setMode(try DisplayMode(width: width, height: height, pitch: width * 4, format: .xrgb8888), framebuffer: framebuffer)
        router.attach(input)
        console = RemoteConsole(name: "fixture", display: surface, input: router, password: password)
        server = try RFBServer(console: console, address: "127.0.0.1", port: 0)
    }
}

/// A minimal RFB client for the tests (TCP or over an already open stream).
final class TestRFBClient {
    let fd: Int32
    var width = 0, height = 0
    var name = ""
    private var inflater = z_stream()
    private var inflaterReady = false

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else { throw RFBError("connect: \(errno)") }
        var tv = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit {
        close(fd)
        if inflaterReady { inflateEnd(&inflater) }
    }

    func send(_ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, bytes.count, Int32(MSG_NOSIGNAL)) }
    }

    func read(_ count: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        var got = 0
        while got < count {
            let n = out.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + got, count - got, 0) }
            guard n > 0 else { throw RFBError("server closed the connection after \(got) of \(count) bytes") }
            got += n
        }
        return out
    }

    /// True when the server closed the connection (within the receive timeout).
    func closedByServer() -> Bool {
        var b = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = b.withUnsafeMutableBytes { recv(fd, $0.baseAddress, 4096, 0) }
            if n == 0 { return true }
            if n < 0 { return errno == ECONNRESET }
        }
    }

    func u16(_ b: [UInt8], _ i: Int) -> Int { Int(b[i]) << 8 | Int(b[i + 1]) }
    func u32(_ b: [UInt8], _ i: Int) -> UInt32 { UInt32(b[i]) << 24 | UInt32(b[i + 1]) << 16 | UInt32(b[i + 2]) << 8 | UInt32(b[i + 3]) }

    /// Version 3.8 (or `minor`), None or VNC authentication, ClientInit, ServerInit.
    func handshake(minor: Int = 8, password: String? = nil) throws {
        let v = try read(12)
        XCTAssertEqual(String(decoding: v, as: UTF8.self), "RFB 003.008\n")
        send(Array("RFB 003.00\(minor)\n".utf8))
        var type: UInt8
        if minor >= 7 {
            let n = try read(1)[0]
            type = try read(Int(n))[0]
            send([type])
        } else {
            type = UInt8(u32(try read(4), 0))
        }
        if type == 2 {
            let challenge = try read(16)
            send(RFBConnection.vncAuthResponse(challenge: challenge, password: password ?? ""))
        }
        if type == 2 || minor >= 8 {
            let result = u32(try read(4), 0)
            guard result == 0 else { throw RFBError("security result \(result)") }
        }
        send([1])
        let s = try read(24)
        width = u16(s, 0); height = u16(s, 2)
        name = String(decoding: try read(Int(u32(s, 20))), as: UTF8.self)
    }

    func setEncodings(_ list: [Int32]) {
        var m: [UInt8] = [2, 0, UInt8(list.count >> 8), UInt8(list.count & 0xFF)]
        for e in list { let v = UInt32(bitPattern: e); m += [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }
        send(m)
    }

    func request(incremental: Bool, x: Int = 0, y: Int = 0, w: Int? = nil, h: Int? = nil) {
        let w = w ?? width, h = h ?? height
        send([3, incremental ? 1 : 0, UInt8(x >> 8), UInt8(x & 0xFF), UInt8(y >> 8), UInt8(y & 0xFF),
              UInt8(w >> 8), UInt8(w & 0xFF), UInt8(h >> 8), UInt8(h & 0xFF)])
    }

    struct Rect {
        var x, y, w, h: Int
        var encoding: Int32
        var pixels: [UInt32]
        /// CopyRect's source position.
        var sourceX = 0, sourceY = 0
    }

    /// Applies an update to the client's copy of the screen, rectangle by rectangle in
    /// order, as a viewer does.
    static func apply(_ rects: [Rect], to screen: inout [UInt32], width: Int) {
        for r in rects {
            switch r.encoding {
            case 1:
                let before = screen
                for y in 0..<r.h {
                    for x in 0..<r.w { screen[(r.y + y) * width + r.x + x] = before[(r.sourceY + y) * width + r.sourceX + x] }
                }
            case 0, 16:
                for y in 0..<r.h {
                    for x in 0..<r.w { screen[(r.y + y) * width + r.x + x] = r.pixels[y * r.w + x] }
                }
            default:
                break
            }
        }
    }

    /// One FramebufferUpdate, pixels decoded to 0x00RRGGBB (server's default format).
    func update() throws -> [Rect] {
        let head = try read(4)
        XCTAssertEqual(head[0], 0, "FramebufferUpdate")
        var rects: [Rect] = []
        for _ in 0..<u16(head, 2) {
            let h = try read(12)
            var r = Rect(x: u16(h, 0), y: u16(h, 2), w: u16(h, 4), h: u16(h, 6), encoding: Int32(bitPattern: u32(h, 8)), pixels: [])
            switch r.encoding {
            case 1:
                let s = try read(4)
                r.sourceX = u16(s, 0)
                r.sourceY = u16(s, 2)
            case 0:
                let b = try read(r.w * r.h * 4)
                r.pixels = (0..<(r.w * r.h)).map { UInt32(b[4 * $0]) | UInt32(b[4 * $0 + 1]) << 8 | UInt32(b[4 * $0 + 2]) << 16 }
            case 16:
                let n = Int(u32(try read(4), 0))
                r.pixels = try decodeZRLE(inflate(try read(n)), w: r.w, h: r.h)
            case -239:
                _ = try read(r.w * r.h * 4 + (r.w + 7) / 8 * r.h)
            case -223:
                width = r.w; height = r.h
            default:
                throw RFBError("encoding \(r.encoding)")
            }
            rects.append(r)
        }
        return rects
    }

    private func inflate(_ input: [UInt8]) throws -> [UInt8] {
        if !inflaterReady {
            guard inflateInit_(&inflater, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else { throw RFBError("inflateInit") }
            inflaterReady = true
        }
        var input = input
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        var status: Int32 = Z_OK
        input.withUnsafeMutableBufferPointer { i in
            inflater.next_in = i.baseAddress
            inflater.avail_in = UInt32(i.count)
            repeat {
                chunk.withUnsafeMutableBufferPointer { c in
                    inflater.next_out = c.baseAddress
                    inflater.avail_out = UInt32(c.count)
                    status = CZlib.inflate(&inflater, Z_SYNC_FLUSH)
                    out += c[0..<(c.count - Int(inflater.avail_out))]
                }
            } while status == Z_OK && (inflater.avail_in > 0 || inflater.avail_out == 0)
        }
        guard status == Z_OK || status == Z_BUF_ERROR else { throw RFBError("inflate \(status)") }
        return out
    }

    /// ZRLE with 3-byte CPIXELs (the default format): raw, solid and packed palette tiles.
    private func decodeZRLE(_ d: [UInt8], w: Int, h: Int) throws -> [UInt32] {
        var out = [UInt32](repeating: 0, count: w * h)
        var i = 0
        func cpixel() -> UInt32 { defer { i += 3 }; return UInt32(d[i]) | UInt32(d[i + 1]) << 8 | UInt32(d[i + 2]) << 16 }
        for ty in stride(from: 0, to: h, by: 64) {
            for tx in stride(from: 0, to: w, by: 64) {
                let tw = min(64, w - tx), th = min(64, h - ty)
                let sub = Int(d[i]); i += 1
                switch sub {
                case 0:
                    for y in 0..<th { for x in 0..<tw { out[(ty + y) * w + tx + x] = cpixel() } }
                case 1:
                    let p = cpixel()
                    for y in 0..<th { for x in 0..<tw { out[(ty + y) * w + tx + x] = p } }
                case 2...16:
                    let palette = (0..<sub).map { _ in cpixel() }
                    let bits = sub == 2 ? 1 : sub <= 4 ? 2 : 4
                    for y in 0..<th {
                        var used = 8
                        var byte: UInt8 = 0
                        for x in 0..<tw {
                            if used == 8 { byte = d[i]; i += 1; used = 0 }
                            let index = Int(byte >> UInt8(8 - bits - used)) & ((1 << bits) - 1)
                            used += bits
                            out[(ty + y) * w + tx + x] = palette[index]
                        }
                    }
                default:
                    throw RFBError("ZRLE subencoding \(sub)")
                }
            }
        }
        return out
    }
}
