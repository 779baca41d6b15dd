import Glibc
import HVHostIO
import HVSupport

/// One migration connection. The wire format reuses the suspend file's container
/// (`SuspendFile`): the same section header and the same CRC-32, so the sections a
/// migration carries are the ones a suspend file holds:
///
///     header    "HVMIGRAT" (8 bytes), u32 protocol version (1), u32 flags (0)
///     section*  u32 name length, name (UTF-8), u32 section version, u64 payload length, payload
///
/// Source to destination: "config" and "manifest" (`MigrationManifest`), then "pages"
/// sections (`MigrationPages`) while the VM runs, then once it is paused the last
/// "pages", "machine", "vcpu.<n>", "chipset", "pci", "device:<prefix>" (suspend
/// formats, `SuspendSections`) and "end" (u32 CRC-32 of every byte the source sent
/// before this section). The destination answers with "verdict" sections (u8 1 accepted
/// / 0 refused, string message): after the manifest (before the source pauses) and
/// after "end" (its VM is built and ready); the source then sends "go" and stops its VM.
final class MigrationStream {
    static let magic = Array("HVMIGRAT".utf8)
    static let protocolVersion: UInt32 = 1
    /// The largest section either side accepts (a "pages" section is far smaller).
    static let sectionLimit = 64 << 20

    let fd: Int32
    let peer: String
    private var sent = CRC32()
    private var received = CRC32()
    private var outgoing: [UInt8] = []
    private(set) var bytesSent: UInt64 = 0
    /// Bytes per second the sender keeps to; nil for unlimited.
    var bandwidthLimit: Double?
    private var limitStart: UInt64 = 0
    private var limitBytes: UInt64 = 0

    init(fd: Int32, peer: String, timeoutSeconds: Int = 30) {
        self.fd = fd
        self.peer = peer
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        outgoing.reserveCapacity(1 << 20)
    }

    deinit { close(fd) }

    /// Connects to `address`.
    static func connect(to address: MigrationAddress) throws -> MigrationStream {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw MigrationError("socket: \(String(cString: strerror(errno)))") }
        var sa = address.socketAddress
        let rc = withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            let e = errno
            close(fd)
            throw MigrationError("cannot connect to \(address): \(String(cString: strerror(e))) (is `hvhost run --incoming \(address)` running there?)")
        }
        return MigrationStream(fd: fd, peer: address.description)
    }

    /// Breaks the connection from another thread (cancel): blocked reads and writes fail.
    func abort() { shutdown(fd, Int32(SHUT_RDWR)) }

    // MARK: sending

    func sendHeader() throws {
        var e = StateEncoder()
        e.u32(Self.protocolVersion)
        e.u32(0)
        try append(Self.magic)
        try append(e.bytes)
    }

    func send(_ name: String, version: UInt32 = 1, _ payload: [UInt8]) throws {
        var e = StateEncoder()
        e.string(name)
        e.u32(version)
        e.u64(UInt64(payload.count))
        try append(e.bytes)
        try append(payload)
    }

    /// Sends "end" with the checksum of everything before it, and flushes.
    func sendEnd() throws {
        var e = StateEncoder()
        e.u32(sent.value)
        try send("end", e.bytes)
        try flush()
    }

    private func append(_ bytes: [UInt8]) throws {
        bytes.withUnsafeBytes { sent.update($0) }
        outgoing.append(contentsOf: bytes)
        if outgoing.count >= 256 << 10 { try flush() }
    }

    func flush() throws {
        guard !outgoing.isEmpty else { return }
        try outgoing.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = Glibc.send(fd, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL))
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { throw MigrationError("the connection to \(peer) broke while sending: \(String(cString: strerror(errno)))") }
                offset += n
            }
        }
        bytesSent += UInt64(outgoing.count)
        throttle(outgoing.count)
        outgoing.removeAll(keepingCapacity: true)
    }

    /// Sleeps as long as the bytes sent so far are ahead of `bandwidthLimit`.
    private func throttle(_ count: Int) {
        guard let limit = bandwidthLimit, limit > 0 else { return }
        let now = monotonicNanoseconds()
        if limitStart == 0 || now - limitStart > 1_000_000_000 {
            limitStart = now
            limitBytes = 0
        }
        limitBytes += UInt64(count)
        let due = limitStart + UInt64(Double(limitBytes) / limit * 1e9)
        if due > now { usleep(UInt32(min(1_000_000, (due - now) / 1000))) }
    }

    // MARK: receiving

    func receiveHeader() throws {
        let h = try read(16)
        guard Array(h[0..<8]) == Self.magic else { throw MigrationError("\(peer) is not an hvhost migration source (no HVMIGRAT header)") }
        var d = StateDecoder(Array(h[8...]), context: peer)
        let version = try d.u32()
        guard version == Self.protocolVersion else {
            throw MigrationError("\(peer) speaks migration protocol version \(version); this hvhost speaks version \(Self.protocolVersion)")
        }
    }

    /// The next section. For "end", its checksum is checked against what arrived.
    func receive() throws -> (name: String, version: UInt32, payload: [UInt8]) {
        let before = received.value
        let prefix = try read(4)
        var n = StateDecoder(prefix, context: peer)
        let nameLength = Int(try n.u32())
        guard nameLength <= 64 else { throw MigrationError("\(peer) sent a section name of \(nameLength) bytes") }
        var d = StateDecoder(prefix + (try read(nameLength + 12)), context: peer)
        let name = try d.string(limit: 64)
        let version = try d.u32(), length = try d.u64()
        guard length <= UInt64(Self.sectionLimit) else { throw MigrationError("\(peer) sent section '\(name)' of \(length) bytes") }
        let payload = try read(Int(length))
        if name == "end" {
            var c = StateDecoder(payload, context: "\(peer): section 'end'")
            let stored = try c.u32()
            guard stored == before else {
                throw MigrationError("checksum mismatch on the stream from \(peer) (sent 0x\(String(stored, radix: 16)), received 0x\(String(before, radix: 16)))")
            }
        }
        return (name, version, payload)
    }

    /// The next section, which must be `name`.
    func receive(_ name: String, maxVersion: UInt32 = 1) throws -> (version: UInt32, payload: [UInt8]) {
        let s = try receive()
        guard s.name == name else { throw MigrationError("\(peer) sent section '\(s.name)' where '\(name)' was expected") }
        guard s.version <= maxVersion else {
            throw MigrationError("\(peer) sent section '\(name)' version \(s.version); this hvhost reads up to version \(maxVersion)")
        }
        return (s.version, s.payload)
    }

    private func read(_ count: Int) throws -> [UInt8] {
        var b = [UInt8](repeating: 0, count: count)
        try b.withUnsafeMutableBytes { raw in
            var done = 0
            while done < count {
                let n = recv(fd, raw.baseAddress! + done, count - done, 0)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else {
                    throw MigrationError(n == 0 ? "\(peer) closed the connection"
                                               : "the connection to \(peer) broke: \(String(cString: strerror(errno)))")
                }
                done += n
            }
            received.update(UnsafeRawBufferPointer(raw))
        }
        return b
    }

    // MARK: verdicts

    func sendVerdict(_ refusal: String?) throws {
        var e = StateEncoder()
        e.u8(refusal == nil ? 1 : 0)
        e.string(refusal ?? "")
        try send("verdict", e.bytes)
        try flush()
    }

    /// Throws the destination's refusal.
    func receiveVerdict() throws {
        let s = try receive("verdict")
        var d = StateDecoder(s.payload, context: "\(peer): section 'verdict'")
        let accepted = try d.u8() == 1
        let message = try d.string(limit: 1 << 16)
        guard accepted else { throw MigrationError("the destination \(peer) refused: \(message)") }
    }
}

func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}
