import Glibc
import Synchronization

/// glibc declares memfd_create only under _GNU_SOURCE, which the Glibc module does not
/// set; its C signature is stable, so bind it directly (as HostThread does for
/// pthread_setname_np).
@_silgen_name("memfd_create")
func hostMemfdCreate(_ name: UnsafePointer<CChar>, _ flags: UInt32) -> Int32

/// MFD_CLOEXEC from <linux/memfd.h>.
let memfdCloseOnExec: UInt32 = 0x0001

package enum GuestMemoryError: Error, CustomStringConvertible {
    case outOfRange(gpa: UInt64, length: Int)
    case system(call: String, errno: Int32)

    package var description: String {
        switch self {
        case let .outOfRange(gpa, length):
            return "guest-physical range 0x\(String(gpa, radix: 16)) (+\(length) bytes) is not RAM"
        case let .system(call, err):
            return "\(call) failed: \(String(cString: strerror(err)))"
        }
    }
}

/// Guest RAM: one memfd, mapped once into the VMM and split into KVM memslots around
/// the PCI hole (RAM above `lowMemoryLimit` moves to 4 GiB, as on a PC) and around
/// the device windows `exclude` leaves out before the backend maps memory.
/// Writes made by the VMM on the guest's behalf are recorded in a dirty bitmap that
/// migration merges with KVM's dirty log.
package final class GuestMemory: @unchecked Sendable {
    package struct Region: Sendable {
        package let guestAddress: UInt64
        package let size: UInt64
        /// Offset of this region inside the memfd and the host mapping.
        package let offset: UInt64
    }

    package static let pageSize: UInt64 = 4096
    /// Start of the 32-bit PCI/MMIO hole.
    package static let lowMemoryLimit: UInt64 = 0xC000_0000

    package let size: UInt64
    /// The RAM regions; changed only by `exclude`, before the backend maps them.
    private let layout: Mutex<[Region]>
    package var regions: [Region] { layout.withLock { $0 } }
    package let fd: Int32
    package let base: UnsafeMutableRawPointer
    private let dirty: Mutex<[UInt64]>

    package init(size: UInt64, name: String = "guest-ram") throws {
        precondition(size > 0 && size % GuestMemory.pageSize == 0)
        let fd = hostMemfdCreate(name, memfdCloseOnExec)
        guard fd >= 0 else { throw GuestMemoryError.system(call: "memfd_create", errno: errno) }
        guard ftruncate(fd, off_t(size)) == 0 else {
            let e = errno; close(fd)
            throw GuestMemoryError.system(call: "ftruncate", errno: e)
        }
        let p = mmap(nil, Int(size), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0)
        guard let p, p != MAP_FAILED else {
            let e = errno; close(fd)
            throw GuestMemoryError.system(call: "mmap", errno: e)
        }
        self.fd = fd
        self.base = p
        self.size = size
        let low = min(size, GuestMemory.lowMemoryLimit)
        var regions = [Region(guestAddress: 0, size: low, offset: 0)]
        if size > low {
            regions.append(Region(guestAddress: 0x1_0000_0000, size: size - low, offset: low))
        }
        self.layout = Mutex(regions)
        let pages = Int(size / GuestMemory.pageSize)
        self.dirty = Mutex([UInt64](repeating: 0, count: (pages + 63) / 64))
    }

    deinit {
        munmap(base, Int(size))
        close(fd)
    }

    /// Host address of the start of a region (for KVM_SET_USER_MEMORY_REGION).
    package func hostAddress(of region: Region) -> UInt64 {
        UInt64(UInt(bitPattern: base)) + region.offset
    }

    /// Leaves the page-aligned `range` out of guest RAM (a legacy device window): no
    /// region covers it any more, so the backend maps no memslot there and the VMM's
    /// accessors refuse it. Call before the backend maps memory; the memfd keeps the
    /// bytes, unused.
    package func exclude(_ range: Range<UInt64>) {
        precondition(range.lowerBound % GuestMemory.pageSize == 0 && range.upperBound % GuestMemory.pageSize == 0)
        layout.withLock { regions in
            regions = regions.flatMap { r -> [Region] in
                let end = r.guestAddress + r.size
                guard range.lowerBound < end, r.guestAddress < range.upperBound else { return [r] }
                var parts: [Region] = []
                if r.guestAddress < range.lowerBound {
                    parts.append(Region(guestAddress: r.guestAddress, size: range.lowerBound - r.guestAddress, offset: r.offset))
                }
                if range.upperBound < end {
                    parts.append(Region(guestAddress: range.upperBound, size: end - range.upperBound,
                                        offset: r.offset + (range.upperBound - r.guestAddress)))
                }
                return parts
            }
        }
    }

    /// Offset into the mapping of `length` bytes at `gpa`, or nil unless all of it is RAM
    /// inside one region.
    package func offset(of gpa: UInt64, length: Int) -> UInt64? {
        guard length >= 0 else { return nil }
        return layout.withLock { regions in
            for r in regions where gpa >= r.guestAddress {
                let rel = gpa - r.guestAddress
                if rel <= r.size, UInt64(length) <= r.size - rel { return r.offset + rel }
            }
            return nil
        }
    }

    /// A host pointer to `length` bytes at `gpa`, nil unless the whole range is RAM.
    package func pointer(at gpa: UInt64, length: Int) -> UnsafeMutableRawPointer? {
        offset(of: gpa, length: length).map { base + Int($0) }
    }

    package func contains(_ gpa: UInt64, length: Int) -> Bool { offset(of: gpa, length: length) != nil }

    package func read(at gpa: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws {
        guard let o = offset(of: gpa, length: buffer.count) else {
            throw GuestMemoryError.outOfRange(gpa: gpa, length: buffer.count)
        }
        if buffer.count > 0 { buffer.baseAddress!.copyMemory(from: base + Int(o), byteCount: buffer.count) }
    }

    package func write(at gpa: UInt64, from buffer: UnsafeRawBufferPointer) throws {
        guard let o = offset(of: gpa, length: buffer.count) else {
            throw GuestMemoryError.outOfRange(gpa: gpa, length: buffer.count)
        }
        if buffer.count > 0 {
            (base + Int(o)).copyMemory(from: buffer.baseAddress!, byteCount: buffer.count)
            markDirty(offset: o, length: UInt64(buffer.count))
        }
    }

    package func write(_ bytes: [UInt8], at gpa: UInt64) throws {
        try bytes.withUnsafeBytes { try write(at: gpa, from: $0) }
    }

    package func write(_ bytes: ArraySlice<UInt8>, at gpa: UInt64) throws {
        try bytes.withUnsafeBytes { try write(at: gpa, from: $0) }
    }

    /// Zeroes `count` bytes at `gpa` (all of it RAM) and marks them dirty.
    package func zero(at gpa: UInt64, count: UInt64) throws(GuestMemoryError) {
        guard count > 0 else { return }
        guard let o = offset(of: gpa, length: Int(count)) else {
            throw GuestMemoryError.outOfRange(gpa: gpa, length: Int(count))
        }
        memset(base + Int(o), 0, Int(count))
        markDirty(offset: o, length: count)
    }

    package func read(at gpa: UInt64, count: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        try out.withUnsafeMutableBytes { try read(at: gpa, into: $0) }
        return out
    }

    package func load<T: FixedWidthInteger>(_: T.Type, at gpa: UInt64) throws -> T {
        guard let p = pointer(at: gpa, length: MemoryLayout<T>.size) else {
            throw GuestMemoryError.outOfRange(gpa: gpa, length: MemoryLayout<T>.size)
        }
        return T(littleEndian: p.loadUnaligned(as: T.self))
    }

    package func store<T: FixedWidthInteger>(_ value: T, at gpa: UInt64) throws {
        try withUnsafeBytes(of: value.littleEndian) { try write(at: gpa, from: $0) }
    }

    /// Records that the VMM wrote `length` bytes at `gpa` (device DMA, mapped writes).
    package func markDirty(gpa: UInt64, length: Int) {
        if let o = offset(of: gpa, length: length) { markDirty(offset: o, length: UInt64(length)) }
    }

    private func markDirty(offset: UInt64, length: UInt64) {
        guard length > 0 else { return }
        let first = offset / GuestMemory.pageSize
        let last = (offset + length - 1) / GuestMemory.pageSize
        dirty.withLock { bits in
            for page in first...last { bits[Int(page / 64)] |= 1 << (page % 64) }
        }
    }

    /// Returns and clears the VMM-side dirty bitmap (bit = page index in the mapping).
    package func takeDirtyPages() -> [UInt64] {
        dirty.withLock { bits in
            defer { for i in bits.indices { bits[i] = 0 } }
            return bits
        }
    }
}
