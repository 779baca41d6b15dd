import Glibc
import HVMemory
import HVSupport
import Logging

/// The VMkernel's memory module: the host memory budget, admission control at power-on,
/// per-VM allocation targets (`MemoryPolicy`: shares per page with the idle memory tax)
/// and the reclaim that moves VMs toward them, in ESX's order: page sharing (always
/// on, `PageSharing`), then the balloon, then host swap (`MemoryReclaimer`s attached
/// with `attach(_:)`).
///
/// Every `tickInterval` the scheduler samples each VM (pages resident in its memfd,
/// shared/zero counts, pages written since the last sample through the dirty log),
/// recomputes the targets and hands each reclaimer its per-VM target. Between ticks a
/// thread scans pages for sharing at `scanRate` pages per second.
package final class MemoryScheduler: @unchecked Sendable {
    /// What the scheduler reads from a running VM.
    package struct Account {
        package let name: String
        package let memoryPages: Int
        package let vcpus: Int
        /// Pages backed by the VM's own memfd now.
        package let residentPages: () -> Int
        /// Pages the guest wrote since the previous call (the dirty log), nil when unknown.
        package let sampleWrittenPages: () -> Int?
        let sharing: PageSharing.Member?
    }

    /// One VM's numbers, in pages (esxtop's memory view).
    package struct Row: Equatable, Sendable {
        package var name: String
        package var memsz: Int
        /// Memory the guest has been given: its own pages plus those sharing and zero pages stand for.
        package var granted: Int
        package var shared: Int
        package var zero: Int
        /// Private copies the guest made of shared or zero pages by writing them.
        package var copied: Int
        package var ballooned: Int
        package var swapped: Int
        package var target: Int
        package var activePercent: Double
        package var shares: UInt32
        package var minPages: Int
        package var maxPages: Int
        package var overheadPages: Int
    }

    private final class Entry {
        var account: Account
        var parameters: MemorySchedulingParameters
        var memoryMiB: Int
        var active = 1.0
        var target: Int
        var balloonHeld = 0
        var lastBalloonHeld = 0
        /// The balloon target handed out at the previous tick.
        var balloonAsked = 0
        var row: Row?
        init(account: Account, parameters: MemorySchedulingParameters, memoryMiB: Int) {
            self.account = account
            self.parameters = parameters
            self.memoryMiB = memoryMiB
            target = account.memoryPages
        }
    }

    package static let pageBytes = Int(GuestMemory.pageSize)
    /// The host memory VMs may use (bytes).
    package let budgetBytes: UInt64
    /// `Mem.IdleTax`: fraction of an idle page's shares taken away, 0...0.99.
    package var idleTax: Double {
        get { lock.withLock { tax } }
        set { lock.withLock { tax = min(max(newValue, 0), 0.99) } }
    }
    /// Page-sharing scan rate (pages per second, all VMs together); 0 stops scanning.
    package var scanRate: Int {
        get { lock.withLock { rate } }
        set { lock.withLock { rate = max(0, newValue) } }
    }
    package let sharing: PageSharing?
    package let tickInterval: Double

    private let lock = HostLock()
    // [lock]
    private var tax: Double
    private var rate: Int
    private var entries: [String: Entry] = [:]
    private var order: [String] = []
    private var reclaimers: [MemoryReclaimer] = []
    private var running = false
    private var csv: UnsafeMutablePointer<FILE>?
    private let started = VMClock.hostNanoseconds()
    private var scannerCPU: UInt64 = 0
    private let logger: Logger

    /// ESX 2.x default scan rate scaled to this scanner's cost: 2 % of a core or less (see README).
    package static let defaultScanRate = 4096
    package static let defaultIdleTax = 0.75

    package init(budgetBytes: UInt64? = nil, idleTax: Double = MemoryScheduler.defaultIdleTax,
                 scanRate: Int = MemoryScheduler.defaultScanRate, sharing: Bool = true,
                 tickInterval: Double = 1, csvPath: String? = nil, logger: Logger) throws {
        self.budgetBytes = budgetBytes ?? Self.defaultBudget()
        tax = min(max(idleTax, 0), 0.99)
        rate = max(0, scanRate)
        self.sharing = sharing ? try PageSharing() : nil
        self.tickInterval = tickInterval
        self.logger = logger
        if let csvPath {
            guard let f = fopen(csvPath, "w") else {
                throw VMError("--mem-csv \(csvPath): cannot create it: \(String(cString: strerror(errno)))")
            }
            csv = f
            fputs("time_s,vm,memsz_mb,grant_mb,shrd_mb,zero_mb,copied_mb,mctlsz_mb,swcur_mb,target_mb,active_pct,shares,min_mb,max_mb\n", f)
        }
    }

    /// Physical RAM less a margin for the host itself: 6 % (ESX's "high" free state), at least 512 MiB.
    deinit { if let csv { fclose(csv) } }

    package static func defaultBudget() -> UInt64 {
        let physical = UInt64(sysconf(Int32(_SC_PHYS_PAGES))) * UInt64(sysconf(Int32(_SC_PAGESIZE)))
        let margin = max(physical / 100 * 6, 512 << 20)
        return physical > margin ? physical - margin : physical
    }

    /// The VMM's own memory for a VM, pages: a fixed part for its threads, device state
    /// and buffers (measured ~10 MiB RSS for a small VM here), 2 MiB per vCPU (run
    /// structure, stacks, emulator state) and 1/64 of its RAM for the host's page
    /// tables, KVM's shadow tables and dirty bitmaps.
    package static func overheadPages(memoryMiB: Int, vcpus: Int) -> Int {
        let mib = 12 + 2 * vcpus + (memoryMiB + 63) / 64
        return mib << 8
    }

    // MARK: admission and registration

    /// Refuses a VM whose reservation plus overhead does not fit next to those of the
    /// running VMs (ESX's admission control); others are not affected.
    package func admit(name: String, memoryMiB: Int, vcpus: Int, parameters: MemorySchedulingParameters) throws {
        try lock.withLock { try checkAdmission(name: name, memoryMiB: memoryMiB, vcpus: vcpus, minMiB: parameters.minMiB) }
    }

    private func checkAdmission(name: String, memoryMiB: Int, vcpus: Int, minMiB: Int) throws {
        let others = entries.values.filter { $0.account.name != name }
        let reserved = others.reduce(0) { $0 + ($1.parameters.minMiB << 8) + Self.overheadPages(memoryMiB: $1.memoryMiB, vcpus: $1.account.vcpus) }
        let overhead = Self.overheadPages(memoryMiB: memoryMiB, vcpus: vcpus)
        let need = (minMiB << 8) + overhead
        let budget = Int(budgetBytes / UInt64(Self.pageBytes))
        guard reserved + need <= budget else {
            throw VMError("cannot power on '\(name)': sched.mem.min = \(minMiB) MiB plus \(overhead >> 8) MiB overhead needs \(need >> 8) MiB, but only \(max(0, budget - reserved) >> 8) MiB of the host memory budget (\(budget >> 8) MiB) is unreserved (\(reserved >> 8) MiB reserved by \(others.count) running VM(s)); lower sched.mem.min or raise --mem-budget")
        }
    }

    /// Starts managing a powered-on VM (again, after a guest reset: the live settings stay).
    package func register(_ account: Account, memoryMiB: Int, parameters: MemorySchedulingParameters) {
        lock.withLock {
            if let e = entries[account.name] {
                if let old = e.account.sharing, old !== account.sharing { sharing?.detach(old) }
                e.account = account
                e.memoryMiB = memoryMiB
            } else {
                entries[account.name] = Entry(account: account, parameters: parameters, memoryMiB: memoryMiB)
                order.append(account.name)
            }
        }
    }

    /// Stops managing a VM (it stopped); its shared pages leave their frames.
    package func unregister(name: String) {
        let member: PageSharing.Member? = lock.withLock {
            defer { entries[name] = nil; order.removeAll { $0 == name } }
            return entries[name]?.account.sharing
        }
        if let member { sharing?.detach(member) }
        for r in lock.withLock({ reclaimers }) { r.setReclaimTarget(vm: name, pages: 0) }
    }

    /// Adds a reclaim mechanism; the scheduler sets its per-VM targets from the next tick.
    package func attach(_ reclaimer: MemoryReclaimer) {
        lock.withLock { reclaimers.append(reclaimer) }
    }

    /// `sched.mem.*` changed live (console `mem set`); a higher min goes through admission.
    @discardableResult
    package func setParameters(vm name: String, shares: ShareAllocation?, minMiB: Int?, maxMiB: Int?) throws -> MemorySchedulingParameters {
        try lock.withLock {
            guard let e = entries[name] else { throw VMError("no running VM named '\(name)'") }
            var p = e.parameters
            if let shares { p.shares = shares }
            if let minMiB {
                guard (0...e.memoryMiB).contains(minMiB) else { throw VMError("min=\(minMiB): expected 0...\(e.memoryMiB) MiB (memsize)") }
                p.minMiB = minMiB
            }
            if let maxMiB {
                guard (1...e.memoryMiB).contains(maxMiB) else { throw VMError("max=\(maxMiB): expected 1...\(e.memoryMiB) MiB (memsize)") }
                p.maxMiB = maxMiB
            }
            guard p.minMiB <= p.maxMiB else { throw VMError("min \(p.minMiB) MiB is above max \(p.maxMiB) MiB") }
            if p.minMiB > e.parameters.minMiB {
                try checkAdmission(name: name, memoryMiB: e.memoryMiB, vcpus: e.account.vcpus, minMiB: p.minMiB)
            }
            e.parameters = p
            return p
        }
    }

    // MARK: running

    /// Starts the tick and scanner thread; it ends with `stop()`.
    package func start() {
        let go: Bool = lock.withLock { defer { running = true }; return !running }
        guard go else { return }
        _ = HostThread.spawn(name: "mem-sched") { [self] in loop() }
    }

    package func stop() {
        lock.withLock { running = false }
    }

    /// CPU time the scanning thread spent sharing pages, nanoseconds.
    package var scannerCPUNanoseconds: UInt64 { lock.withLock { scannerCPU } }

    private func loop() {
        let slice = 0.01
        var sinceTick = 0.0
        var sinceRefresh = 0.0
        var carry = 0.0
        while lock.withLock({ running }) {
            let t0 = HostThread.currentThreadCPUTime()
            let pages = lock.withLock { Double(rate) * slice } + carry
            carry = pages - pages.rounded(.down)
            if let sharing, pages >= 1 { sharing.scan(pages: Int(pages)) }
            sinceRefresh += slice
            if let sharing, sinceRefresh >= 2 {
                sharing.refreshWritten()
                sinceRefresh = 0
            }
            let t1 = HostThread.currentThreadCPUTime()
            lock.withLock { scannerCPU += t1 - t0 }
            sinceTick += slice
            if sinceTick >= tickInterval {
                tick()
                sinceTick = 0
            }
            usleep(UInt32(slice * 1_000_000))
        }
    }

    /// One scheduling round: sample, compute targets, hand them to the reclaimers.
    package func tick() {
        let snapshot: [(Entry, PageSharing.Counts?, Int, Int?)] = lock.withLock {
            order.compactMap { entries[$0] }.map { e in
                (e, e.account.sharing.flatMap { sharing?.counts(of: $0) }, 0, nil)
            }
        }
        // Sample outside the lock: the dirty log and fstat are system calls.
        let sampled = snapshot.map { (e, counts, _, _) in (e, counts, e.account.residentPages(), e.account.sampleWrittenPages()) }
        let rs = lock.withLock { reclaimers }
        lock.withLock {
            var clients: [MemoryPolicy.Client] = []
            for (e, counts, resident, written) in sampled {
                if let written, e.account.memoryPages > 0 {
                    let f = min(1, Double(written) / Double(e.account.memoryPages))
                    // Smooth over a few ticks (ESX samples for 30 s); a burst shows quickly.
                    e.active = max(f, e.active * 0.7 + f * 0.3)
                }
                let balloon = rs.filter { $0.kind == .balloon }.reduce(0) { $0 + $1.reclaimedPages(vm: e.account.name) }
                let swap = rs.filter { $0.kind == .swap }.reduce(0) { $0 + $1.reclaimedPages(vm: e.account.name) }
                e.lastBalloonHeld = e.balloonHeld
                e.balloonHeld = balloon
                let c = counts ?? PageSharing.Counts.none
                let granted = min(e.account.memoryPages, resident + c.copied + c.shared + c.zero)
                e.row = Row(name: e.account.name, memsz: e.account.memoryPages, granted: granted, shared: c.shared,
                            zero: c.zero, copied: c.copied, ballooned: balloon, swapped: swap, target: e.target,
                            activePercent: e.active * 100, shares: e.parameters.totalShares(memoryMiB: e.memoryMiB),
                            minPages: e.parameters.minMiB << 8, maxPages: e.parameters.maxMiB << 8,
                            overheadPages: Self.overheadPages(memoryMiB: e.memoryMiB, vcpus: e.account.vcpus))
                clients.append(MemoryPolicy.Client(
                    name: e.account.name, shares: e.parameters.totalShares(memoryMiB: e.memoryMiB),
                    minPages: e.parameters.minMiB << 8, maxPages: e.parameters.maxMiB << 8,
                    wantedPages: granted + balloon + swap, activeFraction: e.active))
            }
            let entriesNow = sampled.map(\.0)
            let overhead = entriesNow.reduce(0) { $0 + Self.overheadPages(memoryMiB: $1.memoryMiB, vcpus: $1.account.vcpus) }
            // Shared frames are host memory too: one page per frame, charged before the VMs.
            let frames = sharing?.statistics.framesInUse ?? 0
            let available = Int(budgetBytes / UInt64(Self.pageBytes)) - overhead - frames
            let targets = MemoryPolicy.targets(for: clients, availablePages: max(0, available), idleTax: tax)
            for (i, e) in entriesNow.enumerated() {
                e.target = targets[i]
                e.row?.target = targets[i]
            }
        }
        // Reclaim toward the targets: what the VM consumes privately above its target
        // (sharing already took its part) goes to the balloon, then swap.
        for (e, counts, resident, _) in sampled {
            let (target, balloonHeld, lastHeld, asked, memoryPages) = lock.withLock {
                (e.target, e.balloonHeld, e.lastBalloonHeld, e.balloonAsked, e.account.memoryPages)
            }
            let c = counts ?? PageSharing.Counts.none
            let swapHeld = rs.filter { $0.kind == .swap }.reduce(0) { $0 + $1.reclaimedPages(vm: e.account.name) }
            let consumed = resident + c.copied
            let excess = consumed + balloonHeld + swapHeld - target
            let split = MemoryPolicy.split(excessPages: excess, balloonLimitPages: memoryPages * 65 / 100,
                                           balloonHeld: balloonHeld,
                                           // Asked for more a tick ago and did not grow: no driver, or stuck.
                                           balloonStalled: asked > balloonHeld && balloonHeld <= lastHeld)
            lock.withLock { e.balloonAsked = rs.contains { $0.kind == .balloon } ? split.balloonPages : 0 }
            for r in rs {
                r.setReclaimTarget(vm: e.account.name, pages: r.kind == .balloon ? split.balloonPages : split.swapPages)
            }
        }
        writeCSV()
    }

    /// The latest numbers of every managed VM, in power-on order.
    package func rows() -> [Row] {
        lock.withLock { order.compactMap { entries[$0]?.row } }
    }

    private func writeCSV() {
        lock.withLock {
            guard let csv else { return }
            let t = Double(VMClock.hostNanoseconds() - started) / 1e9
            func mb(_ pages: Int) -> String { Self.fixed(Double(pages) / 256, 1) }
            for name in order {
                guard let r = entries[name]?.row else { continue }
                fputs(Self.fixed(t, 2) + ",\(r.name),\(mb(r.memsz)),\(mb(r.granted)),\(mb(r.shared)),\(mb(r.zero)),\(mb(r.copied)),\(mb(r.ballooned)),\(mb(r.swapped)),\(mb(r.target)),\(Self.fixed(r.activePercent, 1)),\(r.shares),\(mb(r.minPages)),\(mb(r.maxPages))\n", csv)
            }
            fflush(csv)
        }
    }

    /// `x` with `digits` decimals (no Foundation here).
    package static func fixed(_ x: Double, _ digits: Int) -> String {
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let n = Int((abs(x) * scale).rounded())
        let whole = String(n / Int(scale)), fraction = String(n % Int(scale))
        let padded = String(repeating: "0", count: max(0, digits - fraction.count)) + fraction
        return (x < 0 && n > 0 ? "-" : "") + whole + (digits > 0 ? "." + padded : "")
    }
}
