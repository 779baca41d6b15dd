import Glibc
import HVMemory
import HVSupport

/// Memory reclamation for one VM, in ESX's order after page sharing: the balloon (the
/// guest picks the pages it can spare), then host swap (the VMkernel picks, the guest
/// does not know). The memory scheduler drives both through `VMReclaimers`.
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

    /// Swaps out up to `bytes` of the VM's private resident memory (not pages page
    /// sharing maps) and returns the pages that went. `referenced` (the dirty log, may be
    /// empty) gives recently written pages a second chance.
    @discardableResult
    func swapOut(bytes: UInt64, referenced: [UInt64] = []) throws -> Int {
        let swap = try swapFile()
        let privatePages = sharing.withLock { $0 }.map { $0.scanner.privatePages(of: $0.member) }
        return try swap.swapOut(count: Int(bytes / GuestMemory.pageSize), referenced: referenced,
                                excluded: { page in privatePages.map { page >= $0.count || !$0[page] } ?? false }) { body in
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
