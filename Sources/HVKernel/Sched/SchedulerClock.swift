import Glibc
import Synchronization

/// The time base of a pool: nanoseconds, monotonic. The real one reads
/// CLOCK_MONOTONIC; tests drive a ``ManualSchedulerClock``.
public protocol SchedulerClock: AnyObject, Sendable {
    func now() -> UInt64
}

/// CLOCK_MONOTONIC nanoseconds since the clock was made.
public final class MonotonicSchedulerClock: SchedulerClock {
    private let epoch = VMClock.hostNanoseconds()
    public init() {}
    public func now() -> UInt64 { VMClock.hostNanoseconds() &- epoch }
}

/// A clock that moves only when told (unit tests).
public final class ManualSchedulerClock: SchedulerClock {
    private let value: Atomic<UInt64>
    public init(_ start: UInt64 = 0) { value = Atomic(start) }
    public func now() -> UInt64 { value.load(ordering: .acquiring) }
    public func advance(by ns: UInt64) { value.add(ns, ordering: .acquiringAndReleasing) }
    public func set(_ ns: UInt64) { value.store(ns, ordering: .releasing) }
}
