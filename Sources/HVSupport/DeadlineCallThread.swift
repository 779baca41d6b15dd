import Glibc

/// A thread that runs calls into untrusted code (a scheduler policy plugin) for callers
/// that must not wait on it for long: the pool calls its policy with the pool lock held,
/// so a policy that never returns would otherwise stop every vCPU of the pool and any
/// power-off behind it.
///
/// The caller hands a call over and waits until it returns or has run for `deadline`
/// nanoseconds on this thread (time spent waiting for the thread to be scheduled does not
/// count). A call that overruns is left running and the thread is abandoned: the caller
/// goes on, every later call fails at once, the thread is never joined (it may never
/// return) and the call is listed in ``abandonedCalls`` for the host's exit message.
/// Calls are escaping closures owning their arguments: an abandoned call that returns
/// late writes only into its own box, never into the caller's stack.
package final class DeadlineCallThread: @unchecked Sendable {
    package enum Outcome<T> {
        case returned(T)
        /// The call ran past the deadline, or an earlier one did.
        case overran
    }

    private final class Call {
        let run: () -> Void
        /// Host ns when the thread began running it; 0 until then [lock].
        var startedAt: UInt64 = 0
        var done = false
        init(_ run: @escaping () -> Void) { self.run = run }
    }

    private final class Box<T> { var value: T?; init() {} }

    package let name: String
    package let deadline: UInt64
    private let lock = HostLock()
    private let requested = HostCondition()
    private let finished = HostCondition()
    // [lock]
    private var pending: Call?
    private var quitting = false
    private var abandoned = false

    /// Every call abandoned in this process, "<what> (<thread name>)".
    private static let abandonedList = HostLocked<[String]>([])
    package static var abandonedCalls: [String] { abandonedList.withLock { $0 } }

    /// A call the thread has not started after this many deadlines counts as overrun too
    /// (the thread is stuck in something the deadline did not see).
    private static let startSlack: UInt64 = 20

    package init(name: String, deadline: UInt64) {
        self.name = name
        self.deadline = deadline
        let t = HostThread.spawn(name: name) { [self] in loop() }
        pthread_detach(t)
    }

    /// Whether a call overran: nothing runs on this thread any more.
    package var isAbandoned: Bool { lock.withLock { abandoned } }

    /// Runs `body` on the thread and waits for it up to the deadline. `what` names the
    /// call in the abandoned list ("pick_next(pcpu 0) of policy 'x'").
    package func call<T>(_ what: @autoclosure () -> String, _ body: @escaping () -> T) -> Outcome<T> {
        let box = Box<T>()
        let call = Call { box.value = body() }
        lock.lock()
        defer { lock.unlock() }
        guard !abandoned, !quitting else { return .overran }
        pending = call
        requested.signal()
        let posted = VMClock.hostNanoseconds()
        while !call.done {
            let now = VMClock.hostNanoseconds()
            let limit = call.startedAt != 0 ? call.startedAt &+ deadline : posted &+ deadline &* Self.startSlack
            if now >= limit {
                abandoned = true
                if pending === call { pending = nil }
                let entry = "\(what()) did not return within \(deadline / 1_000_000) ms (thread '\(name)' abandoned)"
                Self.abandonedList.withLock { $0.append(entry) }
                return .overran
            }
            finished.wait(lock, until: limit)
        }
        return .returned(box.value!)
    }

    /// Lets the thread end after its current call (it is detached; nothing waits for it).
    package func stop() {
        lock.withLock {
            quitting = true
            requested.signal()
        }
    }

    private func loop() {
        lock.lock()
        while true {
            while pending == nil && !quitting && !abandoned { requested.wait(lock) }
            guard let call = pending, !quitting, !abandoned else { break }
            pending = nil
            call.startedAt = VMClock.hostNanoseconds()
            finished.broadcast()            // the caller's deadline now runs from here
            lock.unlock()
            call.run()
            lock.lock()
            call.done = true
            finished.broadcast()
        }
        lock.unlock()
    }
}
