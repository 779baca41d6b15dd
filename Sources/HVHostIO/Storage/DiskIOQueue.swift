import Glibc
import HVSupport

/// Worker thread(s) that run disk work and call completions, so a device plugin's
/// `disk_submit` returns at once and its `complete` callback arrives on a host I/O
/// thread (never on the submitter's thread, never under the device lock).
///
/// Jobs start in submission (FIFO) order. With one thread (the default) they also
/// finish in that order; with more, up to `threads` run at the same time.
///
/// Thread contract: `submit` may be called from any thread, including from inside a
/// job. `drain` and `shutdown` may be called from any thread except the queue's own
/// workers (they would wait for themselves); doing so is a programming error. Dropping
/// the last reference shuts the queue down (running what is queued), even on a worker.
package final class DiskIOQueue: Sendable {
    package let name: String
    private let core: Core

    /// Starts `threads` (at least 1) worker threads named after `name`.
    package init(name: String, threads: Int = 1) {
        self.name = name
        self.core = Core(threadCount: max(1, threads))
        for index in 0..<max(1, threads) {
            core.startWorker(name: threads > 1 ? "\(name)-\(index)" : name)
        }
    }

    deinit {
        // May run on a worker (a job held the last reference): then that worker is
        // detached instead of joined, and exits after finishing the queued work.
        core.shutdown(fromDeinit: true)
    }

    /// Queues `work`. Returns false (and drops the work, which never runs) once the
    /// queue has been shut down; callers that owe a completion must report failure
    /// themselves then.
    @discardableResult
    package func submit(_ work: @escaping @Sendable () -> Void) -> Bool {
        core.submit(work)
    }

    /// Waits until the queue is idle: every job submitted before this call, and any
    /// submitted while it waits (including by the jobs themselves), has finished.
    func drain() {
        core.drain()
    }

    /// Stops accepting work, runs what is already queued, and joins the workers.
    /// Idempotent.
    func shutdown() {
        core.shutdown()
    }

    /// The shared state; the worker threads hold it, not the queue, so dropping the
    /// last reference to the `DiskIOQueue` shuts the workers down.
    private final class Core: @unchecked Sendable {
        // Heap-allocated so their addresses never move (pthread objects must not).
        private let mutex = HostLock()
        private let workReady = HostCondition()
        private let idle = HostCondition()

        // Guarded by `mutex`.
        private var jobs: [(@Sendable () -> Void)?] = []   // ring: head index + count
        private var head = 0
        private var queued = 0
        private var running = 0
        private var stopping = false
        private var workers: [pthread_t] = []
        private let threadCount: Int

        init(threadCount: Int) {
            self.threadCount = threadCount
            jobs = Array(repeating: nil, count: 64)
        }

        func startWorker(name: String) {
            let thread = HostThread.spawn(name: name) { [self] in workerLoop() }
            mutex.lock()
            workers.append(thread)
            mutex.unlock()
        }

        func submit(_ work: @escaping @Sendable () -> Void) -> Bool {
            mutex.lock()
            defer { mutex.unlock() }
            guard !stopping else { return false }
            if queued == jobs.count { grow() }
            jobs[(head + queued) % jobs.count] = work
            queued += 1
            workReady.signal()
            return true
        }

        func drain() {
            mutex.lock()
            precondition(!isWorkerLocked(), "DiskIOQueue.drain() called from the queue's own worker thread")
            while queued > 0 || running > 0 {
                idle.wait(mutex)
            }
            mutex.unlock()
        }

        func shutdown(fromDeinit: Bool = false) {
            mutex.lock()
            let onWorker = isWorkerLocked()
            precondition(fromDeinit || !onWorker, "DiskIOQueue.shutdown() called from the queue's own worker thread")
            stopping = true
            let toJoin = workers
            workers = []
            workReady.broadcast()
            mutex.unlock()
            for thread in toJoin {
                if pthread_equal(thread, pthread_self()) != 0 {
                    pthread_detach(thread)
                } else {
                    pthread_join(thread, nil)
                }
            }
        }

        private func isWorkerLocked() -> Bool {
            let me = pthread_self()
            return workers.contains { pthread_equal($0, me) != 0 }
        }

        private func grow() {
            var bigger: [(@Sendable () -> Void)?] = Array(repeating: nil, count: jobs.count * 2)
            for i in 0..<queued { bigger[i] = jobs[(head + i) % jobs.count] }
            jobs = bigger
            head = 0
        }

        fileprivate func workerLoop() {
            mutex.lock()
            while true {
                while queued == 0 && !stopping {
                    workReady.wait(mutex)
                }
                if queued == 0 { break }   // stopping, and everything queued has run
                let work = jobs[head]!
                jobs[head] = nil
                head = (head + 1) % jobs.count
                queued -= 1
                running += 1
                mutex.unlock()
                work()
                mutex.lock()
                running -= 1
                if queued == 0 && running == 0 { idle.broadcast() }
            }
            mutex.unlock()
        }
    }
}
