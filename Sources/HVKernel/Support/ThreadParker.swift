import Glibc

/// A counting semaphore (`sem_t`) one thread sleeps on until another unparks it (a vCPU
/// thread waiting for a pCPU slot).
final class ThreadParker: @unchecked Sendable {
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
