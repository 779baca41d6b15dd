import Synchronization
@testable import HVDevices
@testable import HVHostIO
@testable import HVMemory
@testable import HVPluginHost
@testable import HVSupport

/// A `GuestPhysicalMapper` without KVM: records what the host bridge maps and unmaps,
/// lets a test play the guest's dirty log, and can refuse write notifiers.
final class RecordingMapper: GuestPhysicalMapper, @unchecked Sendable {
    enum Event: Equatable {
        case mapRAM(address: UInt64, size: UInt64, host: UInt)
        case unmapRAM(address: UInt64)
        case addNotifier(GuestWriteNotifier.Space, address: UInt64, size: Int, datamatch: UInt64?)
        case removeNotifier(GuestWriteNotifier.Space, address: UInt64)
    }

    private let state = Mutex<(events: [Event], nextID: UInt32, kernelDirty: [UInt32: [UInt64]])>(([], 100, [:]))
    var refuseNotifiers = false

    var events: [Event] { state.withLock { $0.events } }
    func clearEvents() { state.withLock { $0.events.removeAll() } }

    /// Pages the "guest" wrote through the mapping at `address` (as KVM's dirty log would show).
    func guestWrote(pages: [Int], inMappingAt address: UInt64) {
        state.withLock { s in
            guard let id = mappings.first(where: { $0.value == address })?.key else { return }
            var bits = s.kernelDirty[id] ?? []
            for p in pages {
                while bits.count <= p / 64 { bits.append(0) }
                bits[p / 64] |= 1 << UInt64(p % 64)
            }
            s.kernelDirty[id] = bits
        }
    }

    private var mappings: [UInt32: UInt64] = [:]

    func mapRAM(guestAddress: UInt64, size: UInt64, host: UnsafeMutableRawPointer) throws -> GuestRAMMapping {
        state.withLock { s in
            s.events.append(.mapRAM(address: guestAddress, size: size, host: UInt(bitPattern: host)))
            s.nextID += 1
            mappings[s.nextID] = guestAddress
            return GuestRAMMapping(id: s.nextID, guestAddress: guestAddress, size: size)
        }
    }

    func collectDirtyPages(of mapping: GuestRAMMapping, into dirty: inout [UInt64]) throws {
        let bits = state.withLock { s in s.kernelDirty.removeValue(forKey: mapping.id) ?? [] }
        for (i, w) in bits.enumerated() where i < dirty.count { dirty[i] |= w }
    }

    func unmapRAM(_ mapping: GuestRAMMapping) throws {
        state.withLock { s in
            s.events.append(.unmapRAM(address: mapping.guestAddress))
            mappings[mapping.id] = nil
        }
    }

    struct Refused: Error {}

    func addWriteNotifier(_ n: GuestWriteNotifier) throws {
        if refuseNotifiers { throw Refused() }
        state.withLock { $0.events.append(.addNotifier(n.space, address: n.address, size: n.size, datamatch: n.datamatch)) }
    }

    func removeWriteNotifier(_ n: GuestWriteNotifier) throws {
        state.withLock { $0.events.append(.removeNotifier(n.space, address: n.address)) }
    }
}
