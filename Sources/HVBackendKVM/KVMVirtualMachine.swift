import CKVM
import Glibc
import HVMemory
import Synchronization

/// A KVM VM file descriptor: memslots (KVM_SET_USER_MEMORY_REGION), vCPU creation
/// (KVM_CREATE_VCPU), and the run-time mappings of `GuestPhysicalMapper`.
package final class KVMVirtualMachine: VirtualMachineBackend, @unchecked Sendable {
    let fd: Int32
    let system: KVMSystem
    /// Memslot numbers: boot RAM takes the first ones for good, run-time mappings
    /// (RAM BARs) take and give back the others.
    let slots: Mutex<MemorySlotAllocator>
    /// The memslots `map(memory:)` made, with the region each maps (for dirty logging).
    private let bootSlots = Mutex<[(slot: UInt32, region: GuestMemory.Region)]>([])
    /// KVM's dirty log of guest RAM has two readers, live migration and the memory
    /// scheduler's idleness sampling; reading clears KVM's copy, so each read ORs it into
    /// both. `migration` is nil while no migration tracks writes.
    private struct DirtyLog {
        var sampling: [UInt64] = []
        var migration: [UInt64]?
    }
    private let dirtyLog = Mutex(DirtyLog())
    /// The RAM `map(memory:)` mapped, for what a vCPU does in the guest's place
    /// (`ProtectedModeInterrupts`).
    private let memory = Mutex<GuestMemory?>(nil)

    init(system: KVMSystem, fd: Int32) throws {
        self.system = system
        self.fd = fd
        // 0 means an old kernel's fixed 32.
        let limit = system.checkExtension(KVM_CAP_NR_MEMSLOTS)
        slots = Mutex(MemorySlotAllocator(limit: limit > 0 ? UInt32(limit) : 32))
        // Intel VMX needs a 3-page TSS and an identity-map page for real mode; place them
        // in the top of the 32-bit hole, away from RAM and device windows. Other backends
        // (AMD, PVM) reject or ignore these, which is harmless.
        _ = ioctl(fd, CKVM_SET_TSS_ADDR, CInt(bitPattern: 0xFFFB_D000))
        var identity: UInt64 = 0xFFFB_C000
        _ = ioctl(fd, CKVM_SET_IDENTITY_MAP_ADDR, &identity)
    }

    deinit { close(fd) }

    /// A memslot for every region of `memory`, logging the pages the guest writes.
    package func map(memory: GuestMemory) throws {
        let pages = Int(memory.size / GuestMemory.pageSize)
        dirtyLog.withLock { $0.sampling = [UInt64](repeating: 0, count: (pages + 63) / 64) }
        self.memory.withLock { $0 = memory }
        for region in memory.regions {
            let slot = try allocateSlot()
            try setUserMemoryRegion(slot: slot, flags: UInt32(KVM_MEM_LOG_DIRTY_PAGES), guestAddress: region.guestAddress,
                                    size: region.size, hostAddress: memory.hostAddress(of: region))
            bootSlots.withLock { $0.append((slot, region)) }
        }
    }

    /// Starts (with a clean slate: the first `collectDirtyPages(into:)` reports the writes
    /// since) or stops keeping the pages written for live migration.
    package func setDirtyTracking(_ on: Bool) throws {
        try dirtyLog.withLock { log in
            try harvest(into: &log)
            log.migration = on ? [UInt64](repeating: 0, count: log.sampling.count) : nil
        }
    }

    /// ORs the RAM pages the guest wrote since the previous call into `dirty` (bit =
    /// page index in `GuestMemory`'s mapping, as `GuestMemory.takeDirtyPages`). Tracking
    /// must be on.
    package func collectDirtyPages(into dirty: inout [UInt64]) throws {
        try dirtyLog.withLock { log in
            try harvest(into: &log)
            guard let written = log.migration else { return }
            for (i, word) in written.enumerated() where word != 0 && i < dirty.count { dirty[i] |= word }
            log.migration = [UInt64](repeating: 0, count: written.count)
        }
    }

    /// How many RAM pages the guest wrote since the previous call (idleness sampling).
    package func takeWrittenPageCount() throws -> Int {
        try dirtyLog.withLock { log in
            try harvest(into: &log)
            defer { log.sampling = [UInt64](repeating: 0, count: log.sampling.count) }
            return log.sampling.reduce(0) { $0 + $1.nonzeroBitCount }
        }
    }

    /// Reads (and so clears) KVM's dirty log of every RAM slot into both readers' bitmaps.
    private func harvest(into log: inout DirtyLog) throws {
        for s in bootSlots.withLock({ $0 }) {
            let pages = Int(s.region.size / GuestMemory.pageSize)
            var words = [UInt64](repeating: 0, count: (pages + 63) / 64)
            try words.withUnsafeMutableBufferPointer { buffer throws(KVMError) in try getDirtyLog(slot: s.slot, into: buffer) }
            let first = Int(s.region.offset / GuestMemory.pageSize)
            for (w, word) in words.enumerated() where word != 0 {
                var bits = word
                while bits != 0 {
                    let page = first + w * 64 + bits.trailingZeroBitCount
                    bits &= bits - 1
                    guard page / 64 < log.sampling.count else { continue }
                    log.sampling[page / 64] |= 1 << UInt64(page % 64)
                    log.migration?[page / 64] |= 1 << UInt64(page % 64)
                }
            }
        }
    }

    func allocateSlot() throws(KVMError) -> UInt32 {
        guard let slot = slots.withLock({ $0.allocate() }) else {
            throw KVMError(call: "KVM_SET_USER_MEMORY_REGION", errno: ENOSPC, hint: "every KVM memslot is in use")
        }
        return slot
    }

    /// KVM_CREATE_VCPU + KVM_SET_CPUID2.
    package func makeVCPU(index: Int, cpuid: CPUIDPolicy, lapicBase: UInt64) throws -> VirtualCPU {
        let vcpufd = ioctl(fd, CKVM_CREATE_VCPU, CInt(index))
        guard vcpufd >= 0 else { throw KVMError(call: "KVM_CREATE_VCPU(\(index))", errno: errno) }
        let ram = ProtectedModeInterrupts.RAM(
            read: { [weak self] address, count in try? self?.memory.withLock { $0 }?.read(at: address, count: count) },
            write: { [weak self] address, bytes in
                guard let memory = self?.memory.withLock({ $0 }) else { return false }
                return (try? memory.write(bytes, at: address)) != nil
            })
        let vcpu = try KVMVirtualCPU(fd: vcpufd, index: index, runMapSize: system.runMapSize,
                                     apicBase: lapicBase | (1 << 11) | (index == 0 ? 1 << 8 : 0), ram: ram)
        var entries = system.supportedCPUID
        cpuid.apply(to: &entries, index: index)
        try vcpu.setCPUID(entries)
        return vcpu
    }
}

/// Memslot numbers below `limit` (KVM_CAP_NR_MEMSLOTS): the lowest free one first.
struct MemorySlotAllocator {
    let limit: UInt32
    private var next: UInt32 = 0
    private var free: [UInt32] = []

    init(limit: UInt32) { self.limit = limit }

    mutating func allocate() -> UInt32? {
        if let i = free.indices.min(by: { free[$0] < free[$1] }) { return free.remove(at: i) }
        guard next < limit else { return nil }
        defer { next += 1 }
        return next
    }

    mutating func release(_ slot: UInt32) {
        precondition(slot < next && !free.contains(slot), "memslot \(slot) released twice")
        free.append(slot)
    }
}
