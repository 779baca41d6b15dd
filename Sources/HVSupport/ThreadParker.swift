import Glibc

/// A counting semaphore (`sem_t`) one thread sleeps on until another unparks it (a vCPU
/// thread waiting for a pCPU slot).
package final class ThreadParker: @unchecked Sendable {
    private let sem: UnsafeMutablePointer<sem_t>

    package init() {
        sem = .allocate(capacity: 1)
        sem.initialize(to: sem_t())
        sem_init(sem, 0, 0)
    }

    deinit {
        sem_destroy(sem)
        sem.deinitialize(count: 1)
        sem.deallocate()
    }

    /// Sleeps until posted (or a signal interrupts the wait: callers re-check).
    package func park() { _ = sem_wait(sem) }

    package func unpark() { sem_post(sem) }
}
