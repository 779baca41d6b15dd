/// The parts of the guest-physical address space that do not exit to the buses: host
/// memory mapped as guest RAM, and guest writes the backend completes itself by
/// signalling an eventfd. The execution backend's VM implements it; the PCI host
/// bridge calls it, under its lock, as the guest moves BARs or switches decoding.
package protocol GuestPhysicalMapper: AnyObject {
    /// Maps `size` bytes of host memory at `host` (page aligned, live until unmapped)
    /// as guest RAM at `guestAddress`, logging which pages the guest writes.
    func mapRAM(guestAddress: UInt64, size: UInt64, host: UnsafeMutableRawPointer) throws -> GuestRAMMapping
    /// ORs the pages the guest wrote since the previous call into `dirty` (bit i % 64 of
    /// word i / 64 = page i of the mapping) and clears the log.
    func collectDirtyPages(of mapping: GuestRAMMapping, into dirty: inout [UInt64]) throws
    func unmapRAM(_ mapping: GuestRAMMapping) throws
    /// Makes a guest write that matches `notifier` signal its eventfd without an exit.
    func addWriteNotifier(_ notifier: GuestWriteNotifier) throws
    func removeWriteNotifier(_ notifier: GuestWriteNotifier) throws
}

/// Host memory mapped as guest RAM; `id` is the backend's (a KVM memslot number).
package struct GuestRAMMapping: Hashable, Sendable {
    package let id: UInt32
    package let guestAddress: UInt64
    package let size: UInt64

    package init(id: UInt32, guestAddress: UInt64, size: UInt64) {
        self.id = id
        self.guestAddress = guestAddress
        self.size = size
    }
}

/// A guest write of exactly `size` bytes at `address` (of `datamatch`, when set) that
/// signals the eventfd `eventFD` instead of exiting.
package struct GuestWriteNotifier: Hashable, Sendable {
    package enum Space: Hashable, Sendable { case port, memory }
    package let space: Space
    package let address: UInt64
    package let size: Int
    package let datamatch: UInt64?
    package let eventFD: Int32

    package init(space: Space, address: UInt64, size: Int, datamatch: UInt64?, eventFD: Int32) {
        self.space = space
        self.address = address
        self.size = size
        self.datamatch = datamatch
        self.eventFD = eventFD
    }
}
