import HVSupport

/// Wake-to-run latency per VM, measured live by the pool: from the VMkernel making a
/// halted vCPU runnable (``SchedulerPool/wake(_:)``) to that vCPU's thread leaving its
/// wait with a slot granted (host monotonic ns, both taken by the VMkernel). Keeps the
/// most recent ``window`` samples per VM, so the percentiles follow what runs now.
/// Recorded by vCPU threads outside the pool lock, hence its own lock.
package final class WakeLatencyRecorder: @unchecked Sendable {
    /// Samples kept per VM.
    static let window = 4096

    package struct Summary: Equatable, Sendable {
        package var count: UInt64
        package var p50: UInt64
        package var p99: UInt64
        package var max: UInt64
    }

    private struct Ring {
        var samples: [UInt64] = []
        var next = 0
        var total: UInt64 = 0
    }

    private let lock = HostLock()
    private var rings: [Int32: Ring] = [:]

    package init() {}

    func record(vm: Int32, nanoseconds: UInt64) {
        lock.withLock {
            var r = rings[vm] ?? Ring()
            if r.samples.count < Self.window {
                r.samples.append(nanoseconds)
            } else {
                r.samples[r.next] = nanoseconds
            }
            r.next = (r.next + 1) % Self.window
            r.total &+= 1
            rings[vm] = r
        }
    }

    func forget(vm: Int32) { lock.withLock { _ = rings.removeValue(forKey: vm) } }

    /// Percentiles over the VM's recent samples (nil before its first wake).
    package func summary(vm: Int32) -> Summary? {
        let (samples, total): ([UInt64], UInt64) = lock.withLock { (rings[vm]?.samples ?? [], rings[vm]?.total ?? 0) }
        guard !samples.isEmpty else { return nil }
        let sorted = samples.sorted()
        func pct(_ p: Double) -> UInt64 { sorted[min(sorted.count - 1, Int((Double(sorted.count) * p).rounded(.up)) - 1)] }
        return Summary(count: total, p50: pct(0.50), p99: pct(0.99), max: sorted.last!)
    }
}
