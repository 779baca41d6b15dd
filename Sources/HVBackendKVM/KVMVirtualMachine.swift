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

    /// A memslot for every region of `memory`, logging the pages the guest writes (the
    /// memory scheduler samples idleness from it).
    @discardableResult
    package func map(memory: GuestMemory) throws -> [GuestRAMMapping] {
        try memory.regions.map { region in
            let slot = try allocateSlot()
            try setUserMemoryRegion(slot: slot, flags: UInt32(KVM_MEM_LOG_DIRTY_PAGES), guestAddress: region.guestAddress,
                                    size: region.size, hostAddress: memory.hostAddress(of: region))
            return GuestRAMMapping(id: slot, guestAddress: region.guestAddress, size: region.size)
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
        let vcpu = try KVMVirtualCPU(fd: vcpufd, index: index, runMapSize: system.runMapSize,
                                     apicBase: lapicBase | (1 << 11) | (index == 0 ? 1 << 8 : 0))
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
