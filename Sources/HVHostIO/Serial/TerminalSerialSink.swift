import Glibc
import HVSupport

/// Guest output to the host's standard output; optionally, standard input (a terminal or
/// a pipe) feeds the guest. Output is buffered (64 KiB) and written by a helper thread,
/// so a stopped terminal never stalls a vCPU; overflow is dropped.
///
/// When stdin is a terminal and `rawMode` is set, the terminal is switched to
/// character-at-a-time input without echo (signals such as Ctrl-C still reach the host
/// process) and restored by ``close()``.
package final class TerminalSerialSink: SerialSink, @unchecked Sendable {
    private let output: OutputPump
    private let readsInput: Bool
    private let rawMode: Bool
    private let state = HostLocked<(thread: pthread_t?, wake: (read: Int32, write: Int32)?, saved: termios?, closed: Bool)>(
        (nil, nil, nil, false))

    package init(input: Bool = true, rawMode: Bool = true) {
        output = OutputPump(fd: STDOUT_FILENO, name: "serial-stdout")
        var st = stat()
        let usable = isatty(STDIN_FILENO) == 1
            || (fstat(STDIN_FILENO, &st) == 0 && (st.st_mode & S_IFMT) == S_IFIFO)
        readsInput = input && usable
        self.rawMode = rawMode
    }

    deinit { close() }

    package func transmit(_ byte: UInt8) { output.enqueue(byte) }

    package func flush() { output.flush() }

    package func startInput(_ receiver: @escaping @Sendable ([UInt8]) -> Int) {
        guard readsInput else { return }
        state.withLock { s in
            guard s.thread == nil, !s.closed else { return }
            if rawMode && isatty(STDIN_FILENO) == 1 {
                var t = termios()
                if tcgetattr(STDIN_FILENO, &t) == 0 {
                    s.saved = t
                    t.c_lflag &= ~tcflag_t(ICANON | ECHO | IEXTEN)
                    t.c_iflag &= ~tcflag_t(ICRNL | INLCR | IGNCR | IXON)
                    _ = tcsetattr(STDIN_FILENO, TCSANOW, &t)
                }
            }
            let wake = SerialSinkSupport.makeWakePipe()
            s.wake = wake
            s.thread = HostThread.spawn(name: "serial-stdin") {
                Self.readLoop(wakeFD: wake.read, receiver: receiver)
            }
        }
    }

    private static func readLoop(wakeFD: Int32, receiver: @escaping @Sendable ([UInt8]) -> Int) {
        var buf = [UInt8](repeating: 0, count: 1024)
        while true {
            var fds = [pollfd(fd: STDIN_FILENO, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0)]
            let rc = poll(&fds, 2, -1)
            if rc < 0 && errno == EINTR { continue }
            if rc < 0 || fds[1].revents != 0 { return }
            let n = read(STDIN_FILENO, &buf, buf.count)
            if n < 0 && (errno == EINTR || errno == EAGAIN) { continue }
            if n <= 0 { return }        // end of input
            if !SerialSinkSupport.deliver(Array(buf[0..<n]), to: receiver, wakeFD: wakeFD) { return }
        }
    }

    package func close() {
        let (thread, wake, saved) = state.withLock { s -> (pthread_t?, (read: Int32, write: Int32)?, termios?) in
            if s.closed { return (nil, nil, nil) }
            s.closed = true
            defer { s.thread = nil; s.wake = nil; s.saved = nil }
            return (s.thread, s.wake, s.saved)
        }
        if let wake { SerialSinkSupport.wake(wake.write) }
        if let thread { pthread_join(thread, nil) }
        if let wake { Glibc.close(wake.read); Glibc.close(wake.write) }
        if var saved { _ = tcsetattr(STDIN_FILENO, TCSANOW, &saved) }
        output.stop()
    }
}
