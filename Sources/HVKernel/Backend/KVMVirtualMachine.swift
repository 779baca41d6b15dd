import CKVM
import Glibc

/// A KVM VM file descriptor: memslots (KVM_SET_USER_MEMORY_REGION) and vCPU creation
/// (KVM_CREATE_VCPU).
public final class KVMVirtualMachine: VirtualMachineBackend, @unchecked Sendable {
    public let fd: Int32
    let system: KVMSystem
    /// Memslots assigned so far; the next region gets this number.
    private var slotCount: UInt32 = 0

    init(system: KVMSystem, fd: Int32) throws {
        self.system = system
        self.fd = fd
        // Intel VMX needs a 3-page TSS and an identity-map page for real mode; place them
        // in the top of the 32-bit hole, away from RAM and device windows. Other backends
        // (AMD, PVM) reject or ignore these, which is harmless.
        _ = ioctl(fd, CKVM_SET_TSS_ADDR, CInt(bitPattern: 0xFFFB_D000))
        var identity: UInt64 = 0xFFFB_C000
        _ = ioctl(fd, CKVM_SET_IDENTITY_MAP_ADDR, &identity)
    }

    deinit { close(fd) }

    /// KVM_SET_USER_MEMORY_REGION for every region of `memory`.
    public func map(memory: GuestMemory) throws {
        for region in memory.regions {
            let slot = slotCount
            var r = kvm_userspace_memory_region(
                slot: slot, flags: 0, guest_phys_addr: region.guestAddress,
                memory_size: region.size, userspace_addr: memory.hostAddress(of: region))
            guard ioctl(fd, CKVM_SET_USER_MEMORY_REGION, &r) == 0 else {
                throw KVMError(call: "KVM_SET_USER_MEMORY_REGION(slot \(slot))", errno: errno)
            }
            slotCount += 1
        }
    }

    /// KVM_CREATE_VCPU + KVM_SET_CPUID2.
    public func makeVCPU(index: Int, cpuid: CPUIDPolicy, lapicBase: UInt64) throws -> VirtualCPU {
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
