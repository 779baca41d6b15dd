import Glibc
import HVSupport

/// The per-call time limit of `hvhost plugin-check`: every call into the plugin under
/// test is wrapped in `watch`; a call that has not returned within the limit makes the
/// (child) process print `HANG <what>` and exit with status 3, which the parent reports
/// as a failure of the rule that was running.
package final class CallWatchdog: @unchecked Sendable {
    package let limitNanoseconds: UInt64
    private let lock = HostLock()
    private var calls: [UInt64: (what: String, at: UInt64)] = [:]
    private var nextToken: UInt64 = 0

    package static let hangExitStatus: Int32 = 3

    package init(limitSeconds: Double) {
        limitNanoseconds = UInt64(limitSeconds * 1e9)
        let t = HostThread.spawn(name: "check-watchdog") { [self] in loop() }
        pthread_detach(t)
    }

    /// Runs `body`, a call into the plugin described by `what`, under the limit.
    package func watch<R>(_ what: @autoclosure () -> String, _ body: () throws -> R) rethrows -> R {
        let token: UInt64 = lock.withLock {
            nextToken += 1
            calls[nextToken] = (what(), VMClock.hostNanoseconds())
            return nextToken
        }
        defer { lock.withLock { _ = calls.removeValue(forKey: token) } }
        return try body()
    }

    private func loop() {
        while true {
            var ts = timespec(tv_sec: 0, tv_nsec: 50_000_000)
            nanosleep(&ts, nil)
            let now = VMClock.hostNanoseconds()
            let late = lock.withLock { calls.values.first { now > $0.at && now - $0.at > limitNanoseconds } }
            if let late {
                let line = "HANG \(late.what) (no return within \(Double(limitNanoseconds) / 1e9) s)\n"
                _ = line.withCString { write(1, $0, strlen($0)) }
                _exit(Self.hangExitStatus)
            }
        }
    }
}
