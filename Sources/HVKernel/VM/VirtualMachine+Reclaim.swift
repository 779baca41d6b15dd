import Glibc
import HVMemory
import HVSupport

/// Memory reclamation for one VM, in ESX's order after page sharing: the balloon (the
/// guest picks the pages it can spare), then host swap (the VMkernel picks, the guest
/// does not know).
extension VirtualMachine {
    struct MemoryUse: Equatable {
        /// Host memory behind guest RAM (the memfd's blocks).
        var residentBytes: UInt64
        var balloon: Balloon.Statistics
        /// Pages in the swap file (SWCUR) and the counters; zero before the first swap-out.
        var swap: GuestSwap.Statistics
    }

    var memoryUse: MemoryUse {
        MemoryUse(residentBytes: memory.residentBytes, balloon: balloon.stats,
                  swap: swap.withLock { $0?.statistics } ?? GuestSwap.Statistics())
    }

    /// The balloon target (rounded down to pages); the guest driver sees it at its next poll.
    func setBalloonTarget(bytes: UInt64) {
        balloon.setTarget(pages: Int(bytes / GuestMemory.pageSize))
    }

    /// Swaps out up to `bytes` of resident guest memory and returns the pages that went.
    /// `referenced` (the dirty log, may be empty) gives recently written pages a second chance.
    @discardableResult
    func swapOut(bytes: UInt64, referenced: [UInt64] = []) throws -> Int {
        let swap = try swapFile()
        return try swap.swapOut(count: Int(bytes / GuestMemory.pageSize), referenced: referenced) { body in
            // No guest write may land between a page's copy and its punch.
            gate.close { for r in runners { r.vcpu.kick() } }
            defer { gate.open() }
            try body()
        }
    }

    /// Brings up to `bytes` of swapped memory back without waiting for the guest to touch it.
    @discardableResult
    func swapIn(bytes: UInt64) throws -> Int {
        guard let swap = swap.withLock({ $0 }) else { return 0 }
        return try swap.swapIn(count: Int(bytes / GuestMemory.pageSize))
    }

    /// Swap-in latencies (µs) since the previous call.
    func takeSwapInLatencies() -> [UInt32] { swap.withLock { $0 }?.takeSwapInLatencies() ?? [] }

    /// One step toward `targetBytes` of host memory for this VM: above it, the balloon
    /// is asked for the excess (when the guest driver runs) and what it cannot give —
    /// no driver, or a balloon that did not grow since the previous step — is swapped;
    /// below it, the balloon gives pages back.
    func reclaim(toward targetBytes: UInt64, referenced: [UInt64] = []) throws {
        let page = GuestMemory.pageSize
        let resident = memory.residentBytes
        let b = balloon.stats
        if resident <= targetBytes {
            // Room to spare: deflate by it (the guest touches what it gets back).
            let spare = Int((targetBytes - resident) / page)
            if b.target > 0, spare > 0 { balloon.setTarget(pages: max(0, b.target - spare)) }
            reclaimProgress.withLock { $0 = b.size }
            return
        }
        let excess = Int((resident - targetBytes + page - 1) / page)
        let stalled = reclaimProgress.withLock { last in
            defer { last = b.size }
            return b.target > b.size && last >= b.size
        }
        if b.started && !stalled {
            balloon.setTarget(pages: max(b.target, b.size + excess))
            return
        }
        try swapOut(bytes: UInt64(excess) * page, referenced: referenced)
    }

    private func swapFile() throws -> GuestSwap {
        try swap.withLock { s in
            if let s { return s }
            let dir = configuration.entry(forKey: "sched.swap.dir")?.value ?? configuration.directory
            let path = (dir.hasSuffix("/") ? dir : dir + "/") + "\(name).vswp"
            do {
                let created = try GuestSwap(memory: memory, path: path, name: name)
                s = created
                logger.info("\(name): swapping to \(path)")
                return created
            } catch {
                throw VMError("\(name): cannot swap to \(path) (sched.swap.dir): \(error)")
            }
        }
    }
}
