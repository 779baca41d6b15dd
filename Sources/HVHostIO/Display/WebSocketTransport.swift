import CConsoleCodecs
import HVSupport

/// RFB carried in WebSocket binary messages (RFC 6455), as browsers speak it: client
/// frames must be masked; text frames, oversized frames and fragments of unknown
/// type end the connection; pings are answered.
final class WebSocketTransport: RFBTransport, @unchecked Sendable {
    /// Largest frame payload accepted from a client (RFB messages are small).
    static let maxPayload = 1 << 20

    private let stream: SocketStream
    private var pending: [UInt8]
    private var pendingOffset = 0
    private let writeLock = HostLock()

    /// `buffered`: bytes the HTTP reader already took past the handshake.
    init(_ stream: SocketStream, buffered: [UInt8]) {
        self.stream = stream
        pending = []
        raw = buffered
    }

    // Bytes from the socket not yet parsed into frames.
    private var raw: [UInt8]

    private func rawBytes(_ count: Int) throws(RFBError) -> [UInt8] {
        while raw.count < count { raw += try stream.readSome(max(4096, count - raw.count)) }
        let out = Array(raw[0..<count])
        raw.removeFirst(count)
        return out
    }

    func read(count: Int) throws(RFBError) -> [UInt8] {
        while pending.count - pendingOffset < count { try readFrame() }
        let out = Array(pending[pendingOffset..<(pendingOffset + count)])
        pendingOffset += count
        if pendingOffset > 1 << 16 {
            pending.removeFirst(pendingOffset)
            pendingOffset = 0
        }
        return out
    }

    private func readFrame() throws(RFBError) {
        let h = try rawBytes(2)
        let opcode = h[0] & 0x0F
        guard h[1] & 0x80 != 0 else { throw RFBError("unmasked WebSocket frame from a client") }
        var length = UInt64(h[1] & 0x7F)
        if length == 126 {
            let b = try rawBytes(2)
            length = UInt64(b[0]) << 8 | UInt64(b[1])
        } else if length == 127 {
            length = try rawBytes(8).reduce(0) { $0 << 8 | UInt64($1) }
        }
        guard length <= UInt64(Self.maxPayload) else { throw RFBError("WebSocket frame of \(length) bytes") }
        let mask = try rawBytes(4)
        var payload = try rawBytes(Int(length))
        for i in payload.indices { payload[i] ^= mask[i & 3] }
        switch opcode {
        case 0, 2: pending += payload
        case 8:
            try? send(opcode: 8, payload)
            throw RFBError("WebSocket closed by the client")
        case 9: try send(opcode: 10, payload)
        case 10: break
        default: throw RFBError("WebSocket opcode \(opcode) (only binary frames carry RFB)")
        }
    }

    func write(_ bytes: [UInt8]) throws(RFBError) {
        try send(opcode: 2, bytes)
    }

    private func send(opcode: UInt8, _ payload: [UInt8]) throws(RFBError) {
        var frame: [UInt8] = [0x80 | opcode]
        if payload.count < 126 {
            frame.append(UInt8(payload.count))
        } else if payload.count <= 0xFFFF {
            frame += [126, UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)]
        } else {
            frame.append(127)
            for i in (0..<8).reversed() { frame.append(UInt8(truncatingIfNeeded: UInt64(payload.count) >> (8 * UInt64(i)))) }
        }
        frame += payload
        writeLock.lock()
        defer { writeLock.unlock() }
        try stream.write(frame)
    }

    func shutdown() { stream.shutdown() }

    /// Sec-WebSocket-Accept for a client's Sec-WebSocket-Key.
    static func acceptKey(_ key: String) -> String {
        let input = Array((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").utf8)
        var digest = [UInt8](repeating: 0, count: 20)
        _ = SHA1(input, input.count, &digest)
        return base64(digest)
    }

    static func base64(_ bytes: [UInt8]) -> String {
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
        var out = ""
        for i in stride(from: 0, to: bytes.count, by: 3) {
            let n = bytes.count - i
            let v = UInt32(bytes[i]) << 16 | (n > 1 ? UInt32(bytes[i + 1]) << 8 : 0) | (n > 2 ? UInt32(bytes[i + 2]) : 0)
            out.append(alphabet[Int(v >> 18 & 63)])
            out.append(alphabet[Int(v >> 12 & 63)])
            out.append(n > 1 ? alphabet[Int(v >> 6 & 63)] : "=")
            out.append(n > 2 ? alphabet[Int(v & 63)] : "=")
        }
        return out
    }
}
