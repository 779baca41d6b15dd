import Glibc
import HVHostIO
import HVMemory
import HVSupport
import Logging
import Synchronization

/// The sending side of a live migration (VMotion) of one running VM.
///
/// 1. Connects and sends the configuration and the device manifest; the destination
///    refuses a VM it cannot run (`MigrationManifest`) while the VM still runs here.
/// 2. Pre-copy: turns on KVM's dirty log, sends every non-zero page, then in rounds the
///    pages dirtied meanwhile (KVM's log merged with `GuestMemory`'s VMM-side bitmap of
///    device DMA), until the dirty set fits the downtime target at the measured
///    bandwidth. When the guest dirties faster than half the link carries, auto-converge
///    throttles its vCPUs harder each round.
/// 3. Stop-and-copy: pauses the VM, sends the last dirty pages and the vCPU, chipset,
///    PCI and device state in their suspend formats, and waits for the destination to
///    have built the VM; then sends "go" and stops here (`.migrated`).
///
/// Any failure before "go" (refusal, a broken link, a dead destination, cancel) turns
/// dirty logging off and resumes the VM here.
package final class MigrationSource: @unchecked Sendable {
    package struct Options: Sendable {
        /// The stop-and-copy time to aim for.
        package var downtimeMilliseconds: Double = 100
        /// Bytes per second; nil: as fast as the link goes.
        package var bandwidthLimit: Double?
        /// Throttle a guest that outruns the link (off by default: see `VCPUThrottle`).
        package var autoConverge = true
        /// Pre-copy rounds after which the VM switches over whatever is left.
        package var maximumRounds = 60
        package init() {}
    }

    let vm: VirtualMachine
    package let destination: MigrationAddress
    let options: Options
    let logger: Logger
    private let lock = HostLock()
    // [lock]
    private var current = MigrationProgress()
    private var stream: MigrationStream?
    private var cancelled = false
    private let startedAt = monotonicNanoseconds()

    init(vm: VirtualMachine, destination: MigrationAddress, options: Options, logger: Logger) {
        self.vm = vm
        self.destination = destination
        self.options = options
        self.logger = logger
    }

    package var vmName: String { vm.name }
    package var progress: MigrationProgress { lock.withLock { current } }
    package var statusLine: String { progress.line(vm: vm.name, destination: destination.description) }

    /// Stops the migration; the VM keeps running here. False once it switched over.
    @discardableResult
    package func cancel() -> Bool {
        lock.withLock {
            guard current.phase != .completed, current.phase != .stopped else { return false }
            cancelled = true
            stream?.abort()
            return true
        }
    }

    private func update(_ body: (inout MigrationProgress) -> Void) {
        lock.withLock {
            body(&current)
            current.elapsedMilliseconds = Double(monotonicNanoseconds() - startedAt) / 1e6
        }
    }

    private func checkCancelled() throws {
        if lock.withLock({ cancelled }) { throw MigrationError("cancelled") }
    }

    /// Runs the migration on the calling thread until it completes or fails.
    func run() {
        do {
            try migrate()
            update { $0.phase = .completed }
            logger.info("\(statusLine)")
        } catch {
            let wasCancelled = lock.withLock { cancelled }
            update { $0.phase = wasCancelled ? .cancelled : .failed("\(error)") }
            logger.error("\(statusLine)")
        }
        lock.withLock { stream = nil }
    }

    private func migrate() throws {
        for d in vm.devices {
            guard d.canSaveState else {
                throw MigrationError("\(d.context.prefix) (model '\(d.modelName)', plugin \(d.pluginName)) has no save_state/load_state")
            }
            if let held = d.function?.unsavedHostState {
                throw MigrationError("\(d.context.prefix) (model '\(d.modelName)') has \(held), which migrations do not carry yet")
            }
        }
        let s = try MigrationStream.connect(to: destination)
        s.bandwidthLimit = options.bandwidthLimit
        try lock.withLock {
            guard !cancelled else { throw MigrationError("cancelled") }
            stream = s
        }
        update { $0.phase = .checking }
        try s.sendHeader()
        try s.send("config", vm.configSection())
        let manifest = MigrationManifest(
            memoryBytes: vm.memory.size, vcpuCount: vm.runners.count,
            devices: vm.devices.map { .init(prefix: $0.context.prefix, model: $0.modelName, stateVersion: $0.stateVersion) })
        try s.send("manifest", manifest.encoded)
        try s.flush()
        try s.receiveVerdict()

        try vm.backend.setDirtyTracking(true)
        _ = vm.memory.takeDirtyPages()
        let throttle = VCPUThrottle(vm: vm)
        var paused = false
        do {
            let remaining = try precopy(s, throttle: throttle)
            throttle.stop()
            try checkCancelled()
            try vm.pause()
            paused = true
            let stoppedAt = monotonicNanoseconds()
            update { $0.phase = .stopped }
            // What the last round left, and what the guest wrote since.
            try sendPages(Array(Set(remaining).union(try dirtyPages())).sorted(), skipZero: false, on: s)
            try s.send("machine", vm.machineSection())
            for section in try vm.stateSections() { try s.send(section.name, version: section.version, section.payload) }
            try s.sendEnd()
            try s.receiveVerdict()
            try s.send("go", [])
            try s.flush()
            let downtime = Double(monotonicNanoseconds() - stoppedAt) / 1e6
            update { $0.downtimeMilliseconds = downtime }
        } catch {
            throttle.stop()
            try? vm.backend.setDirtyTracking(false)
            if paused { vm.resume() }
            throw error
        }
        vm.stop(.migrated(destination.description))
    }

    /// The first pass and the dirty rounds, until what is left fits the downtime target;
    /// returns the pages left dirty (their log is read, so stop-and-copy must send them).
    private func precopy(_ s: MigrationStream, throttle: VCPUThrottle) throws -> [UInt64] {
        let pageSize = Int(GuestMemory.pageSize)
        update {
            $0.phase = .copying
            $0.totalPages = vm.memory.regions.reduce(0) { $0 + Int($1.size / GuestMemory.pageSize) }
        }
        var roundStart = monotonicNanoseconds(), bytesAtStart = s.bytesSent, pagesAtStart = 0
        // Until measured: a page per microsecond.
        var secondsPerPage = 1e-6
        // First pass: every non-zero page.
        var batch = MigrationPageBatch()
        var looked = 0
        for region in vm.memory.regions {
            var gpa = region.guestAddress
            while gpa < region.guestAddress + region.size {
                if let p = vm.memory.pointer(at: gpa, length: pageSize), batch.add(gpa: gpa, page: p, skipZero: true), batch.isFull {
                    try flushBatch(&batch, on: s)
                    try checkCancelled()
                }
                gpa += GuestMemory.pageSize
                looked += 1
                if looked % 4096 == 0 {
                    let n = looked
                    update { $0.firstPassPages = n; $0.bytesSent = s.bytesSent }
                }
            }
        }
        try flushBatch(&batch, on: s)
        try s.flush()
        update { $0.firstPassPages = $0.totalPages }

        var round = 0
        while true {
            let dirty = try dirtyPages()
            let now = monotonicNanoseconds()
            let seconds = max(1e-6, Double(now - roundStart) / 1e9)
            let bytes = Double(s.bytesSent - bytesAtStart)
            let sentPages = progress.pagesSent - pagesAtStart
            // Zero and duplicate pages cost little on the wire, so the switch-over time is
            // estimated per page sent; a round too short to measure keeps the estimate.
            if sentPages >= 64 { secondsPerPage = seconds / Double(sentPages) }
            let bandwidth = bytes / seconds
            let rate = Double(dirty.count) / seconds
            let expected = Double(dirty.count) * secondsPerPage * 1000
            update {
                $0.round = round
                $0.remainingPages = dirty.count
                $0.dirtyPagesPerSecond = rate
                $0.bandwidth = bandwidth
                $0.expectedDowntimeMilliseconds = expected
                $0.bytesSent = s.bytesSent
            }
            logger.debug("\(statusLine)")
            if expected <= options.downtimeMilliseconds || round >= options.maximumRounds { return dirty }
            // The guest outruns the link when it dirties pages faster than half the rate
            // they go out at.
            if options.autoConverge, round >= 1, rate * secondsPerPage > 0.5 {
                let next = throttle.percent == 0 ? 20 : throttle.percent + 10
                throttle.set(percent: next)
                update { $0.throttlePercent = throttle.percent }
                let dirtied = (Int(rate) * pageSize) >> 20, carried = (Int(1 / secondsPerPage) * pageSize) >> 20
                logger.info("\(vm.name): migration round \(round): the guest dirties \(dirtied) MiB/s, pre-copy sends \(carried) MiB/s; throttling its vCPUs \(throttle.percent)%")
            }
            round += 1
            roundStart = now
            bytesAtStart = s.bytesSent
            pagesAtStart = progress.pagesSent
            try sendPages(dirty, skipZero: false, on: s)
            try checkCancelled()
        }
    }

    /// Guest-physical addresses of the pages written since the last call: KVM's log and
    /// the VMM-side bitmap (device DMA, host writes).
    private func dirtyPages() throws -> [UInt64] {
        var bits = vm.memory.takeDirtyPages()
        try vm.backend.collectDirtyPages(into: &bits)
        var pages: [UInt64] = []
        for region in vm.memory.regions {
            let first = Int(region.offset / GuestMemory.pageSize), count = Int(region.size / GuestMemory.pageSize)
            var i = first
            while i < first + count {
                let word = bits[i / 64]
                if word == 0 {
                    i = (i / 64 + 1) * 64
                    continue
                }
                if word & (1 << UInt64(i % 64)) != 0 {
                    pages.append(region.guestAddress + UInt64(i - first) * GuestMemory.pageSize)
                }
                i += 1
            }
        }
        return pages
    }

    private func sendPages(_ pages: [UInt64], skipZero: Bool, on s: MigrationStream) throws {
        var batch = MigrationPageBatch()
        for gpa in pages {
            guard let p = vm.memory.pointer(at: gpa, length: Int(GuestMemory.pageSize)) else { continue }
            batch.add(gpa: gpa, page: p, skipZero: skipZero)
            if batch.isFull { try flushBatch(&batch, on: s) }
        }
        try flushBatch(&batch, on: s)
        try s.flush()
    }

    private func flushBatch(_ batch: inout MigrationPageBatch, on s: MigrationStream) throws {
        guard !batch.isEmpty else { return }
        let count = batch.count, zero = batch.zeroPages, dup = batch.duplicatePages
        try s.send("pages", batch.take())
        batch = MigrationPageBatch()
        update {
            $0.pagesSent += count
            $0.zeroPages += zero
            $0.duplicatePages += dup
            $0.bytesSent = s.bytesSent
        }
    }
}
