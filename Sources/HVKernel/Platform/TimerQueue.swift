import Glibc
import Synchronization

/// One thread that fires device timers at VM-clock deadlines. Callbacks run on that
/// thread with no lock held; each device takes its own lock inside the callback and,
/// because a cancel never waits (it is usually called under that same lock), checks
/// its own state there: a callback already in flight may still run once after cancel.
public final class TimerQueue: @unchecked Sendable {
    private let clock: VMClock
    private let name: String
    private var mutex = pthread_mutex_t()
    private var cond = pthread_cond_t()
    private var armed: [ObjectIdentifier: (deadline: UInt64, timer: DeviceTimer)] = [:]
    private var running = false
    private var stopping = false
    private var thread: pthread_t?

    public init(clock: VMClock, name: String) {
        self.clock = clock
        self.name = name
        pthread_mutex_init(&mutex, nil)
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(&cond, &attr)
        pthread_condattr_destroy(&attr)
    }

    deinit {
        stop()
        pthread_cond_destroy(&cond)
        pthread_mutex_destroy(&mutex)
    }

    public func makeTimer(_ callback: @escaping @Sendable () -> Void) -> DeviceTimer {
        DeviceTimer(queue: self, callback: callback)
    }

    public func start() {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
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

    /// Stops the thread; armed timers stay armed and fire after the next start().
    public func stop() {
        pthread_mutex_lock(&mutex)
        guard running, let t = thread else { pthread_mutex_unlock(&mutex); return }
        stopping = true
        pthread_cond_broadcast(&cond)
        pthread_mutex_unlock(&mutex)
        if pthread_equal(t, pthread_self()) == 0 { pthread_join(t, nil) } else { pthread_detach(t) }
        pthread_mutex_lock(&mutex)
        running = false
        thread = nil
        pthread_mutex_unlock(&mutex)
    }

    func arm(_ timer: DeviceTimer, at deadline: UInt64) {
        pthread_mutex_lock(&mutex)
        armed[ObjectIdentifier(timer)] = (deadline, timer)
        pthread_cond_broadcast(&cond)
        pthread_mutex_unlock(&mutex)
    }

    func cancel(_ timer: DeviceTimer) {
        pthread_mutex_lock(&mutex)
        armed[ObjectIdentifier(timer)] = nil
        pthread_mutex_unlock(&mutex)
    }

    func isArmed(_ timer: DeviceTimer) -> Bool {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return armed[ObjectIdentifier(timer)] != nil
    }

    private func loop() {
        pthread_mutex_lock(&mutex)
        while !stopping {
            let now = clock.now()
            if let next = armed.values.min(by: { $0.deadline < $1.deadline }) {
                if next.deadline <= now {
                    armed[ObjectIdentifier(next.timer)] = nil
                    pthread_mutex_unlock(&mutex)
                    next.timer.callback()
                    pthread_mutex_lock(&mutex)
                    continue
                }
                var ts = timespec()
                // While the VM is paused its clock stands still: poll gently for the resume.
                let host = clock.isPaused ? VMClock.hostNanoseconds() + 50_000_000 : clock.hostTime(at: next.deadline)
                ts.tv_sec = Int(host / 1_000_000_000)
                ts.tv_nsec = Int(host % 1_000_000_000)
                pthread_cond_timedwait(&cond, &mutex, &ts)
            } else {
                pthread_cond_wait(&cond, &mutex)
            }
        }
        pthread_mutex_unlock(&mutex)
    }
}

/// A one-shot timer on a TimerQueue. Re-arm from the callback for periodic behaviour.
public final class DeviceTimer: @unchecked Sendable {
    private unowned let queue: TimerQueue
    let callback: @Sendable () -> Void

    init(queue: TimerQueue, callback: @escaping @Sendable () -> Void) {
        self.queue = queue
        self.callback = callback
    }

    /// Fires once at the absolute VM-clock time `deadline` (ns); a past deadline fires at once.
    public func arm(at deadline: UInt64) { queue.arm(self, at: deadline) }
    /// Disarms without waiting: a callback already past its deadline may still run once,
    /// so callbacks re-check their device state under the device's lock.
    public func cancel() { queue.cancel(self) }
    public var isArmed: Bool { queue.isArmed(self) }
}
