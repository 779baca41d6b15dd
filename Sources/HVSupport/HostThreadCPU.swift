import Glibc

@_silgen_name("pthread_setaffinity_np")
private func hv_pthread_setaffinity_np(_ thread: pthread_t, _ size: Int, _ set: UnsafeRawPointer) -> Int32

@_silgen_name("prctl")
private func hv_prctl(_ option: Int32, _ arg2: UInt, _ arg3: UInt, _ arg4: UInt, _ arg5: UInt) -> Int32

/// Thread-level helpers the scheduler needs: per-thread CPU clocks and host-CPU pinning.
extension HostThread {
    /// Sets the calling thread's timer slack (`prctl(PR_SET_TIMERSLACK)`): how late Linux
    /// may fire its timed waits (default 50 µs), so slices end when they should.
    @discardableResult
    package static func setTimerSlack(nanoseconds: UInt) -> Int32 {
        hv_prctl(29 /* PR_SET_TIMERSLACK */, nanoseconds, 0, 0, 0)
    }

    /// CPU time used by the calling thread (CLOCK_THREAD_CPUTIME_ID), nanoseconds.
    package static func currentThreadCPUTime() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }

    /// The calling thread's CPU clock as other threads can read it (`pthread_getcpuclockid`).
    package static func currentThreadCPUClock() -> clockid_t? {
        var clock = clockid_t()
        return pthread_getcpuclockid(pthread_self(), &clock) == 0 ? clock : nil
    }

    /// Reads a thread CPU clock from any thread while that thread is alive.
    package static func cpuTime(of clock: clockid_t) -> UInt64? {
        var ts = timespec()
        guard clock_gettime(clock, &ts) == 0 else { return nil }
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }

    /// Host CPUs this process may use (sysconf(_SC_NPROCESSORS_ONLN)).
    package static var hostCPUCount: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }

    /// Pins the calling thread to `cpu`, or lets it run on every host CPU when nil
    /// (`pthread_setaffinity_np`). Returns 0 or an errno.
    @discardableResult
    package static func pinCurrentThread(to cpu: Int?) -> Int32 {
        var mask = [UInt64](repeating: 0, count: 16)          // cpu_set_t: 1024 bits
        if let cpu {
            guard (0..<1024).contains(cpu) else { return EINVAL }
            mask[cpu / 64] = 1 << UInt64(cpu % 64)
        } else {
            for c in 0..<min(1024, hostCPUCount) { mask[c / 64] |= 1 << UInt64(c % 64) }
        }
        return mask.withUnsafeBytes { hv_pthread_setaffinity_np(pthread_self(), $0.count, $0.baseAddress!) }
    }
}
