import Glibc
import HVSupport

/// A bounded output buffer drained into a file descriptor by its own thread, so that
/// writers never block: when the buffer is full, new bytes are dropped and counted.
final class OutputPump: @unchecked Sendable {
    private let fd: Int32
    private let capacity: Int
    private let lock = HostLock()
    private var buffer: [UInt8] = []
    private var writing = false
    private var stopping = false
    private var thread: pthread_t?
    private(set) var dropped: UInt64 = 0

    init(fd: Int32, capacity: Int = 64 * 1024, name: String) {
        self.fd = fd
        self.capacity = capacity
        buffer.reserveCapacity(capacity)
        thread = HostThread.spawn(name: name) { [self] in self.run() }
    }

    deinit {
        stop()
    }

    func enqueue(_ byte: UInt8) {
        lock.lock()
        if buffer.count < capacity && !stopping {
            buffer.append(byte)
            lock.broadcast()
        } else {
            dropped &+= 1
        }
        lock.unlock()
    }

    func flush() {
        lock.lock()
        while (!buffer.isEmpty || writing) && thread != nil { lock.wait() }
        lock.unlock()
    }

    /// Writes what is buffered, then ends the thread. Idempotent.
    func stop() {
        lock.lock()
        stopping = true
        lock.broadcast()
        let t = thread
        thread = nil
        lock.unlock()
        if let t { pthread_join(t, nil) }
    }

    private func run() {
        lock.lock()
        while true {
            while buffer.isEmpty && !stopping { lock.wait() }
            if buffer.isEmpty { break }
            var chunk: [UInt8] = []
            swap(&chunk, &buffer)
            buffer.reserveCapacity(capacity)
            writing = true
            lock.unlock()
            writeAll(chunk)
            lock.lock()
            writing = false
            lock.broadcast()
        }
        lock.broadcast()
        lock.unlock()
    }

    private func writeAll(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = write(fd, raw.baseAddress! + offset, raw.count - offset)
                if n > 0 { offset += n; continue }
                if n < 0 && errno == EINTR { continue }
                if n < 0 && errno == EAGAIN {
                    var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                    _ = poll(&p, 1, 100)
                    continue
                }
                return          // closed or failing descriptor: drop the rest
            }
        }
    }
}
