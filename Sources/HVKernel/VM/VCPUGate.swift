import HVSupport

/// Keeps a VM's vCPUs out of guest mode while the VM is paused or while the page
/// sharing scanner swaps pages under it; closes nest (each close has its open).
///
/// A vCPU thread passes the gate (``enter()``) before it injects interrupts and runs the
/// guest, and leaves it when the run returns. ``close(kick:)`` stops new entries, kicks
/// the vCPUs that are inside and waits until the last one has left: after it returns no
/// vCPU runs guest code or touches a device until ``open()``. A vCPU halted or waiting
/// for a SIPI is already outside.
final class VCPUGate: @unchecked Sendable {
    private let lock = HostLock()
    // [lock]
    private var closes = 0
    private var released = false
    private var inside = 0

    /// False while the gate is closed: the vCPU parks (``waitWhileClosed()``) instead.
    func enter() -> Bool {
        lock.withLock {
            guard closes == 0 else { return false }
            inside += 1
            return true
        }
    }

    func leave() {
        lock.withLock {
            inside -= 1
            if inside == 0 { lock.broadcast() }
        }
    }

    /// Closes the gate and waits until every vCPU inside has left; `kick` makes a vCPU's
    /// run return promptly. A stopping VM's gate is released and returns at once: a vCPU
    /// thread abandoned in a device call that never returns stays "inside" for good.
    func close(kick: () -> Void) {
        lock.withLock { closes += 1 }
        kick()
        lock.withLock { while inside > 0 && !released { lock.wait() } }
    }

    /// Undoes one `close`; the vCPUs go on when every closer has reopened.
    func open() {
        lock.withLock {
            closes -= 1
            if closes == 0 { lock.broadcast() }
        }
    }

    /// Lets parked vCPUs go for good (the VM is stopping); they see that and exit.
    func release() {
        lock.withLock {
            released = true
            lock.broadcast()
        }
    }

    /// Parks the calling vCPU thread until the gate opens or is released.
    func waitWhileClosed() {
        lock.withLock { while closes > 0 && !released { lock.wait() } }
    }
}

/// What a vCPU was doing when its VM was suspended, and does first when restored.
enum VCPUActivity: UInt8 {
    case running = 0
    /// In HLT: it waits for an interrupt before it runs.
    case halted = 1
    /// An application processor waiting for a STARTUP IPI.
    case waitingForSIPI = 2
}
