import Glibc

/// A pthread mutex at a stable address, optionally recursive. Used instead of
/// `Synchronization.Mutex` where a lock is held across calls into plugins, paired with
/// condition variables, or must be visible to ThreadSanitizer (which cannot see the
/// futex-based Mutex on Linux). `wait`/`broadcast` use a built-in condition; more
/// conditions on the same mutex are `HostCondition`s.
package final class HostLock: @unchecked Sendable {
    let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = HostCondition()

    package init(recursive: Bool = false) {
        var attr = pthread_mutexattr_t()
        pthread_mutexattr_init(&attr)
        if recursive { pthread_mutexattr_settype(&attr, Int32(PTHREAD_MUTEX_RECURSIVE)) }
        pthread_mutex_init(mutex, &attr)
        pthread_mutexattr_destroy(&attr)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    package func lock() { pthread_mutex_lock(mutex) }
    package func unlock() { pthread_mutex_unlock(mutex) }

    @inline(__always) @discardableResult
    package func withLock<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    /// Waits (lock held) until signalled or until host monotonic time `deadline`.
    package func wait(until deadline: UInt64? = nil) { condition.wait(self, until: deadline) }

    package func broadcast() { condition.broadcast() }
}

/// A condition variable on CLOCK_MONOTONIC, used with a `HostLock`'s mutex.
package final class HostCondition: @unchecked Sendable {
    private let cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    package init() {
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(cond, &attr)
        pthread_condattr_destroy(&attr)
    }

    deinit {
        pthread_cond_destroy(cond)
        cond.deallocate()
    }

    /// Waits with `lock` held, until signalled or (when given) host monotonic time `deadline`.
    package func wait(_ lock: HostLock, until deadline: UInt64? = nil) {
        guard let deadline else { pthread_cond_wait(cond, lock.mutex); return }
        var ts = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
        pthread_cond_timedwait(cond, lock.mutex, &ts)
    }

    package func signal() { pthread_cond_signal(cond) }
    package func broadcast() { pthread_cond_broadcast(cond) }
}

/// A value guarded by a `HostLock`.
package final class HostLocked<Value>: @unchecked Sendable {
    private let lock = HostLock()
    private var value: Value

    package init(_ value: Value) { self.value = value }

    package func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        try lock.withLock { try body(&value) }
    }
}
