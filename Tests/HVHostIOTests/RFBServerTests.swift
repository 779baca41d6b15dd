import Glibc
import HVSupport
import XCTest
@testable import HVHostIO

/// The VNC server against a Swift RFB client: handshakes, encodings, damage, input,
/// and clients that misbehave.
final class RFBServerTests: XCTestCase {
    func testRawFullUpdateShowsTheScreen() throws {
        let f = try ConsoleFixture()
        defer { f.server.stop() }
        let c = try TestRFBClient(port: f.server.port)
        try c.handshake()
        XCTAssertEqual([c.width, c.height], [200, 120])
        XCTAssertEqual(c.name, "fixture")
        c.setEncodings([0])
        c.request(incremental: false)
        let rects = try c.update()
        XCTAssertEqual(rects.count, 1)
        XCTAssertEqual(rects[0].pixels, f.framebuffer.all)
    }

    func testZRLEDecodesToTheSameScreen() throws {
        let f = try ConsoleFixture(width: 300, height: 130)
        defer { f.server.stop() }
        let c = try TestRFBClient(port: f.server.port)
        try c.handshake()
        c.setEncodings([16, 0])
        c.request(incremental: false)
        let rects = try c.update()
        XCTAssertEqual(rects.map(\.encoding), [16])
        XCTAssertEqual(rects[0].pixels, f.framebuffer.all)
        // A second update on the same zlib stream.
        f.framebuffer.fill(DisplayRect(x: 10, y: 10, width: 100, height: 50), 0x00FF00)
        f.surface.update(x: 10, y: 10, width: 100, height: 50)
        c.request(incremental: true)
        let second = try c.update()
        XCTAssertEqual(second.count, 1)
        XCTAssertEqual([second[0].x, second[0].y, second[0].w, second[0].h], [10, 10, 100, 50])
        XCTAssertEqual(Set(second[0].pixels), [0x00FF00])
    }

    func testIncrementalUpdatesCarryOnlyTheDamage() throws {
        let f = try ConsoleFixture()
        defer { f.server.stop() }
        let c = try TestRFBClient(port: f.server.port)
        try c.handshake()
        c.setEncodings([0])
        c.request(incremental: false)
        _ = try c.update()
        c.request(incremental: true)
        f.framebuffer.fill(DisplayRect(x: 5, y: 6, width: 7, height: 8), 0xFF0000)
        f.surface.update(x: 5, y: 6, width: 7, height: 8)
        let rects = try c.update()
        XCTAssertEqual(rects.map { [$0.x, $0.y, $0.w, $0.h] }, [[5, 6, 7, 8]])
        XCTAssertEqual(Set(rects[0].pixels), [0xFF0000])
    }

    /// A blit reaches a client that declared CopyRect as a copy, sent first; damage the
    /// client had not been sent inside the copy's source is sent again where the copy
    /// put it, so the client's screen ends equal to the server's. A client without
    /// CopyRect gets the destination's pixels.
    func testCopyRectMovesWhatTheClientHasAndResendsDamageInItsSource() throws {
        let f = try ConsoleFixture()
        defer { f.server.stop() }
        let c = try TestRFBClient(port: f.server.port), plain = try TestRFBClient(port: f.server.port)
        try c.handshake()
        try plain.handshake()
        c.setEncodings([1, 0])
        plain.setEncodings([0])
        c.request(incremental: false)
        var screen = try c.update()[0].pixels
        plain.request(incremental: false)
        _ = try plain.update()

        f.framebuffer.fill(DisplayRect(x: 10, y: 10, width: 20, height: 20), 0xFF0000)
        f.surface.update(x: 10, y: 10, width: 20, height: 20)
        let source = DisplayRect(x: 0, y: 0, width: 60, height: 40)
        f.framebuffer.copyRect(source, toX: 100, toY: 60)
        XCTAssertTrue(f.surface.copy(srcX: 0, srcY: 0, dstX: 100, dstY: 60, width: 60, height: 40))
        XCTAssertFalse(f.surface.copy(srcX: 0, srcY: 0, dstX: 190, dstY: 60, width: 60, height: 40), "outside the mode")
        c.request(incremental: true)
        let rects = try c.update()
        XCTAssertEqual(rects.first.map { [$0.encoding, Int32($0.x), Int32($0.y), Int32($0.w), Int32($0.h), Int32($0.sourceX), Int32($0.sourceY)] },
                       [1, 100, 60, 60, 40, 0, 0])
        XCTAssertEqual(Set(rects.dropFirst().map { [$0.x, $0.y, $0.w, $0.h] }), [[10, 10, 20, 20], [110, 70, 20, 20]])
        TestRFBClient.apply(rects, to: &screen, width: 200)
        XCTAssertEqual(screen, f.framebuffer.all)

        plain.request(incremental: true)
        let plainRects = try plain.update()
        XCTAssertFalse(plainRects.contains { $0.encoding == 1 })
        XCTAssertTrue(plainRects.contains { [$0.x, $0.y, $0.w, $0.h] == [100, 60, 60, 40] }, "\(plainRects.map { [$0.x, $0.y, $0.w, $0.h] })")
    }

    func testTwoClientsBothSeeTheDamage() throws {
        let f = try ConsoleFixture()
        defer { f.server.stop() }
        let a = try TestRFBClient(port: f.server.port), b = try TestRFBClient(port: f.server.port)
        for c in [a, b] {
            try c.handshake(); c.setEncodings([0]); c.request(incremental: false); _ = try c.update()
            c.request(incremental: true)
        }
        f.framebuffer.fill(DisplayRect(x: 0, y: 0, width: 4, height: 4), 0x0000FF)
        f.surface.update(x: 0, y: 0, width: 4, height: 4)
        for c in [a, b] { XCTAssertEqual(try c.update().map { [$0.x, $0.y, $0.w, $0.h] }, [[0, 0, 4, 4]]) }
    }

    func testDesktopSizeOnModeChange() throws {
        let f = try ConsoleFixture()
        defer { f.server.stop() }
        let c = try TestRFBClient(port: f.server.port)
        try c.handshake()
        c.setEncodings([0, -223])
        c.request(incremental: false); _ = try c.update()
        let bigger = TestFramebuffer(width: 320, height: 200)
        f.surface.setMode(try DisplayMode(width: 320, height: 200, pitch: 1280, format: .xrgb8888), framebuffer: bigger)
        c.request(incremental: true)
        let rects = try c.update()
        XCTAssertEqual(rects.first?.encoding, -223)
        XCTAssertEqual([c.width, c.height], [320, 200])
        XCTAssertEqual(rects.last.map { [$0.w, $0.h] }, [320, 200])
    }

    func testKeysAndPointerReachTheInputPath() throws {
        let f = try ConsoleFixture()
        defer { f.server.stop() }
        let c = try TestRFBClient(port: f.server.port)
        try c.handshake()
        c.send([4, 1, 0, 0, 0, 0, 0, 0x61])                     // 'a' down
        c.send([4, 0, 0, 0, 0, 0, 0xFF, 0x52])                  // Up released
        c.send([5, 0x01, 0, 199, 0, 0])                          // left at (199, 0)
        c.send([5, 0x00, 0, 0, 0, 119])                          // released at (0, 119)
        XCTAssertTrue(f.input.wait { $0.keys.count == 2 && $0.pointers.count == 2 })
        XCTAssertEqual(f.input.keys.map { "\($0.0):\($0.1)" }, ["30:true", "57416:false"])
        XCTAssertEqual(f.input.pointers.map { [Int($0.x), Int($0.y), Int($0.buttons.rawValue)] },
                       [[0xFFFF, 0, 1], [0, 0xFFFF, 0]])
    }

    func testVNCAuthentication() throws {
        let f = try ConsoleFixture(password: "secret")
        defer { f.server.stop() }
        let good = try TestRFBClient(port: f.server.port)
        try good.handshake(password: "secret")
        XCTAssertEqual(good.width, 200)
        let bad = try TestRFBClient(port: f.server.port)
        XCTAssertThrowsError(try bad.handshake(password: "wrong"))
        // An RFB 3.3 client gets the type as a word and a result only for VNC auth.
        let old = try TestRFBClient(port: f.server.port)
        try old.handshake(minor: 3, password: "secret")
        XCTAssertEqual(old.height, 120)
    }

    func testVNCAuthResponseIsECBUnderTheFirstEightPasswordBytes() {
        // (Net::VNC, an independent DES, checks the response itself in RFBRealClientTests.)
        let response = RFBConnection.vncAuthResponse(challenge: [UInt8](repeating: 0, count: 16), password: "password")
        XCTAssertEqual(response.count, 16)
        XCTAssertEqual(Array(response[0..<8]), Array(response[8..<16]), "ECB: equal blocks encrypt alike")
        XCTAssertNotEqual(response, RFBConnection.vncAuthResponse(challenge: [UInt8](repeating: 0, count: 16), password: "passwore"))
        XCTAssertEqual(RFBConnection.vncAuthResponse(challenge: [UInt8](repeating: 0, count: 16), password: "password12345"),
                       response, "only 8 bytes count")
    }

    func testHostileClientsAreDroppedAndOthersServed() throws {
        let f = try ConsoleFixture()
        defer { f.server.stop() }
        // Not RFB.
        let junk = try TestRFBClient(port: f.server.port)
        _ = try junk.read(12)
        junk.send(Array("GET / HTTP/1.1\r\n".utf8))
        XCTAssertTrue(junk.closedByServer())
        // Too many encodings, a huge cut text, an unknown message, a bad pixel format.
        let messages: [[UInt8]] = [
            [2, 0, 0xFF, 0xFF],
            [6, 0, 0, 0, 0x7F, 0xFF, 0xFF, 0xFF],
            [0x42],
            [0, 0, 0, 0, 24, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0],
            [0, 0, 0, 0, 32, 24, 0, 1, 0xFF, 0xFF, 0, 255, 0, 255, 30, 8, 0, 0, 0, 0],
        ]
        for m in messages {
            let c = try TestRFBClient(port: f.server.port)
            try c.handshake()
            c.send(m)
            XCTAssertTrue(c.closedByServer(), "\(m.prefix(4)) ends the connection")
        }
        // A client that requests updates and never reads them: the others go on.
        let stuck = try TestRFBClient(port: f.server.port)
        try stuck.handshake()
        stuck.setEncodings([0])
        for _ in 0..<200 { stuck.request(incremental: false) }
        let healthy = try TestRFBClient(port: f.server.port)
        try healthy.handshake()
        healthy.setEncodings([0])
        healthy.request(incremental: false)
        XCTAssertEqual(try healthy.update().first?.pixels, f.framebuffer.all)
        f.framebuffer.fill(DisplayRect(x: 1, y: 1, width: 2, height: 2), 0xABCDEF)
        f.surface.update(x: 1, y: 1, width: 2, height: 2)
        healthy.request(incremental: true)
        XCTAssertEqual(try healthy.update().map { [$0.x, $0.y, $0.w, $0.h] }, [[1, 1, 2, 2]])
    }

    func testConnectionLimit() throws {
        let f = try ConsoleFixture()
        defer { f.server.stop() }
        var clients: [TestRFBClient] = []
        for _ in 0..<RemoteConsole.maxConnections {
            let c = try TestRFBClient(port: f.server.port)
            try c.handshake()
            clients.append(c)
        }
        let extra = try TestRFBClient(port: f.server.port)
        XCTAssertTrue(extra.closedByServer())
        XCTAssertEqual(f.console.connectionCount, RemoteConsole.maxConnections)
    }

    func testWebConsoleServesPageAndRFBOverWebSocket() throws {
        let f = try ConsoleFixture()
        defer { f.server.stop() }
        let web = try WebConsoleServer(address: "127.0.0.1", port: 0, consoles: { [f.console] })
        defer { web.stop() }
        XCTAssertEqual(web.url(for: "fixture"), "http://127.0.0.1:\(web.port)/console?vm=fixture")
        let page = try TestRFBClient(port: web.port)
        page.send(Array("GET /console?vm=fixture HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
        var text = ""
        while !text.contains("</html>") { text += String(decoding: try page.read(1), as: UTF8.self) }
        XCTAssertTrue(text.hasPrefix("HTTP/1.1 200"))
        XCTAssertTrue(text.contains("/rfb.js"))
        let missing = try TestRFBClient(port: web.port)
        missing.send(Array("GET /console?vm=nope HTTP/1.1\r\n\r\n".utf8))
        XCTAssertTrue(String(decoding: try missing.read(12), as: UTF8.self).hasPrefix("HTTP/1.1 404"))

        let ws = try TestRFBClient(port: web.port)
        ws.send(Array(("GET /websocket?vm=fixture HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").utf8))
        var reply = ""
        while !reply.hasSuffix("\r\n\r\n") { reply += String(decoding: try ws.read(1), as: UTF8.self) }
        XCTAssertTrue(reply.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), reply)
        func frame() throws -> [UInt8] {
            let h = try ws.read(2)
            var n = Int(h[1] & 0x7F)
            if n == 126 { let b = try ws.read(2); n = Int(b[0]) << 8 | Int(b[1]) }
            if n == 127 { n = try ws.read(8).reduce(0) { $0 << 8 | Int($1) } }
            return try ws.read(n)
        }
        func sendMasked(_ payload: [UInt8]) {
            let mask: [UInt8] = [1, 2, 3, 4]
            ws.send([0x82, 0x80 | UInt8(payload.count)] + mask + payload.enumerated().map { $0.element ^ mask[$0.offset & 3] })
        }
        XCTAssertEqual(String(decoding: try frame(), as: UTF8.self), "RFB 003.008\n")
        sendMasked(Array("RFB 003.008\n".utf8))
        XCTAssertEqual(try frame(), [1, 1])
        sendMasked([1])
        XCTAssertEqual(try frame(), [0, 0, 0, 0])
        sendMasked([1])
        let serverInit = try frame()
        XCTAssertEqual(Array(serverInit[0..<4]), [0, 200, 0, 120])
        sendMasked([2, 0, 0, 1, 0, 0, 0, 0])
        sendMasked([3, 0, 0, 0, 0, 0, 0, 200, 0, 120])
        var update: [UInt8] = []
        while update.count < 4 + 12 + 200 * 120 * 4 { update += try frame() }
        let pixels = (0..<(200 * 120)).map { i -> UInt32 in
            let o = 16 + 4 * i
            return UInt32(update[o]) | UInt32(update[o + 1]) << 8 | UInt32(update[o + 2]) << 16
        }
        XCTAssertEqual(pixels, f.framebuffer.all)
        // An unmasked frame is a protocol error.
        ws.send([0x82, 0x01, 0x04])
        XCTAssertTrue(ws.closedByServer())
    }
}
