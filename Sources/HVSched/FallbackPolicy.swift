/// The host's built-in policy: proportional share by shares in virtual time (each vCPU's
/// virtual time advances by the CPU time it used divided by its shares; the runnable
/// vCPU with the least virtual time that may run on the pCPU goes next), honouring
/// affinity. It ignores min and max. It runs when a pool names no policy and replaces a
/// plugin policy that misbehaves, so it is small and obviously correct rather than clever.
package final class FallbackPolicy: SchedulerPolicy {
    package static let policyName = "fallback"
    /// The slice every pick gets.
    static let slice: UInt64 = 10_000_000

    private struct Entry {
        var vm: Int32
        var params: SchedulerParams
        var runnable = false
        /// Virtual time: used nanoseconds × 1000 / shares.
        var vtime: UInt64 = 0
    }

    private var entries: [Int32: Entry] = [:]
    /// pool-local pCPU → the vCPU it was last given.
    private var running: [UInt32: Int32] = [:]

    package init() {}

    package var name: String { Self.policyName }
    package var origin: String { "built in" }
    package var isFallback: Bool { true }

    private var minRunnableVTime: UInt64? {
        entries.values.filter(\.runnable).map(\.vtime).min()
    }

    package func addVCPU(_ vcpu: Int32, vm: Int32, params: SchedulerParams) throws {
        // Start level with the others so a newcomer neither waits nor monopolises.
        entries[vcpu] = Entry(vm: vm, params: params, vtime: minRunnableVTime ?? 0)
    }

    package func removeVCPU(_ vcpu: Int32) {
        entries[vcpu] = nil
        stopRunning(vcpu)
    }

    package func wake(_ vcpu: Int32, now: UInt64) {
        guard var e = entries[vcpu] else { return }
        // A sleeper comes back at most one slice behind the runnable ones.
        if let floor = minRunnableVTime {
            let credit = Self.slice * 1000 / UInt64(max(1, e.params.shares))
            e.vtime = max(e.vtime, floor > credit ? floor - credit : 0)
        }
        e.runnable = true
        entries[vcpu] = e
    }

    package func block(_ vcpu: Int32, now: UInt64) {
        entries[vcpu]?.runnable = false
        stopRunning(vcpu)
    }

    package func yield(_ vcpu: Int32, now: UInt64) {
        stopRunning(vcpu)
    }

    package func pickNext(pcpu: UInt32, now: UInt64) -> SchedulerPick {
        running[pcpu] = nil
        let busy = Set(running.values)
        var best: (id: Int32, vtime: UInt64)?
        for (id, e) in entries where e.runnable && !busy.contains(id) && e.params.allows(pcpu: Int(pcpu)) {
            if best == nil || e.vtime < best!.vtime || (e.vtime == best!.vtime && id < best!.id) {
                best = (id, e.vtime)
            }
        }
        guard let best else { return .idle }
        running[pcpu] = best.id
        return SchedulerPick(vcpu: best.id, sliceNanoseconds: Self.slice)
    }

    package func account(_ vcpu: Int32, ranNanoseconds: UInt64) {
        guard var e = entries[vcpu] else { return }
        e.vtime &+= ranNanoseconds &* 1000 / UInt64(max(1, e.params.shares))
        entries[vcpu] = e
    }

    package func setParams(_ vcpu: Int32, params: SchedulerParams) throws {
        entries[vcpu]?.params = params
    }

    package func dump() -> String? {
        let runnable = entries.values.filter(\.runnable).count
        return "\(entries.count) vCPUs, \(runnable) runnable, slice \(Self.slice / 1_000_000) ms"
    }

    package func shutdown() {
        entries = [:]
        running = [:]
    }

    private func stopRunning(_ vcpu: Int32) {
        for (pcpu, v) in running where v == vcpu { running[pcpu] = nil }
    }
}
