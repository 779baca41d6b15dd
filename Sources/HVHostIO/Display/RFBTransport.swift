import Glibc
import HVSupport

/// The byte stream under one RFB client: a TCP socket or a WebSocket. `read` and
/// `write` are called from one thread each; `shutdown` from any, and makes both fail.
protocol RFBTransport: AnyObject, Sendable {
    /// Exactly `count` bytes; throws at end of stream or on an error.
    func read(count: Int) throws(RFBError) -> [UInt8]
    func write(_ bytes: [UInt8]) throws(RFBError)
    func shutdown()
}

/// A connected stream socket. Sends time out (`sendTimeout`), so a client that stops
/// reading is dropped instead of holding its console thread forever.
final class SocketStream: @unchecked Sendable {
    static let sendTimeoutSeconds = 10
    let fd: Int32
    private let closed = HostLocked(false)

    init(fd: Int32) {
        self.fd = fd
        var tv = timeval(tv_sec: Self.sendTimeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    deinit { Glibc.close(fd) }

    /// Up to `count` bytes (at least one); throws at end of stream.
    func readSome(_ count: Int) throws(RFBError) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: count)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, count, 0) }
            if n > 0 { return Array(buffer[0..<n]) }
            if n < 0, errno == EINTR { continue }
            throw RFBError(n == 0 ? "connection closed" : "receive failed: \(String(cString: strerror(errno)))")
        }
    }

    func readExactly(_ count: Int) throws(RFBError) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(count)
        while out.count < count { out += try readSome(min(count - out.count, 1 << 16)) }
        return out
    }

    func write(_ bytes: [UInt8]) throws(RFBError) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL)) }
            if n > 0 { offset += n; continue }
            if n < 0, errno == EINTR { continue }
            throw RFBError(errno == EAGAIN ? "client stopped reading (send timed out)" : "send failed: \(String(cString: strerror(errno)))")
        }
    }

    func shutdown() {
        guard closed.withLock({ c in defer { c = true }; return !c }) else { return }
        _ = Glibc.shutdown(fd, Int32(SHUT_RDWR))
    }
}

/// RFB straight over TCP.
final class TCPTransport: RFBTransport, @unchecked Sendable {
    let stream: SocketStream
    init(_ stream: SocketStream) { self.stream = stream }
    func read(count: Int) throws(RFBError) -> [UInt8] { try stream.readExactly(count) }
    func write(_ bytes: [UInt8]) throws(RFBError) { try stream.write(bytes) }
    func shutdown() { stream.shutdown() }
}
