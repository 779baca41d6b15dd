import Synchronization

/// Counts the threads inside a device instance's code at once (`hvhost plugin-check`'s
/// thread-contract rule): every [device] call the host makes (BAR accesses, timer
/// callbacks, receives, commands, lifecycle ops) enters and leaves it. For a model
/// without HV_DEVICE_THREAD_SAFE the most ever seen must be 1.
package final class DeviceEntryMonitor: Sendable {
    private let inside = Atomic<Int>(0)
    private let most = Atomic<Int>(0)
    private let entries = Atomic<Int>(0)

    package init() {}

    func enter() {
        let now = inside.wrappingAdd(1, ordering: .acquiringAndReleasing).newValue
        entries.wrappingAdd(1, ordering: .relaxed)
        var seen = most.load(ordering: .relaxed)
        while now > seen {
            let (exchanged, original) = most.compareExchange(expected: seen, desired: now, ordering: .relaxed)
            if exchanged { break }
            seen = original
        }
    }

    func leave() { inside.wrappingSubtract(1, ordering: .acquiringAndReleasing) }

    /// The most threads that were inside the instance at once.
    package var mostConcurrent: Int { most.load(ordering: .relaxed) }
    /// Calls made into the instance.
    package var entryCount: Int { entries.load(ordering: .relaxed) }
}
