import HVDevices
import HVMemory
import HVSupport

/// The VMkernel side of VMware's balloon (the protocol Linux's `vmw_balloon` speaks on
/// port 0x5670): the VMkernel sets a target in pages; the guest driver polls it,
/// allocates that many of its pages and LOCKs them, and the VMkernel gives their host
/// memory back (the memfd hole reads zero). UNLOCK hands a page back to the guest,
/// zero-filled. Every PPN is the guest's word: pages outside RAM, locked twice or
/// unlocked without a lock get the protocol's error codes, never a host action.
final class Balloon: @unchecked Sendable {
    enum Command: UInt16 {
        case start = 0, getTarget = 1, lock = 2, unlock = 3, guestID = 4
        case batchedLock = 6, batchedUnlock = 7
    }

    enum Status: UInt32 {
        case success = 0
        case commandInvalid = 1
        case ppnInvalid = 2
        case ppnLocked = 3
        case ppnUnlocked = 4
        case ppnNotNeeded = 6
        case reset = 7
        /// START's answer when the host states its capabilities (in ECX).
        case successWithCapabilities = 0x0300_0000
    }

    /// Capability bits (START): LOCK/UNLOCK, and the batched forms.
    static let basicCommands: UInt32 = 1 << 1
    static let batchedCommands: UInt32 = 1 << 2
    static let capabilities = basicCommands | batchedCommands
    /// Entries in a batch page: one u64 per page, status in bits 0-4, PPN in bits 12-63.
    static let batchCapacity = Int(GuestMemory.pageSize / 8)

    struct Statistics: Equatable {
        /// Pages in the balloon (MCTLSZ).
        var size = 0
        var target = 0
        var locks: UInt64 = 0
        var unlocks: UInt64 = 0
        /// Requests answered with an error status.
        var refused: UInt64 = 0
        var guestType: UInt32?
        var started = false
    }

    private let memory: GuestMemory
    private let lock = HostLock()
    // [lock]
    private var locked: [Bool]
    private var statistics = Statistics()
    private var negotiated: UInt32 = 0
    /// Called (outside the lock) for each page the balloon took, by mapping page index:
    /// the swap forgets it.
    var pageTaken: ((Int) -> Void)?
    /// Called for a page the balloon took that page sharing had mapped privately (it is
    /// the memfd's again): page sharing forgets it.
    var pageRemapped: ((Int) -> Void)?

    init(memory: GuestMemory) {
        self.memory = memory
        locked = [Bool](repeating: false, count: Int(memory.size / GuestMemory.pageSize))
    }

    var stats: Statistics { lock.withLock { statistics } }

    /// Sets the balloon target in pages (clamped to RAM); the guest sees it at its next poll.
    func setTarget(pages: Int) {
        lock.withLock { statistics.target = max(0, min(pages, locked.count)) }
    }

    /// One call on the balloon port (EAX already checked for the balloon's magic).
    func call(_ r: inout BackdoorRegisters) {
        let status: Status
        var result: UInt64? = nil
        switch Command(rawValue: UInt16(truncatingIfNeeded: r.rcx)) {
        case .start:
            status = start(requested: UInt32(truncatingIfNeeded: r.rbx))
            r.rcx = UInt64(Self.capabilities)
        case .guestID:
            lock.withLock { statistics.guestType = UInt32(truncatingIfNeeded: r.rbx) }
            status = .success
        case .getTarget:
            (status, result) = targetReply()
        case .lock, .unlock:
            let locking = UInt16(truncatingIfNeeded: r.rcx) == Command.lock.rawValue
            (status, result) = single(ppn: UInt64(UInt32(truncatingIfNeeded: r.rbx)), locking: locking)
        case .batchedLock, .batchedUnlock:
            let locking = UInt16(truncatingIfNeeded: r.rcx) == Command.batchedLock.rawValue
            (status, result) = batch(ppn: r.rbx, count: r.rsi, locking: locking)
        case nil:
            status = .commandInvalid
        }
        if status != .success && status != .successWithCapabilities { lock.withLock { statistics.refused += 1 } }
        r.rax = UInt64(status.rawValue)
        if let result { r.rbx = result }
    }

    /// START (the driver's reset): the guest has dropped its balloon without unlocking,
    /// so every page it held is its own again (still a hole: it reads zero).
    private func start(requested: UInt32) -> Status {
        lock.withLock {
            for i in locked.indices where locked[i] { locked[i] = false }
            statistics.size = 0
            statistics.started = true
            negotiated = requested & Self.capabilities | Self.basicCommands
        }
        return .successWithCapabilities
    }

    private func targetReply() -> (Status, UInt64?) {
        lock.withLock {
            statistics.started ? (.success, UInt64(statistics.target)) : (.reset, nil)
        }
    }

    private func single(ppn: UInt64, locking: Bool) -> (Status, UInt64?) {
        guard lock.withLock({ statistics.started }) else { return (.reset, nil) }
        let status = change(ppn: ppn, locking: locking)
        return (status, lock.withLock { UInt64(statistics.target) })
    }

    /// A batch page of `count` entries at PPN `ppn`: each entry gets its own status; the
    /// call succeeds when the batch itself is readable.
    private func batch(ppn: UInt64, count: UInt64, locking: Bool) -> (Status, UInt64?) {
        let (started, batched) = lock.withLock { (statistics.started, negotiated & Self.batchedCommands != 0) }
        guard started else { return (.reset, nil) }
        guard batched else { return (.commandInvalid, nil) }
        guard ppn < (1 << 52), count <= UInt64(Self.batchCapacity),
              let page = memory.offset(of: ppn << 12, length: Int(GuestMemory.pageSize)),
              !lock.withLock({ locked[Int(page / GuestMemory.pageSize)] }) else {
            return (.ppnInvalid, nil)
        }
        for i in 0..<Int(count) {
            let at = (ppn << 12) + UInt64(i * 8)
            guard let entry = try? memory.load(UInt64.self, at: at) else { return (.ppnInvalid, nil) }
            // The batch page itself cannot go: the statuses are written into it.
            let status = entry >> 12 == ppn ? .ppnInvalid : change(ppn: entry >> 12, locking: locking)
            try? memory.store(entry & ~0x1F | UInt64(status.rawValue), at: at)
        }
        return (.success, lock.withLock { UInt64(statistics.target) })
    }

    private func change(ppn: UInt64, locking: Bool) -> Status {
        guard ppn < (1 << 52), let offset = memory.offset(of: ppn << 12, length: Int(GuestMemory.pageSize)) else {
            return .ppnInvalid
        }
        let page = Int(offset / GuestMemory.pageSize)
        let status: Status = lock.withLock {
            if locking {
                guard !locked[page] else { return .ppnLocked }
                guard statistics.size < statistics.target else { return .ppnNotNeeded }
                locked[page] = true
                statistics.size += 1
                statistics.locks += 1
            } else {
                guard locked[page] else { return .ppnUnlocked }
                locked[page] = false
                statistics.size -= 1
                statistics.unlocks += 1
            }
            return .success
        }
        guard status == .success, locking else { return status }
        // The page is the balloon's: its bytes no longer matter, its host memory goes.
        pageTaken?(page)
        if (try? memory.releaseWhateverMapsIt(page: page)) == true { pageRemapped?(page) }
        return .success
    }

    // MARK: Suspend

    static let stateVersion: UInt32 = 1

    /// Target, negotiated capabilities and the locked pages (mapping page indices).
    func saveState() -> [UInt8] {
        lock.withLock {
            var e = StateEncoder()
            e.bool(statistics.started)
            e.u32(negotiated)
            e.u64(UInt64(statistics.target))
            e.u32(statistics.guestType ?? 0)
            e.u64(UInt64(statistics.size))
            for i in locked.indices where locked[i] { e.u64(UInt64(i)) }
            return e.bytes
        }
    }

    /// Restores what `saveState` wrote; the locked pages were zero, so the restored
    /// memfd has no host memory behind them already.
    func loadState(_ payload: [UInt8], context: String) throws {
        var d = StateDecoder(payload, context: context)
        let started = try d.bool(), negotiated = try d.u32(), target = try d.u64(), guestType = try d.u32()
        let count = try d.u64()
        guard count <= UInt64(locked.count), target <= UInt64(locked.count) else {
            throw StateDecodingError("\(context): \(count) locked pages, target \(target): more than RAM")
        }
        var pages: [Int] = []
        for _ in 0..<count {
            let page = try d.u64()
            guard page < UInt64(locked.count) else { throw StateDecodingError("\(context): locked page \(page) outside RAM") }
            pages.append(Int(page))
        }
        lock.withLock {
            for p in pages { locked[p] = true }
            statistics.size = pages.count
            statistics.target = Int(target)
            statistics.started = started
            statistics.guestType = started ? guestType : nil
            self.negotiated = negotiated
        }
    }
}
