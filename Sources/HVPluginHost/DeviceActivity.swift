import HVSupport

/// Calls into a plugin device that neither its VM's vCPUs nor its timers make: network
/// receives (and link changes) and disk completions. Pausing the device closes it:
/// receives are refused (the switch drops and counts the frame), and the pause waits
/// until the receives in flight have returned and every disk request submitted so far
/// has completed, so no call reaches the plugin between its pause and resume ops.
package final class DeviceActivity: @unchecked Sendable {
    private let lock = HostLock()
    // [lock]
    private var closed = false
    private var receiving = 0
    private var diskRequests = 0

    /// False while closed: drop the frame.
    func beginReceive() -> Bool {
        lock.withLock {
            guard !closed else { return false }
            receiving += 1
            return true
        }
    }

    func endReceive() { finish { receiving -= 1 } }

    /// A disk request was queued; its completion calls ``endDiskRequest()``.
    func beginDiskRequest() { lock.withLock { diskRequests += 1 } }

    func endDiskRequest() { finish { diskRequests -= 1 } }

    private func finish(_ body: () -> Void) {
        lock.withLock {
            body()
            if receiving == 0 && diskRequests == 0 { lock.broadcast() }
        }
    }

    /// Closes and waits until nothing is in flight.
    package func close() {
        lock.withLock {
            closed = true
            while receiving > 0 || diskRequests > 0 { lock.wait() }
        }
    }

    package func open() { lock.withLock { closed = false } }

    /// Whether the VM is paused (no [device] call may reach the instance).
    var isClosed: Bool { lock.withLock { closed } }
}
