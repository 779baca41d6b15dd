import HVSupport

/// The opaque handles plugins get (`hv_host *`, `hv_net_port *`, `hv_disk *`, state
/// writers and readers) are tokens of a table, not object addresses:
/// `magic << 48 | generation << 24 | slot + 1`. A lookup checks the kind's magic, the
/// slot and its generation, so a stale handle (its object gone), another kind's handle,
/// or a made-up value is found out and the service answers HV_EINVAL; no handle is ever
/// dereferenced. Objects are held weakly: a handle dies with its object.
final class PluginHandleTable<Object: AnyObject>: @unchecked Sendable {
    private struct Slot {
        weak var object: Object?
        var generation: UInt64
    }

    private let magic: UInt64
    private let lock = HostLock()
    // [lock]
    private var slots: [Slot] = []
    private var free: [Int] = []

    private static var slotBits: UInt64 { 24 }
    private static var mask24: UInt64 { (1 << 24) - 1 }

    /// `magic`: 16 bits naming the kind (never 0, so no handle is NULL).
    init(magic: UInt16) {
        precondition(magic != 0)
        self.magic = UInt64(magic)
    }

    func register(_ object: Object) -> OpaquePointer {
        lock.withLock {
            let index: Int
            if let reused = free.popLast() {
                index = reused
                slots[index].object = object
            } else {
                precondition(slots.count < Int(Self.mask24), "out of plugin handles")
                index = slots.count
                slots.append(Slot(object: object, generation: 1))
            }
            let token = magic << 48 | (slots[index].generation & Self.mask24) << Self.slotBits | UInt64(index + 1)
            return OpaquePointer(bitPattern: UInt(token))!
        }
    }

    /// The live object `handle` names, or nil (NULL, stale, foreign, made up).
    func lookup(_ handle: OpaquePointer?) -> Object? {
        guard let handle else { return nil }
        let token = UInt64(UInt(bitPattern: handle))
        guard token >> 48 == magic else { return nil }
        let index = Int(token & Self.mask24) - 1
        let generation = (token >> Self.slotBits) & Self.mask24
        return lock.withLock {
            guard index >= 0, index < slots.count, slots[index].generation & Self.mask24 == generation else { return nil }
            return slots[index].object
        }
    }

    /// Ends `handle`: later lookups of it fail, and its slot is reused under a new generation.
    func release(_ handle: OpaquePointer) {
        let token = UInt64(UInt(bitPattern: handle))
        let index = Int(token & Self.mask24) - 1
        lock.withLock {
            guard token >> 48 == magic, index >= 0, index < slots.count,
                  slots[index].generation & Self.mask24 == (token >> Self.slotBits) & Self.mask24 else { return }
            slots[index].object = nil
            slots[index].generation &+= 1
            if slots[index].generation & Self.mask24 == 0 { slots[index].generation = 1 }
            free.append(index)
        }
    }
}
