import Glibc

/// A thread that runs calls into untrusted code (a scheduler policy plugin) for callers
/// that must not wait on it for long: the pool calls its policy with the pool lock held,
/// so a policy that never returns would otherwise stop every vCPU of the pool and any
/// power-off behind it.
///
/// The caller hands a call over and waits until it returns or has run for `deadline`
/// nanoseconds on this thread (time spent waiting for the thread to be scheduled does not
/// count). Calls without a result can be posted instead (``post(_:_:)``): they run in
/// order before the next waited-for call, so one hand-off serves a scheduling decision
/// (`account`, then `pick_next`). A call that overruns, waited for or posted, is left
/// running and the thread is abandoned: the caller goes on, every later call fails at
/// once, the thread is never joined (it may never return) and the call is listed in
/// ``abandonedCalls`` for the host's exit message. Calls are escaping closures owning
/// their arguments: an abandoned call that returns late writes only into its own box,
/// never into the caller's stack.
package final class DeadlineCallThread: @unchecked Sendable {
    package enum Outcome<T> {
        case returned(T)
        /// The call ran past the deadline, or an earlier one did.
        case overran
    }

    private final class Call {
        let run: () -> Void
        let what: String
        /// Host ns when the thread began running it; 0 until then [lock].
        var startedAt: UInt64 = 0
        var done = false
        init(_ what: String, _ run: @escaping () -> Void) { self.what = what; self.run = run }
    }

    private final class Box<T> { var value: T?; init() {} }

    package let name: String
    package let deadline: UInt64
    /// Appended to a call's name in the abandoned list ("of scheduler policy 'x' ...").
    private let context: String
    private let lock = HostLock()
    private let requested = HostCondition()
    private let finished = HostCondition()
    // [lock]
    /// Calls handed over and not started yet, in order.
    private var pending: [Call] = []
    /// The call running on the thread.
    private var running: Call?
    private var quitting = false
    private var abandoned = false

    /// Every call abandoned in this process, "<what> (<thread name>)".
    private static let abandonedList = HostLocked<[String]>([])
    package static var abandonedCalls: [String] { abandonedList.withLock { $0 } }

    /// A call the thread has not started after this many deadlines counts as overrun too
    /// (the thread is stuck in something the deadline did not see).
    private static let startSlack: UInt64 = 20

    package init(name: String, deadline: UInt64, context: String = "") {
        self.name = name
        self.deadline = deadline
        self.context = context.isEmpty ? "" : " " + context
        let t = HostThread.spawn(name: name) { [self] in loop() }
        pthread_detach(t)
    }

    /// Whether a call overran: nothing runs on this thread any more.
    package var isAbandoned: Bool { lock.withLock { abandoned } }

    /// Runs `body` on the thread and waits for it (and the posted calls before it) up to
    /// the deadline. `what` names the call ("pick_next(pcpu 0)").
    package func call<T>(_ what: @autoclosure () -> String, _ body: @escaping () -> T) -> Outcome<T> {
        let box = Box<T>()
        let call = Call(what()) { box.value = body() }
        lock.lock()
        defer { lock.unlock() }
        guard !abandoned, !quitting else { return .overran }
        pending.append(call)
        requested.signal()
        let posted = VMClock.hostNanoseconds()
        while !call.done {
            let now = VMClock.hostNanoseconds()
            // The deadline runs from the start of whatever runs now (a posted call too).
            let current = running ?? call
            let limit = current.startedAt != 0 ? current.startedAt &+ deadline : posted &+ deadline &* Self.startSlack
            if now >= limit {
                abandon(current.startedAt != 0 ? current : call)
                return .overran
            }
            finished.wait(lock, until: limit)
        }
        return .returned(box.value!)
    }

    /// Hands `body` over without waiting; it runs before any later call. When the thread
    /// is still stuck in an earlier call past the deadline, that call is abandoned now
    /// and false is returned (as for every call after an overrun).
    @discardableResult
    package func post(_ what: @autoclosure () -> String, _ body: @escaping () -> Void) -> Bool {
        lock.withLock {
            guard !abandoned, !quitting else { return false }
            if let r = running, r.startedAt != 0, VMClock.hostNanoseconds() &- r.startedAt >= deadline {
                abandon(r)
                return false
            }
            pending.append(Call(what(), body))
            requested.signal()
            return true
        }
    }

    /// [lock] Gives up on the thread, stuck in `call`.
    private func abandon(_ call: Call) {
        abandoned = true
        pending.removeAll()
        let entry = "\(call.what)\(context) did not return within \(deadline / 1_000_000) ms (thread '\(name)' abandoned)"
        Self.abandonedList.withLock { $0.append(entry) }
    }

    /// What the abandoned call was, once a call overran.
    package var abandonedCall: String? {
        lock.withLock { abandoned ? (running?.what ?? pending.first?.what) : nil }
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
            while pending.isEmpty && !quitting && !abandoned { requested.wait(lock) }
            guard !pending.isEmpty, !quitting, !abandoned else { break }
            let call = pending.removeFirst()
            call.startedAt = VMClock.hostNanoseconds()
            running = call
            finished.broadcast()            // a caller's deadline now runs from here
            lock.unlock()
            call.run()
            lock.lock()
            if !abandoned { running = nil }   // an abandoned call stays named
            call.done = true
            finished.broadcast()
        }
        lock.unlock()
    }
}
