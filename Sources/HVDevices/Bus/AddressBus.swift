import Synchronization

/// Errors from registering regions on a bus.
enum BusError: Error, CustomStringConvertible, Equatable {
    case overlap(name: String, base: UInt64, size: UInt64, existing: String)
    case emptyRegion(name: String)

    var description: String {
        switch self {
        case let .overlap(name, base, size, existing):
            return "region '\(name)' at 0x\(String(base, radix: 16)) (+0x\(String(size, radix: 16))) overlaps '\(existing)'"
        case let .emptyRegion(name):
            return "region '\(name)' has size 0"
        }
    }
}

/// An ordered map of address ranges to bus devices, rejecting overlaps (the rust-vmm
/// bus shape); one type serves the port-I/O and the MMIO space. Lookups are a binary
/// search; registration is rare.
package final class AddressBus: Sendable {
    struct Region {
        let base: UInt64
        package let size: UInt64
        package let name: String
        let device: any BusDevice
        var end: UInt64 { base &+ size }   // exclusive
    }

    private let regions = Mutex<[Region]>([])

    package init() {}

    package func register(base: UInt64, size: UInt64, name: String, device: any BusDevice) throws {
        guard size > 0 else { throw BusError.emptyRegion(name: name) }
        try regions.withLock { list in
            for r in list where base < r.end && r.base < base &+ size {
                throw BusError.overlap(name: name, base: base, size: size, existing: r.name)
            }
            let index = list.firstIndex { $0.base > base } ?? list.endIndex
            list.insert(Region(base: base, size: size, name: name, device: device), at: index)
        }
    }

    /// Removes the region registered at exactly `base` for `device`.
    package func unregister(base: UInt64, device: any BusDevice) {
        regions.withLock { list in list.removeAll { $0.base == base && $0.device === device } }
    }

    /// The region covering `address`.
    func region(at address: UInt64) -> Region? {
        regions.withLock { list in
            var lo = 0, hi = list.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if list[mid].end <= address { lo = mid + 1 } else { hi = mid }
            }
            guard lo < list.count, list[lo].base <= address else { return nil }
            return list[lo]
        }
    }

    /// A guest read: the bytes a device decodes, 0xFF where nothing answers (an open
    /// bus, also for the part of an access that runs past its region's end).
    package func read(_ address: UInt64, data: UnsafeMutableRawBufferPointer) {
        guard let r = region(at: address) else {
            data.initializeMemory(as: UInt8.self, repeating: 0xFF)
            return
        }
        let inside = Int(min(UInt64(data.count), r.end &- address))
        r.device.read(offset: address - r.base, data: UnsafeMutableRawBufferPointer(rebasing: data[..<inside]))
        if inside < data.count {
            UnsafeMutableRawBufferPointer(rebasing: data[inside...]).initializeMemory(as: UInt8.self, repeating: 0xFF)
        }
    }

    /// A guest write; bytes nothing decodes are dropped.
    package func write(_ address: UInt64, data: UnsafeRawBufferPointer) {
        guard let r = region(at: address) else { return }
        let inside = Int(min(UInt64(data.count), r.end &- address))
        r.device.write(offset: address - r.base, data: UnsafeRawBufferPointer(rebasing: data[..<inside]))
    }

    /// `read` of `size` bytes as a little-endian integer.
    func read(_ address: UInt64, size: Int) -> UInt64 {
        var v: UInt64 = 0
        withUnsafeMutableBytes(of: &v) { read(address, data: UnsafeMutableRawBufferPointer(rebasing: $0[..<size])) }
        return v
    }

    /// `write` of the low `size` bytes of `value`.
    func write(_ address: UInt64, size: Int, value: UInt64) {
        var v = value.littleEndian
        withUnsafeBytes(of: &v) { write(address, data: UnsafeRawBufferPointer(rebasing: $0[..<size])) }
    }

    var snapshot: [Region] { regions.withLock { $0 } }
}

extension AddressBus.Region: @unchecked Sendable {}
