import CConsoleCodecs
import Glibc
import HVSupport

/// One RFB client (protocol 3.3, 3.7 or 3.8; security None or VNC authentication).
/// A reader thread does the handshake and then handles the client's messages (input
/// goes to the VM's ``InputRouter``); a sender thread answers update requests with the
/// damage collected since the last update, raw or ZRLE, plus the Cursor and
/// DesktopSize pseudo-encodings when the client asks for them. Nothing the client does
/// reaches the VM except input events: a slow or hostile client only loses its own
/// connection.
final class RFBConnection: DamageSubscriber, @unchecked Sendable {
    /// Longest ClientCutText accepted (the text is read and dropped).
    static let maxCutText = 1 << 20
    static let maxEncodings = 256
    /// How often the sender looks for new damage while a request is pending.
    static let pollNanoseconds: UInt64 = 10_000_000
    /// The size a blank screen is shown at.
    static let blankSize = (width: 640, height: 480)

    private let transport: any RFBTransport
    private let console: RemoteConsole
    private let state = HostLock()
    // [state]
    private var closed = false
    private var requested: DisplayRect?
    private var fullRequested = false
    private var damage: [DisplayRect] = []
    /// A copy the client has not been sent yet (sent before `damage`).
    private var pendingCopy: (source: DisplayRect, toX: Int, toY: Int)?
    private var format = RFBPixelFormat.server
    private var encodings: Set<Int32> = []
    // The sender thread's own.
    private let encoder = RFBEncoder()
    private var size = RFBConnection.blankSize
    private var sentCursorSerial: UInt64?
    private var sentCursorVisible = false
    // The reader thread's own.
    private var buttons: UInt8 = 0
    private var onClose: (RFBConnection) -> Void = { _ in }

    init(transport: any RFBTransport, console: RemoteConsole) {
        self.transport = transport
        self.console = console
    }

    func start(onClose: @escaping (RFBConnection) -> Void) {
        self.onClose = onClose
        _ = RFBConnection.spawnDetached(name: "rfb-reader") { [self] in
            do {
                try handshake()
                console.feed.subscribe(self)
                _ = RFBConnection.spawnDetached(name: "rfb-sender") { [self] in
                    do { try sendLoop() } catch {}
                    close()
                }
                try readLoop()
            } catch {}
            close()
            console.feed.unsubscribe(self)
            onClose(self)
        }
    }

    func close() {
        state.withLock {
            closed = true
            state.broadcast()
        }
        transport.shutdown()
    }

    func changed(_ changes: [DisplayChange]) {
        state.withLock {
            for change in changes {
                switch change {
                case .damage(let r):
                    addDamage(r)
                case .copy(let source, let x, let y):
                    // One copy per update; a client without CopyRect, a second copy or a
                    // full update gets the destination's pixels instead.
                    guard encodings.contains(RFBEncoding.copyRect), pendingCopy == nil, !fullRequested else {
                        addDamage(change.destination)
                        continue
                    }
                    // Damage not yet sent inside the source would be copied stale: it
                    // is sent again where the copy puts it.
                    let dx = x - source.x, dy = y - source.y
                    for r in damage {
                        guard let i = r.intersection(source) else { continue }
                        addDamage(DisplayRect(x: i.x + dx, y: i.y + dy, width: i.width, height: i.height))
                    }
                    pendingCopy = (source, x, y)
                }
            }
            state.broadcast()
        }
    }

    /// [state]
    private func addDamage(_ r: DisplayRect) {
        if damage.contains(where: { $0.contains(r) }) { return }
        damage.append(r)
        if damage.count > DisplaySurface.damageLimit {
            damage = [damage.dropFirst().reduce(damage[0]) { $0.union($1) }]
        }
    }

    // MARK: Handshake

    private func handshake() throws(RFBError) {
        try transport.write(Array("RFB 003.008\n".utf8))
        let version = try transport.read(count: 12)
        guard version.count == 12, Array(version[0..<4]) == Array("RFB ".utf8), version[11] == 0x0A,
              let minor = Int(String(decoding: version[8..<11], as: UTF8.self)),
              String(decoding: version[4..<7], as: UTF8.self) == "003" else {
            throw RFBError("not an RFB client")
        }
        let protocolMinor = minor >= 8 ? 8 : minor == 7 ? 7 : 3
        let securityType: UInt8 = console.password == nil ? 1 : 2
        if protocolMinor >= 7 {
            try transport.write([1, securityType])
            guard try transport.read(count: 1)[0] == securityType else { throw RFBError("client chose another security type") }
        } else {
            try transport.write(Self.u32(UInt32(securityType)))
        }
        if let password = console.password {
            var challenge = [UInt8](repeating: 0, count: 16)
            guard RAND_bytes(&challenge, 16) == 1 else { throw RFBError("no random bytes for the challenge") }
            try transport.write(challenge)
            let response = try transport.read(count: 16)
            guard response == Self.vncAuthResponse(challenge: challenge, password: password) else {
                try transport.write(Self.u32(1))
                if protocolMinor >= 8 { try transport.write(Self.string("authentication failed")) }
                throw RFBError("wrong password")
            }
            try transport.write(Self.u32(0))
        } else if protocolMinor >= 8 {
            try transport.write(Self.u32(0))
        }
        _ = try transport.read(count: 1)                        // ClientInit: shared flag
        if let mode = console.display.mode { size = (mode.width, mode.height) }
        var serverInit = Self.u16(size.width) + Self.u16(size.height) + RFBPixelFormat.server.bytes
        serverInit += Self.string(console.name)
        try transport.write(serverInit)
    }

    /// The DES encryption of the challenge VNC authentication expects: the password's
    /// first 8 bytes (zero padded), each bit-reversed, are the key.
    static func vncAuthResponse(challenge: [UInt8], password: String) -> [UInt8] {
        let bytes = Array(password.utf8.prefix(8)) + [UInt8](repeating: 0, count: 8)
        let key = (0..<8).map { i -> UInt8 in
            var b = bytes[i], r: UInt8 = 0
            for _ in 0..<8 { r = r << 1 | b & 1; b >>= 1 }
            return r
        }
        var out = [UInt8](repeating: 0, count: 16)
        console_vnc_des(key, challenge, &out)
        return out
    }

    // MARK: Client messages

    private func readLoop() throws(RFBError) {
        while true {
            let type = try transport.read(count: 1)[0]
            switch type {
            case 0:                                             // SetPixelFormat
                let b = try transport.read(count: 19)
                let f = try RFBPixelFormat(bytes: Array(b[3..<19]))
                state.withLock { format = f; fullRequested = true }
            case 2:                                             // SetEncodings
                let b = try transport.read(count: 3)
                let count = Int(b[1]) << 8 | Int(b[2])
                guard count <= Self.maxEncodings else { throw RFBError("\(count) encodings") }
                let list = try transport.read(count: 4 * count)
                let set = Set((0..<count).map { Int32(bitPattern: Self.u32(list, 4 * $0)) })
                state.withLock { encodings = set }
            case 3:                                             // FramebufferUpdateRequest
                let b = try transport.read(count: 9)
                let r = DisplayRect(x: Int(Self.u16(b, 1)), y: Int(Self.u16(b, 3)),
                                    width: Int(Self.u16(b, 5)), height: Int(Self.u16(b, 7)))
                state.withLock {
                    requested = requested.map { $0.union(r) } ?? r
                    if b[0] == 0 { fullRequested = true }
                    state.broadcast()
                }
            case 4:                                             // KeyEvent
                let b = try transport.read(count: 7)
                if let code = RFBKeysym.scancode(Self.u32(b, 3)) {
                    // Pause has no release: the router refuses that one.
                    _ = try? console.input.sendKey(scancode: code, pressed: b[0] != 0)
                }
            case 5:                                             // PointerEvent
                let b = try transport.read(count: 5)
                pointer(mask: b[0], x: Int(Self.u16(b, 1)), y: Int(Self.u16(b, 3)))
            case 6:                                             // ClientCutText
                let b = try transport.read(count: 7)
                let length = Self.u32(b, 3)
                guard length <= UInt32(Self.maxCutText) else { throw RFBError("cut text of \(length) bytes") }
                _ = try transport.read(count: Int(length))
            default:
                throw RFBError("unknown client message type \(type)")
            }
        }
    }

    private func pointer(mask: UInt8, x: Int, y: Int) {
        let (w, h) = state.withLock { (size.width, size.height) }
        var held: PointerButtons = []
        if mask & 0x01 != 0 { held.insert(.left) }
        if mask & 0x02 != 0 { held.insert(.middle) }
        if mask & 0x04 != 0 { held.insert(.right) }
        let pressed = mask & ~buttons
        buttons = mask
        var wheel: Int32 = 0
        if pressed & 0x08 != 0 { wheel += 1 }
        if pressed & 0x10 != 0 { wheel -= 1 }
        let ax = Int32(min(x, w - 1) * 0xFFFF / max(1, w - 1))
        let ay = Int32(min(y, h - 1) * 0xFFFF / max(1, h - 1))
        if let event = try? PointerEvent(kind: .absolute, x: ax, y: ay, wheel: wheel, buttons: held) {
            console.input.sendPointer(event)
        }
    }

    // MARK: Updates

    private struct Work {
        /// Sent first, as CopyRect: the source and the destination's top-left.
        var copy: (source: DisplayRect, toX: Int, toY: Int)?
        var rects: [DisplayRect]
        var format: RFBPixelFormat
        var encodings: Set<Int32>
    }

    private func sendLoop() throws(RFBError) {
        while let work = nextWork() {
            try sendUpdate(work)
        }
    }

    /// Waits for a pending request that has something to send; nil once closed.
    private func nextWork() -> Work? {
        while true {
            console.feed.collect()
            let mode = console.display.mode
            let cursor = console.display.cursor
            let work: Work?? = state.withLock {
                if closed { return .some(nil) }
                guard requested != nil else {
                    state.wait(until: RFBConnection.now() + Self.pollNanoseconds)
                    return nil
                }
                let newSize = mode.map { ($0.width, $0.height) } ?? Self.blankSize
                let resized = (newSize.0, newSize.1) != (size.width, size.height) && encodings.contains(RFBEncoding.desktopSize)
                let cursorChanged = encodings.contains(RFBEncoding.cursor)
                    && (cursor.imageSerial != sentCursorSerial || cursor.visible != sentCursorVisible)
                if resized {
                    size = (newSize.0, newSize.1)
                    fullRequested = true
                }
                let screen = DisplayRect(x: 0, y: 0, width: size.width, height: size.height)
                var rects: [DisplayRect]
                var copy = fullRequested ? nil : pendingCopy
                if let c = copy {
                    // The client's screen may be smaller than the mode (no DesktopSize).
                    let destination = DisplayRect(x: c.toX, y: c.toY, width: c.source.width, height: c.source.height)
                    if !screen.contains(c.source) || !screen.contains(destination) {
                        damage.append(destination)
                        copy = nil
                    }
                }
                if fullRequested {
                    rects = [screen]
                } else {
                    rects = damage.compactMap { $0.intersection(screen) }
                }
                guard !rects.isEmpty || copy != nil || cursorChanged || resized else {
                    state.wait(until: RFBConnection.now() + Self.pollNanoseconds)
                    return nil
                }
                if resized { rects.insert(DisplayRect(x: 0, y: 0, width: -1, height: -1), at: 0) }
                damage.removeAll()
                pendingCopy = nil
                fullRequested = false
                requested = nil
                return .some(Work(copy: copy, rects: rects, format: format, encodings: encodings))
            }
            if let work { return work }
        }
    }

    private func sendUpdate(_ work: Work) throws(RFBError) {
        encoder.format = work.format
        let frame = console.display.snapshot()
        var body: [UInt8] = []
        var count = 0
        if let c = work.copy {
            body += Self.rectHeader(x: c.toX, y: c.toY, width: c.source.width, height: c.source.height,
                                    encoding: RFBEncoding.copyRect) + Self.u16(c.source.x) + Self.u16(c.source.y)
            count += 1
        }
        for r in work.rects {
            if r.width < 0 {                                        // DesktopSize
                body += Self.rectHeader(x: 0, y: 0, width: size.width, height: size.height, encoding: RFBEncoding.desktopSize)
                count += 1
                continue
            }
            let pixels: [UInt32]
            if let frame, frame.mode.width >= r.x + r.width, frame.mode.height >= r.y + r.height {
                pixels = frame.xrgb(r)
            } else {
                pixels = [UInt32](repeating: 0, count: r.width * r.height)
            }
            if work.encodings.contains(RFBEncoding.zrle) {
                body += Self.rectHeader(x: r.x, y: r.y, width: r.width, height: r.height, encoding: RFBEncoding.zrle)
                try encoder.zrle(pixels, width: r.width, height: r.height, into: &body)
            } else {
                body += Self.rectHeader(x: r.x, y: r.y, width: r.width, height: r.height, encoding: RFBEncoding.raw)
                encoder.raw(pixels, into: &body)
            }
            count += 1
        }
        if work.encodings.contains(RFBEncoding.cursor) {
            let cursor = console.display.cursor
            if cursor.imageSerial != sentCursorSerial || cursor.visible != sentCursorVisible {
                body += cursorRect(cursor, format: work.format)
                count += 1
                sentCursorSerial = cursor.imageSerial
                sentCursorVisible = cursor.visible
            }
        }
        try transport.write([0, 0] + Self.u16(count) + body)
    }

    /// The Cursor pseudo-rectangle: pixels, then a 1-bit mask (alpha ≥ 128); an empty
    /// one hides the pointer.
    private func cursorRect(_ cursor: DisplayCursor, format: RFBPixelFormat) -> [UInt8] {
        guard cursor.visible, cursor.width > 0, cursor.pixels.count == cursor.width * cursor.height else {
            return Self.rectHeader(x: 0, y: 0, width: 0, height: 0, encoding: RFBEncoding.cursor)
        }
        var out = Self.rectHeader(x: cursor.hotX, y: cursor.hotY, width: cursor.width, height: cursor.height,
                                  encoding: RFBEncoding.cursor)
        for p in cursor.pixels { format.append(p & 0xFF_FFFF, to: &out) }
        let rowBytes = (cursor.width + 7) / 8
        for y in 0..<cursor.height {
            var row = [UInt8](repeating: 0, count: rowBytes)
            for x in 0..<cursor.width where cursor.pixels[y * cursor.width + x] >> 24 >= 128 {
                row[x / 8] |= 0x80 >> UInt8(x % 8)
            }
            out += row
        }
        return out
    }

    // MARK: Helpers

    static func spawnDetached(name: String, _ body: @escaping () -> Void) {
        pthread_detach(HostThread.spawn(name: name, body))
    }

    /// Host monotonic time in nanoseconds (the clock HostLock's timed waits use).
    static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    static func u16(_ v: Int) -> [UInt8] { [UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }
    static func u32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }
    static func u16(_ b: [UInt8], _ i: Int) -> UInt16 { UInt16(b[i]) << 8 | UInt16(b[i + 1]) }
    static func u32(_ b: [UInt8], _ i: Int) -> UInt32 {
        UInt32(b[i]) << 24 | UInt32(b[i + 1]) << 16 | UInt32(b[i + 2]) << 8 | UInt32(b[i + 3])
    }
    static func string(_ s: String) -> [UInt8] { u32(UInt32(s.utf8.count)) + Array(s.utf8) }
    static func rectHeader(x: Int, y: Int, width: Int, height: Int, encoding: Int32) -> [UInt8] {
        u16(x) + u16(y) + u16(width) + u16(height) + u32(UInt32(bitPattern: encoding))
    }
}

extension DisplayRect {
    /// The part inside `other`; nil when they do not overlap.
    func intersection(_ other: DisplayRect) -> DisplayRect? {
        let x0 = max(x, other.x), y0 = max(y, other.y)
        let x1 = min(x + width, other.x + other.width), y1 = min(y + height, other.y + other.height)
        guard x1 > x0, y1 > y0 else { return nil }
        return DisplayRect(x: x0, y: y0, width: x1 - x0, height: y1 - y0)
    }
}
