import Glibc

/// Wake pipes and flow-controlled input delivery shared by the serial sinks.
enum SerialSinkSupport {
    static func errnoText(_ e: Int32) -> String { String(cString: strerror(e)) }

    /// A non-blocking pipe whose read end wakes a poll loop.
    static func makeWakePipe() -> (read: Int32, write: Int32) {
        var fds: [Int32] = [-1, -1]
        let rc = pipe(&fds)
        precondition(rc == 0, "pipe failed: \(errnoText(errno))")
        for fd in fds { setNonBlockingCloseOnExec(fd) }
        return (fds[0], fds[1])
    }

    static func setNonBlockingCloseOnExec(_ fd: Int32) {
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        _ = fcntl(fd, F_SETFD, fcntl(fd, F_GETFD) | FD_CLOEXEC)
    }

    static func wake(_ fd: Int32) {
        var b: UInt8 = 1
        _ = write(fd, &b, 1)
    }

    /// Waits up to `milliseconds` for `fd` to become readable; true if it did.
    static func waitReadable(_ fd: Int32, milliseconds: Int32) -> Bool {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&p, 1, milliseconds) > 0
    }

    /// Offers `bytes` to `receiver` until all are accepted, retrying every 2 ms while the
    /// guest side is full. Returns false if `wakeFD` signalled a stop meanwhile.
    static func deliver(_ bytes: [UInt8], to receiver: ([UInt8]) -> Int, wakeFD: Int32) -> Bool {
        var rest = bytes[...]
        while !rest.isEmpty {
            let n = max(0, min(receiver(Array(rest)), rest.count))
            rest = rest.dropFirst(n)
            if !rest.isEmpty && waitReadable(wakeFD, milliseconds: 2) { return false }
        }
        return true
    }
}
