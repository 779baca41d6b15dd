import Glibc

/// A bounded output buffer drained into a file descriptor by its own thread, so that
/// writers never block: when the buffer is full, new bytes are dropped and counted.
final class OutputPump: @unchecked Sendable {
    private let fd: Int32
    private let capacity: Int
    private var mutex = pthread_mutex_t()
    private var cond = pthread_cond_t()
    private var buffer: [UInt8] = []
    private var writing = false
    private var stopping = false
    private var thread: pthread_t?
    private(set) var dropped: UInt64 = 0

    init(fd: Int32, capacity: Int = 64 * 1024, name: String) {
        self.fd = fd
        self.capacity = capacity
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&cond, nil)
        buffer.reserveCapacity(capacity)
        thread = SerialSinkSupport.spawn(name: name) { [self] in self.run() }
    }

    deinit {
        stop()
        pthread_cond_destroy(&cond)
        pthread_mutex_destroy(&mutex)
    }

    func enqueue(_ byte: UInt8) {
        pthread_mutex_lock(&mutex)
        if buffer.count < capacity && !stopping {
            buffer.append(byte)
            pthread_cond_broadcast(&cond)
        } else {
            dropped &+= 1
        }
        pthread_mutex_unlock(&mutex)
    }

    func flush() {
        pthread_mutex_lock(&mutex)
        while (!buffer.isEmpty || writing) && thread != nil { pthread_cond_wait(&cond, &mutex) }
        pthread_mutex_unlock(&mutex)
    }

    /// Writes what is buffered, then ends the thread. Idempotent.
    func stop() {
        pthread_mutex_lock(&mutex)
        stopping = true
        pthread_cond_broadcast(&cond)
        let t = thread
        thread = nil
        pthread_mutex_unlock(&mutex)
        if let t { pthread_join(t, nil) }
    }

    private func run() {
        pthread_mutex_lock(&mutex)
        while true {
            while buffer.isEmpty && !stopping { pthread_cond_wait(&cond, &mutex) }
            if buffer.isEmpty { break }
            var chunk: [UInt8] = []
            swap(&chunk, &buffer)
            buffer.reserveCapacity(capacity)
            writing = true
            pthread_mutex_unlock(&mutex)
            writeAll(chunk)
            pthread_mutex_lock(&mutex)
            writing = false
            pthread_cond_broadcast(&cond)
        }
        pthread_cond_broadcast(&cond)
        pthread_mutex_unlock(&mutex)
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
