/// The host's built-in policy: proportional share by shares in virtual time (each vCPU's
/// virtual time advances by the CPU time it used divided by its shares; the runnable
/// vCPU with the least virtual time that may run on the pCPU goes next), honouring
/// affinity, reservation (min) and limit (max). It runs when a pool names no policy and
/// replaces a plugin policy that misbehaves, so it is small and obviously correct rather
/// than clever.
///
/// Min and max are percent of one pCPU, accounted over 100 ms periods of the pool clock.
/// A vCPU that has used its max share of the current period is not picked again until
/// the next one, even if the pCPU idles (limits are not work-conserving, as in ESX), and
/// its slice never runs past its remaining budget. A vCPU behind min % of the time
/// elapsed in the period is served first (largest deficit first), whatever its virtual
/// time, so it gets max(min, its share).
package final class FallbackPolicy: SchedulerPolicy {
    package static let policyName = "fallback"
    /// The slice every pick gets (less when a limit's budget ends sooner).
    static let slice: UInt64 = 10_000_000
    /// The min/max accounting period.
    static let period: UInt64 = 100_000_000

    private struct Entry {
        var vm: Int32
        var params: SchedulerParams
        var runnable = false
        /// Virtual time: used nanoseconds × 1000 / shares.
        var vtime: UInt64 = 0
        /// The period `used` counts in, and the CPU time used in it.
        var period: UInt64 = 0
        var used: UInt64 = 0

        /// CPU time used in period `p`.
        func used(in p: UInt64) -> UInt64 { period == p ? used : 0 }

        /// What the limit leaves of period `p` (nil: no limit).
        func budget(in p: UInt64) -> UInt64? {
            guard params.maxPercent < 100 else { return nil }
            let cap = FallbackPolicy.period * UInt64(params.maxPercent) / 100
            return cap > used(in: p) ? cap - used(in: p) : 0
        }
    }

    private var entries: [Int32: Entry] = [:]
    /// pool-local pCPU → the vCPU it was last given.
    private var running: [UInt32: Int32] = [:]
    /// The period of the latest decision: `account` charges CPU time to it.
    private var currentPeriod: UInt64 = 0

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
        let p = now / Self.period
        currentPeriod = p
        let elapsed = now % Self.period
        let periodLeft = Self.period - elapsed
        let busy = Set(running.values)
        var reserved: (id: Int32, deficit: UInt64)?
        var best: (id: Int32, vtime: UInt64)?
        var capped = false
        for (id, e) in entries where e.runnable && !busy.contains(id) && e.params.allows(pcpu: Int(pcpu)) {
            if let b = e.budget(in: p), b < SchedulerPool.validSlices.lowerBound {
                capped = true
                continue
            }
            let owed = elapsed * UInt64(e.params.minPercent) / 100
            if owed > e.used(in: p) {
                let deficit = owed - e.used(in: p)
                if reserved == nil || deficit > reserved!.deficit || (deficit == reserved!.deficit && id < reserved!.id) {
                    reserved = (id, deficit)
                }
            }
            if best == nil || e.vtime < best!.vtime || (e.vtime == best!.vtime && id < best!.id) {
                best = (id, e.vtime)
            }
        }
        guard let chosen = reserved?.id ?? best?.id else {
            // Only vCPUs at their limit wait: ask again when the next period starts.
            return capped ? SchedulerPick(vcpu: -1, sliceNanoseconds: max(periodLeft, SchedulerPool.validSlices.lowerBound)) : .idle
        }
        running[pcpu] = chosen
        var slice = Self.slice
        if let b = entries[chosen]!.budget(in: p) { slice = min(slice, b, max(periodLeft, SchedulerPool.validSlices.lowerBound)) }
        return SchedulerPick(vcpu: chosen, sliceNanoseconds: slice)
    }

    package func account(_ vcpu: Int32, ranNanoseconds: UInt64) {
        guard var e = entries[vcpu] else { return }
        e.vtime &+= ranNanoseconds &* 1000 / UInt64(max(1, e.params.shares))
        if e.period != currentPeriod {
            e.period = currentPeriod
            e.used = 0
        }
        e.used &+= ranNanoseconds
        entries[vcpu] = e
    }

    package func setParams(_ vcpu: Int32, params: SchedulerParams) throws {
        entries[vcpu]?.params = params
    }

    package func dump() -> String? {
        let runnable = entries.values.filter(\.runnable).count
        return "\(entries.count) vCPUs, \(runnable) runnable, slice \(Self.slice / 1_000_000) ms, min/max period \(Self.period / 1_000_000) ms"
    }

    package func shutdown() {
        entries = [:]
        running = [:]
    }

    private func stopRunning(_ vcpu: Int32) {
        for (pcpu, v) in running where v == vcpu { running[pcpu] = nil }
    }
}
