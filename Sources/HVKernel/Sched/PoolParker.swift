import Glibc

/// A counting semaphore (`sem_t`) a vCPU thread sleeps on while it waits for a slot.
final class PoolParker: @unchecked Sendable {
    private let sem: UnsafeMutablePointer<sem_t>

    init() {
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
    func park() { _ = sem_wait(sem) }

    func unpark() { sem_post(sem) }
}
