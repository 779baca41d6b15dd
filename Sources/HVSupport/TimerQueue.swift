import Glibc
import Synchronization

/// One thread that fires device timers at VM-clock deadlines. Callbacks run on that
/// thread with no lock held; each device takes its own lock inside the callback and,
/// because a cancel never waits (it is usually called under that same lock), checks
/// its own state there: a callback already in flight may still run once after cancel.
package final class TimerQueue: @unchecked Sendable {
    private let clock: VMClock
    private let name: String
    private let lock = HostLock()
    private var armed: [ObjectIdentifier: (deadline: UInt64, timer: DeviceTimer)] = [:]
    private var running = false
    private var stopping = false
    private var thread: pthread_t?

    package init(clock: VMClock, name: String) {
        self.clock = clock
        self.name = name
    }

    deinit { stop() }

    package func makeTimer(_ callback: @escaping @Sendable () -> Void) -> DeviceTimer {
        DeviceTimer(queue: self, callback: callback)
    }

    package func start() {
        lock.lock()
        defer { lock.unlock() }
        guard !running else { return }
        running = true
        stopping = false
        let box = Unmanaged.passRetained(self)
        var tid = pthread_t()
        pthread_create(&tid, nil, { arg in
            let queue = Unmanaged<TimerQueue>.fromOpaque(arg!).takeRetainedValue()
            queue.loop()
            return nil
        }, box.toOpaque())
        thread = tid
    }

    /// Stops the thread; armed timers stay armed and fire after the next start(). Without
    /// `waiting` the thread ends after its current callback, unwaited (a callback may be
    /// blocked on a device whose call never returns).
    package func stop(waiting: Bool = true) {
        lock.lock()
        guard running, let t = thread else { lock.unlock(); return }
        stopping = true
        lock.broadcast()
        lock.unlock()
        if waiting && pthread_equal(t, pthread_self()) == 0 { pthread_join(t, nil) } else { pthread_detach(t) }
        lock.lock()
        running = false
        thread = nil
        lock.unlock()
    }

    package func arm(_ timer: DeviceTimer, at deadline: UInt64) {
        lock.lock()
        armed[ObjectIdentifier(timer)] = (deadline, timer)
        lock.broadcast()
        lock.unlock()
    }

    package func cancel(_ timer: DeviceTimer) {
        lock.lock()
        armed[ObjectIdentifier(timer)] = nil
        lock.unlock()
    }

    func isArmed(_ timer: DeviceTimer) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        return armed[ObjectIdentifier(timer)] != nil
    }

    private func loop() {
        lock.lock()
        while !stopping {
            let now = clock.now()
            if let next = armed.values.min(by: { $0.deadline < $1.deadline }) {
                if next.deadline <= now {
                    armed[ObjectIdentifier(next.timer)] = nil
                    lock.unlock()
                    next.timer.callback()
                    lock.lock()
                    continue
                }
                // While the VM is paused its clock stands still: poll gently for the resume.
                let host = clock.isPaused ? VMClock.hostNanoseconds() + 50_000_000 : clock.hostTime(at: next.deadline)
                lock.wait(until: host)
            } else {
                lock.wait()
            }
        }
        lock.unlock()
    }
}

/// A one-shot timer on a TimerQueue. Re-arm from the callback for periodic behaviour.
package final class DeviceTimer: @unchecked Sendable {
    private unowned let queue: TimerQueue
    package let callback: @Sendable () -> Void

    package init(queue: TimerQueue, callback: @escaping @Sendable () -> Void) {
        self.queue = queue
        self.callback = callback
    }

    /// Fires once at the absolute VM-clock time `deadline` (ns); a past deadline fires at once.
    package func arm(at deadline: UInt64) { queue.arm(self, at: deadline) }
    /// Disarms without waiting: a callback already past its deadline may still run once,
    /// so callbacks re-check their device state under the device's lock.
    package func cancel() { queue.cancel(self) }
    var isArmed: Bool { queue.isArmed(self) }
}
