import Glibc
import Synchronization

/// A VM's clock: nanoseconds since power-on, stopped while the VM is paused.
public final class VMClock: Sendable {
    private struct State { var offset: UInt64; var pausedAt: UInt64? }
    private let state: Mutex<State>

    public init() {
        state = Mutex(State(offset: VMClock.hostNanoseconds(), pausedAt: nil))
    }

    /// CLOCK_MONOTONIC in nanoseconds.
    public static func hostNanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }

    /// A clock that reads `vmTime` and stands still until `resume()` (a restored VM).
    public init(pausedAt vmTime: UInt64) {
        let host = VMClock.hostNanoseconds()
        state = Mutex(State(offset: host &- vmTime, pausedAt: host))
    }

    public func now() -> UInt64 {
        state.withLock { s in (s.pausedAt ?? VMClock.hostNanoseconds()) &- s.offset }
    }

    /// Host monotonic time at which the VM clock reads `vmTime` (while running).
    func hostTime(at vmTime: UInt64) -> UInt64 {
        state.withLock { s in vmTime &+ s.offset }
    }

    public var isPaused: Bool { state.withLock { $0.pausedAt != nil } }

    public func pause() {
        state.withLock { s in if s.pausedAt == nil { s.pausedAt = VMClock.hostNanoseconds() } }
    }

    public func resume() {
        state.withLock { s in
            if let p = s.pausedAt { s.offset &+= VMClock.hostNanoseconds() &- p; s.pausedAt = nil }
        }
    }
}
