import Glibc
import Synchronization

/// A VM's clock: nanoseconds since power-on, stopped while the VM is paused.
package final class VMClock: Sendable {
    private struct State { var offset: UInt64; var pausedAt: UInt64? }
    private let state: Mutex<State>

    package init() {
        state = Mutex(State(offset: VMClock.hostNanoseconds(), pausedAt: nil))
    }

    /// CLOCK_MONOTONIC in nanoseconds.
    package static func hostNanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }

    /// A clock that reads `vmTime` and stands still until `resume()` (a restored VM).
    package init(pausedAt vmTime: UInt64) {
        let host = VMClock.hostNanoseconds()
        state = Mutex(State(offset: host &- vmTime, pausedAt: host))
    }

    package func now() -> UInt64 {
        state.withLock { s in (s.pausedAt ?? VMClock.hostNanoseconds()) &- s.offset }
    }

    /// Host monotonic time at which the VM clock reads `vmTime` (while running).
    func hostTime(at vmTime: UInt64) -> UInt64 {
        state.withLock { s in vmTime &+ s.offset }
    }

    package var isPaused: Bool { state.withLock { $0.pausedAt != nil } }

    package func pause() {
        state.withLock { s in if s.pausedAt == nil { s.pausedAt = VMClock.hostNanoseconds() } }
    }

    package func resume() {
        state.withLock { s in
            if let p = s.pausedAt { s.offset &+= VMClock.hostNanoseconds() &- p; s.pausedAt = nil }
        }
    }
}
