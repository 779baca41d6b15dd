import Glibc

/// Turns SIGINT/SIGTERM into a callback on a dedicated thread (sigwait), so VMs can be
/// powered off cleanly from ordinary code rather than from a signal handler.
final class SignalWatcher: @unchecked Sendable {
    var onSignal: ((Int32) -> Void)?
    private var thread = pthread_t()
    private var set = sigset_t()
    private var stopped = false

    /// Blocks `signals` in this and every thread created after it.
    init(signals: [Int32]) {
        sigemptyset(&set)
        for s in signals { sigaddset(&set, s) }
        sigaddset(&set, SIGUSR2)                        // wakes the watcher for stop()
        pthread_sigmask(SIG_BLOCK, &set, nil)
        let me = Unmanaged.passRetained(self).toOpaque()
        pthread_create(&thread, nil, { arg in
            let watcher = Unmanaged<SignalWatcher>.fromOpaque(arg!).takeRetainedValue()
            watcher.loop()
            return nil
        }, me)
    }

    private func loop() {
        while true {
            var sig: Int32 = 0
            guard sigwait(&set, &sig) == 0 else { continue }
            if sig == SIGUSR2 && stopped { return }
            if sig != SIGUSR2 { onSignal?(sig) }
        }
    }

    func stop() {
        stopped = true
        pthread_kill(thread, SIGUSR2)
        pthread_join(thread, nil)
    }
}
