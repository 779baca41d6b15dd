import Glibc
import HVSupport

/// The VMM listens on a Unix stream socket at `path`; one client at a time receives the
/// guest's output and its bytes feed the guest's input. Further clients wait in the
/// listen backlog until the current one disconnects.
///
/// Output is sent without blocking: with no client connected, or when the client does
/// not read and the socket buffer is full, bytes are dropped (``droppedBytes``) rather
/// than buffered without bound or stalling the vCPU.
package final class UnixSocketSerialSink: SerialSink, @unchecked Sendable {
    package let path: String
    private let listenFD: Int32
    private let wake: (read: Int32, write: Int32)
    private struct State {
        var client: Int32 = -1
        var dropped: UInt64 = 0
        var receiver: (@Sendable ([UInt8]) -> Int)?
        var thread: pthread_t?
        var closed = false
    }
    private final class Shared: Sendable {
        let state = HostLocked(State())
    }
    private let shared = Shared()

    /// Binds and listens at `path` (an existing socket file there is replaced).
    package init(path: String) throws {
        self.path = path
        guard !path.isEmpty, let addr = UnixSocketAddress(path: path) else { throw SerialSinkError.pathTooLong(path) }
        var st = stat()
        if lstat(path, &st) == 0 {
            guard (st.st_mode & S_IFMT) == S_IFSOCK else { throw SerialSinkError.notASocket(path) }
            unlink(path)
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SerialSinkError.socketFailed(path: path, operation: "socket", errno: errno) }
        guard addr.bind(fd) == 0 else {
            let e = errno
            Glibc.close(fd)
            throw SerialSinkError.socketFailed(path: path, operation: "bind", errno: e)
        }
        guard listen(fd, 4) == 0 else {
            let e = errno
            Glibc.close(fd)
            unlink(path)
            throw SerialSinkError.socketFailed(path: path, operation: "listen", errno: e)
        }
        listenFD = fd
        wake = SerialSinkSupport.makeWakePipe()
        let (listenFD, wake, shared) = (fd, wake, shared)
        let thread = HostThread.spawn(name: "serial-socket") {
            Self.run(listenFD: listenFD, wake: wake, shared: shared)
        }
        shared.state.withLock { $0.thread = thread }
    }

    deinit { close() }

    /// Bytes dropped because no client was connected or the client was not reading.
    var droppedBytes: UInt64 { shared.state.withLock { $0.dropped } }
    /// Whether a client is connected now.
    var hasClient: Bool { shared.state.withLock { $0.client >= 0 } }

    package func transmit(_ byte: UInt8) {
        shared.state.withLock { s in
            guard s.client >= 0 else { s.dropped &+= 1; return }
            var b = byte
            let n = send(s.client, &b, 1, Int32(MSG_DONTWAIT) | Int32(MSG_NOSIGNAL))
            if n != 1 { s.dropped &+= 1 }
        }
    }

    package func startInput(_ receiver: @escaping @Sendable ([UInt8]) -> Int) {
        shared.state.withLock { $0.receiver = receiver }
    }

    package func close() {
        let thread = shared.state.withLock { s -> pthread_t? in
            if s.closed { return nil }
            s.closed = true
            defer { s.thread = nil }
            return s.thread
        }
        guard let thread else { return }
        SerialSinkSupport.wake(wake.write)
        pthread_join(thread, nil)
        shared.state.withLock { s in
            if s.client >= 0 { Glibc.close(s.client); s.client = -1 }
        }
        Glibc.close(listenFD)
        Glibc.close(wake.read)
        Glibc.close(wake.write)
        unlink(path)
    }

    private static func dropClient(_ shared: Shared) {
        shared.state.withLock { s in
            if s.client >= 0 { Glibc.close(s.client); s.client = -1 }
        }
    }

    private static func run(listenFD: Int32, wake: (read: Int32, write: Int32), shared: Shared) {
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let client = shared.state.withLock { $0.client }
            var fds = [pollfd(fd: wake.read, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: client >= 0 ? client : listenFD, events: Int16(POLLIN), revents: 0)]
            let rc = poll(&fds, 2, -1)
            if rc < 0 && errno == EINTR { continue }
            if rc < 0 || fds[0].revents != 0 { return }
            guard fds[1].revents != 0 else { continue }
            if client < 0 {
                let fd = accept(listenFD, nil, nil)
                if fd >= 0 {
                    SerialSinkSupport.setNonBlockingCloseOnExec(fd)
                    shared.state.withLock { $0.client = fd }
                }
                continue
            }
            let n = read(client, &buf, buf.count)
            if n < 0 && (errno == EINTR || errno == EAGAIN) { continue }
            if n <= 0 { dropClient(shared); continue }
            guard let receiver = shared.state.withLock({ $0.receiver }) else { continue }
            if !SerialSinkSupport.deliver(Array(buf[0..<n]), to: receiver, wakeFD: wake.read) { return }
        }
    }
}
