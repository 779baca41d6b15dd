import Glibc
import HVSupport

/// The write end of the self-pipe, for the async-signal-safe handler.
nonisolated(unsafe) private var signalPipeWrite: Int32 = -1

/// Turns SIGINT/SIGTERM into a callback on a dedicated thread: the handler only
/// writes the signal number to a pipe (async-signal-safe, whichever thread the kernel
/// picks), and the watcher thread reads it and runs ordinary code.
final class SignalWatcher: @unchecked Sendable {
    var onSignal: ((Int32) -> Void)?
    private var thread: pthread_t?
    private let readEnd: Int32

    init(signals: [Int32]) {
        var fds: [Int32] = [0, 0]
        pipe(&fds)
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        readEnd = fds[0]
        signalPipeWrite = fds[1]
        for s in signals {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { sig in
                var byte = UInt8(truncatingIfNeeded: sig)
                _ = write(signalPipeWrite, &byte, 1)
            }
            sigemptyset(&action.sa_mask)
            action.sa_flags = SA_RESTART
            sigaction(s, &action, nil)
        }
        thread = HostThread.spawn(name: "signals") { [self] in loop() }
    }

    private func loop() {
        var byte: UInt8 = 0
        while true {
            let n = read(readEnd, &byte, 1)
            if n < 0 && errno == EINTR { continue }
            guard n == 1, byte != 0 else { return }
            onSignal?(Int32(byte))
        }
    }

    /// Ends the watcher thread (a zero byte is the stop marker).
    func stop() {
        var zero: UInt8 = 0
        _ = write(signalPipeWrite, &zero, 1)
        if let thread { pthread_join(thread, nil) }
    }
}
