import CKVM
import Glibc
import HVMemory

/// The run-time guest-physical mappings on KVM: RAM as extra memslots with dirty
/// logging, write notifiers as ioeventfds. One typed wrapper per ioctl.
extension KVMVirtualMachine: GuestPhysicalMapper {
    /// KVM_SET_USER_MEMORY_REGION: creates or changes memslot `slot`; size 0 deletes it.
    func setUserMemoryRegion(slot: UInt32, flags: UInt32, guestAddress: UInt64, size: UInt64,
                             hostAddress: UInt64) throws(KVMError) {
        var region = kvm_userspace_memory_region(slot: slot, flags: flags, guest_phys_addr: guestAddress,
                                                 memory_size: size, userspace_addr: hostAddress)
        guard ioctl(fd, CKVM_SET_USER_MEMORY_REGION, &region) == 0 else {
            let at = "0x" + String(guestAddress, radix: 16)
            throw KVMError(call: "KVM_SET_USER_MEMORY_REGION(slot \(slot), \(at), \(size) bytes)", errno: errno)
        }
    }

    /// KVM_GET_DIRTY_LOG: copies memslot `slot`'s dirty bitmap into `bitmap` (one bit
    /// per page, rounded up to 64) and clears it in the kernel.
    func getDirtyLog(slot: UInt32, into bitmap: UnsafeMutableBufferPointer<UInt64>) throws(KVMError) {
        var log = kvm_dirty_log()
        log.slot = slot
        log.dirty_bitmap = UnsafeMutableRawPointer(bitmap.baseAddress)
        guard ioctl(fd, CKVM_GET_DIRTY_LOG, &log) == 0 else {
            throw KVMError(call: "KVM_GET_DIRTY_LOG(slot \(slot))", errno: errno)
        }
    }

    /// KVM_IOEVENTFD: assigns (or, with KVM_IOEVENTFD_FLAG_DEASSIGN in `flags`, removes)
    /// an eventfd that a guest write of `length` bytes at `address` signals in the kernel.
    func ioeventfd(address: UInt64, length: UInt32, eventFD: Int32, flags: UInt32, datamatch: UInt64) throws(KVMError) {
        var request = kvm_ioeventfd()
        request.addr = address
        request.len = length
        request.fd = eventFD
        request.flags = flags
        request.datamatch = datamatch
        guard ioctl(fd, CKVM_IOEVENTFD, &request) == 0 else {
            let deassign = flags & CKVM_IOEVENTFD_FLAG_DEASSIGN != 0
            throw KVMError(call: "KVM_IOEVENTFD(\(deassign ? "deassign " : "")0x\(String(address, radix: 16)), \(length) bytes)",
                           errno: errno)
        }
    }

    // MARK: GuestPhysicalMapper

    package func mapRAM(guestAddress: UInt64, size: UInt64, host: UnsafeMutableRawPointer) throws -> GuestRAMMapping {
        let slot = try allocateSlot()
        do {
            try setUserMemoryRegion(slot: slot, flags: UInt32(KVM_MEM_LOG_DIRTY_PAGES), guestAddress: guestAddress,
                                    size: size, hostAddress: UInt64(UInt(bitPattern: host)))
        } catch {
            slots.withLock { $0.release(slot) }
            throw error
        }
        return GuestRAMMapping(id: slot, guestAddress: guestAddress, size: size)
    }

    package func collectDirtyPages(of mapping: GuestRAMMapping, into dirty: inout [UInt64]) throws {
        let pages = Int(mapping.size / GuestMemory.pageSize)
        var log = [UInt64](repeating: 0, count: (pages + 63) / 64)
        try log.withUnsafeMutableBufferPointer { buffer throws(KVMError) in try getDirtyLog(slot: mapping.id, into: buffer) }
        for i in 0..<min(log.count, dirty.count) { dirty[i] |= log[i] }
    }

    package func unmapRAM(_ mapping: GuestRAMMapping) throws {
        try setUserMemoryRegion(slot: mapping.id, flags: 0, guestAddress: mapping.guestAddress, size: 0, hostAddress: 0)
        slots.withLock { $0.release(mapping.id) }
    }

    package func addWriteNotifier(_ notifier: GuestWriteNotifier) throws {
        try ioeventfd(address: notifier.address, length: UInt32(notifier.size), eventFD: notifier.eventFD,
                      flags: Self.ioeventfdFlags(notifier), datamatch: notifier.datamatch ?? 0)
    }

    package func removeWriteNotifier(_ notifier: GuestWriteNotifier) throws {
        try ioeventfd(address: notifier.address, length: UInt32(notifier.size), eventFD: notifier.eventFD,
                      flags: Self.ioeventfdFlags(notifier) | CKVM_IOEVENTFD_FLAG_DEASSIGN, datamatch: notifier.datamatch ?? 0)
    }

    private static func ioeventfdFlags(_ n: GuestWriteNotifier) -> UInt32 {
        (n.space == .port ? CKVM_IOEVENTFD_FLAG_PIO : 0) | (n.datamatch != nil ? CKVM_IOEVENTFD_FLAG_DATAMATCH : 0)
    }
}
