import HVMemory
import HVSupport
import Synchronization

/// A doorbell register in a BAR: a guest write of exactly `size` bytes at `offset` (of
/// `datamatch`, when set) signals `event`, and the write goes no further. While the BAR
/// decodes, the backend is asked to signal it itself (KVM_IOEVENTFD: no exit); a write
/// that still reaches the bus (no backend, or the backend refused) signals it here, so
/// the device sees the same either way. Other accesses to the register pass on.
package final class PCIDoorbell: PCIBARWindow, PCIBARBinding, @unchecked Sendable {
    package let bar: Int
    package let offset: UInt64
    package let size: Int
    package let datamatch: UInt64?
    package let event: EventFD
    /// Told after each binding: true when the backend completes the writes itself,
    /// false (with the error) when they exit and are signalled here.
    package var onBind: ((Bool, Error?) -> Void)?
    /// Told when the backend refuses to remove the notifier.
    package var onUnbindError: ((Error) -> Void)?
    /// [host bridge lock]
    private var notifier: GuestWriteNotifier?
    private let completedInBackend = Atomic<Bool>(false)

    package init(bar: Int, offset: UInt64, size: Int, datamatch: UInt64?, event: EventFD) {
        self.bar = bar
        self.offset = offset
        self.size = size
        self.datamatch = datamatch
        self.event = event
    }

    /// Whether guest writes are completed by the backend (no exit) right now.
    package var inBackend: Bool { completedInBackend.load(ordering: .relaxed) }

    var range: Range<UInt64> { offset..<offset + UInt64(size) }

    /// KVM refuses two eventfds on the same address and length unless both match
    /// different values; the exit path keeps the same rule.
    func collides(with other: PCIDoorbell) -> Bool {
        guard bar == other.bar, offset == other.offset, size == other.size else { return false }
        guard let mine = datamatch, let theirs = other.datamatch else { return true }
        return mine == theirs
    }

    package func read(offset: UInt64, data: UnsafeMutableRawBufferPointer) -> Bool { false }

    package func write(offset: UInt64, data: UnsafeRawBufferPointer) -> Bool {
        guard offset == self.offset, data.count == size else { return false }
        if let datamatch, data.littleEndianValue != datamatch { return false }
        event.signal()
        return true
    }

    package func bind(at base: UInt64, space: GuestWriteNotifier.Space, mapper: GuestPhysicalMapper) {
        let n = GuestWriteNotifier(space: space, address: base + offset, size: size, datamatch: datamatch, eventFD: event.fd)
        do {
            try mapper.addWriteNotifier(n)
            notifier = n
            completedInBackend.store(true, ordering: .relaxed)
            onBind?(true, nil)
        } catch {
            onBind?(false, error)
        }
    }

    package func unbind(mapper: GuestPhysicalMapper) {
        guard let n = notifier else { return }
        notifier = nil
        completedInBackend.store(false, ordering: .relaxed)
        do { try mapper.removeWriteNotifier(n) } catch { onUnbindError?(error) }
    }
}
