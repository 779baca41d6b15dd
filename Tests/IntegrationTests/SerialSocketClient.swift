import Foundation

/// A test's end of a guest serial port served by hvhost (`hv.serial = "unix:PATH"`): it
/// collects the guest's output on a reader thread and sends it bytes, so a test can wait
/// for a line and answer it — ordering guests by what they print, never by sleeping.
final class SerialSocketClient: @unchecked Sendable {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    let path: String
    private let fd: Int32
    private let condition = NSCondition()
    private var output = Data()
    private var closed = false

    /// Connects to `path`, waiting up to `timeout` for hvhost to create the socket (it
    /// does when the VM is built, which may be after this is called).
    init(path: String, timeout: TimeInterval) throws {
        self.path = path
        let deadline = Date().addingTimeInterval(timeout)
        var connected: Int32 = -1
        while connected < 0 {
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw Failure(description: "socket(): \(String(cString: strerror(errno)))") }
            if Self.connect(fd, to: path) == 0 {
                connected = fd
                break
            }
            let e = errno
            close(fd)
            // ENOENT: not created yet; ECONNREFUSED: bound but not listening yet.
            guard e == ENOENT || e == ECONNREFUSED, Date() < deadline else {
                throw Failure(description: "cannot connect to \(path): \(String(cString: strerror(e)))")
            }
            usleep(10_000)
        }
        fd = connected
        Thread.detachNewThread { [self] in readLoop() }
    }

    deinit { close(fd) }

    private static func connect(_ fd: Int32, to path: String) -> Int32 {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            raw.copyBytes(from: bytes.prefix(raw.count - 1))
        }
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
    }

    private func readLoop() {
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(fd, &buf, buf.count)
            if n < 0 && errno == EINTR { continue }
            condition.lock()
            if n > 0 { output.append(contentsOf: buf[0..<n]) } else { closed = true }
            condition.broadcast()
            condition.unlock()
            if n <= 0 { return }
        }
    }

    /// Everything the guest printed since the connection.
    var text: String {
        condition.lock()
        defer { condition.unlock() }
        return String(decoding: output, as: UTF8.self)
    }

    /// Waits until the output contains `needle`; throws (naming what was seen) when the
    /// connection ends or `timeout` passes first.
    func waitFor(_ needle: String, timeout: TimeInterval) throws {
        let deadline = Date().addingTimeInterval(timeout)
        condition.lock()
        defer { condition.unlock() }
        while String(decoding: output, as: UTF8.self).range(of: needle) == nil {
            if closed || !condition.wait(until: deadline) {
                let why = closed ? "the connection closed" : "\(Int(timeout)) s passed"
                throw Failure(description: "\(path): \(why) before \"\(needle)\"; output so far:\n"
                              + String(decoding: output, as: UTF8.self))
            }
        }
    }

    /// Sends one byte to the guest's serial input.
    func send(_ byte: UInt8) throws {
        var b = byte
        while true {
            let n = write(fd, &b, 1)
            if n == 1 { return }
            if n < 0 && errno == EINTR { continue }
            throw Failure(description: "\(path): write failed: \(String(cString: strerror(errno)))")
        }
    }
}
