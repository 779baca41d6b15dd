import Glibc
import HVSupport
import Synchronization

/// The time base of a pool: nanoseconds, monotonic. The real one reads
/// CLOCK_MONOTONIC; tests drive a ``ManualSchedulerClock``.
package protocol SchedulerClock: AnyObject, Sendable {
    func now() -> UInt64
}

/// CLOCK_MONOTONIC nanoseconds since the clock was made.
final class MonotonicSchedulerClock: SchedulerClock {
    private let epoch = VMClock.hostNanoseconds()
    init() {}
    func now() -> UInt64 { VMClock.hostNanoseconds() &- epoch }
}

/// A clock that moves only when told (unit tests).
final class ManualSchedulerClock: SchedulerClock {
    private let value: Atomic<UInt64>
    init(_ start: UInt64 = 0) { value = Atomic(start) }
    func now() -> UInt64 { value.load(ordering: .acquiring) }
    func advance(by ns: UInt64) { value.add(ns, ordering: .acquiringAndReleasing) }
    func set(_ ns: UInt64) { value.store(ns, ordering: .releasing) }
}
