import Glibc
import HVMemory
import HVSupport

/// A memory BAR that is host RAM. While it decodes, the backend maps the RAM at the
/// BAR's address (no exits; the backend logs the guest's writes); an access that still
/// reaches the bus (no backend, or the backend refused) reads and writes the same
/// memory, and its writes are logged here. The memory lives as long as this object.
package final class PCIRAMBAR: BusDevice, PCIBARBinding, @unchecked Sendable {
    let memory: SharedMemoryRegion
    package let pageCount: Int
    /// Told the first time the backend refuses a mapping or a dirty-log query (the
    /// guest chooses where the BAR goes, so it must not be able to flood the log).
    package var onBackendError: ((String) -> Void)?
    private var reported = false
    private let lock = HostLock()
    private var mapping: GuestRAMMapping?
    private weak var mapper: GuestPhysicalMapper?
    /// Pages written through exits, and every page after the mapping went away.
    private var dirty: [UInt64]

    package init(memory: SharedMemoryRegion) {
        self.memory = memory
        pageCount = Int(memory.size / GuestMemory.pageSize)
        dirty = [UInt64](repeating: 0, count: (pageCount + 63) / 64)
    }

    /// The address the backend maps the RAM at now, nil when it does not.
    var mappedAddress: UInt64? { lock.withLock { mapping?.guestAddress } }

    package func bind(at base: UInt64, space: GuestWriteNotifier.Space, mapper: GuestPhysicalMapper) {
        lock.withLock {
            do {
                mapping = try mapper.mapRAM(guestAddress: base, size: memory.size, host: memory.base)
                self.mapper = mapper
            } catch {
                report("cannot map the RAM BAR at 0x\(String(base, radix: 16)) (there the guest reaches it only through exits, and not where its own RAM is): \(error)")
            }
        }
    }

    package func unbind(mapper: GuestPhysicalMapper) {
        lock.withLock {
            guard let m = mapping else { return }
            mapping = nil
            self.mapper = nil
            // The guest may write between a last dirty-log read and the unmap, and those
            // writes would be lost: count every page.
            markAllDirty()
            do { try mapper.unmapRAM(m) } catch {
                report("cannot unmap the RAM BAR at 0x\(String(m.guestAddress, radix: 16)): \(error)")
            }
        }
    }

    /// The pages written since the previous call (bit i = page i), cleared.
    package func takeDirtyPages() -> [UInt64] {
        lock.withLock {
            var pages = dirty
            for i in dirty.indices { dirty[i] = 0 }
            if let m = mapping, let mapper {
                do { try mapper.collectDirtyPages(of: m, into: &pages) } catch {
                    report("cannot read the RAM BAR's dirty log: \(error)")
                    markAll(&pages)
                }
            }
            return pages
        }
    }

    /// Lock held.
    private func report(_ message: String) {
        guard !reported else { return }
        reported = true
        onBackendError?(message)
    }

    private func markAllDirty() { markAll(&dirty) }

    private func markAll(_ bits: inout [UInt64]) {
        for page in 0..<pageCount { bits[page / 64] |= 1 << UInt64(page % 64) }
    }

    // MARK: accesses through exits (the bus clips them to the BAR)

    package func read(offset: UInt64, data: UnsafeMutableRawBufferPointer) {
        guard let dst = data.baseAddress else { return }
        dst.copyMemory(from: memory.base + Int(offset), byteCount: data.count)
    }

    package func write(offset: UInt64, data: UnsafeRawBufferPointer) {
        guard let src = data.baseAddress, data.count > 0 else { return }
        (memory.base + Int(offset)).copyMemory(from: src, byteCount: data.count)
        let first = Int(offset / GuestMemory.pageSize), last = Int((offset + UInt64(data.count) - 1) / GuestMemory.pageSize)
        lock.withLock { for page in first...last { dirty[page / 64] |= 1 << UInt64(page % 64) } }
    }
}
