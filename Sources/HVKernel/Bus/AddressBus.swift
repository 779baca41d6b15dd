import Synchronization

/// Errors from registering regions on a bus.
public enum BusError: Error, CustomStringConvertible, Equatable {
    case overlap(name: String, base: UInt64, size: UInt64, existing: String)
    case emptyRegion(name: String)

    public var description: String {
        switch self {
        case let .overlap(name, base, size, existing):
            return "region '\(name)' at 0x\(String(base, radix: 16)) (+0x\(String(size, radix: 16))) overlaps '\(existing)'"
        case let .emptyRegion(name):
            return "region '\(name)' has size 0"
        }
    }
}

/// An ordered map of address ranges to handlers, rejecting overlaps
/// (the rust-vmm bus shape). Lookups are a binary search; registration is rare.
public final class AddressBus<Handler>: Sendable {
    public struct Region {
        public let base: UInt64
        public let size: UInt64
        public let name: String
        public let handler: Handler
        var end: UInt64 { base &+ size }   // exclusive
    }

    private let regions = Mutex<[Region]>([])

    public init() {}

    public func register(base: UInt64, size: UInt64, name: String, handler: Handler) throws {
        guard size > 0 else { throw BusError.emptyRegion(name: name) }
        try regions.withLock { list in
            for r in list where base < r.end && r.base < base &+ size {
                throw BusError.overlap(name: name, base: base, size: size, existing: r.name)
            }
            let index = list.firstIndex { $0.base > base } ?? list.endIndex
            list.insert(Region(base: base, size: size, name: name, handler: handler), at: index)
        }
    }

    /// Removes the region registered at exactly `base` with `handler`.
    public func unregister(base: UInt64, handler: Handler) {
        regions.withLock { list in
            list.removeAll { $0.base == base && ($0.handler as AnyObject) === (handler as AnyObject) }
        }
    }

    /// The handler covering `address` and the offset into its region.
    public func lookup(_ address: UInt64) -> (handler: Handler, offset: UInt64)? {
        regions.withLock { list in
            var lo = 0, hi = list.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if list[mid].end <= address { lo = mid + 1 } else { hi = mid }
            }
            guard lo < list.count, list[lo].base <= address else { return nil }
            return (list[lo].handler, address - list[lo].base)
        }
    }

    public var snapshot: [Region] { regions.withLock { $0 } }
}

extension AddressBus.Region: @unchecked Sendable {}
public typealias PortIOBus = AddressBus<any PortIOHandler>
public typealias MMIOBus = AddressBus<any MMIOHandler>
