/// What a teaming policy sees of a frame a vNIC sends out of the switch (`hv_frame_info`).
/// Addresses are 48-bit keys (first octet most significant); IPv4 addresses are in host
/// order; IPv6 addresses are the 16 wire bytes as two big-endian halves. Fields a frame
/// does not have are 0.
package struct TeamingFrameInfo: Sendable, Equatable {
    package var sourcePort: UInt32 = 0
    package var sourceMAC: UInt64 = 0
    package var destinationMAC: UInt64 = 0
    package var vlan: UInt16 = 0
    package var etherType: UInt16 = 0
    package var sourceIPv4: UInt32 = 0
    package var destinationIPv4: UInt32 = 0
    package var sourceIPv6: (UInt64, UInt64) = (0, 0)
    package var destinationIPv6: (UInt64, UInt64) = (0, 0)

    package init() {}

    package static func == (a: TeamingFrameInfo, b: TeamingFrameInfo) -> Bool {
        a.sourcePort == b.sourcePort && a.sourceMAC == b.sourceMAC && a.destinationMAC == b.destinationMAC
            && a.vlan == b.vlan && a.etherType == b.etherType && a.sourceIPv4 == b.sourceIPv4
            && a.destinationIPv4 == b.destinationIPv4 && a.sourceIPv6 == b.sourceIPv6
            && a.destinationIPv6 == b.destinationIPv6
    }
}

/// A NIC-teaming policy: which uplink of a switch's team carries each outbound frame.
/// The plugin policies (`hv_teaming_ops`) and the built-in `FailoverTeaming` are both this.
///
/// Thread contract: the switch calls every member with its own lock held, so calls never
/// overlap; `selectUplink` runs per frame and must not block. An uplink is down from
/// `addUplink` until `linkChanged(up: true)`.
package protocol TeamingPolicy: AnyObject {
    var name: String { get }
    /// Where the policy comes from ("built-in", or the plugin and its path).
    var origin: String { get }
    func addUplink(_ id: UInt32, order: UInt32) throws
    func linkChanged(_ id: UInt32, up: Bool)
    /// The uplink id to send on, or -1 to drop the frame.
    func selectUplink(_ frame: TeamingFrameInfo) -> Int32
    /// Whether traffic should return to `id` now that its link is back; nil when the
    /// policy has no opinion (the switch's `failback` option decides alone).
    func shouldFailback(_ id: UInt32) -> Bool?
}

/// Explicit failover order, built in: every frame goes on the up uplink with the lowest
/// order. Used when a switch names no policy, and in place of a plugin policy that
/// answered garbage.
package final class FailoverTeaming: TeamingPolicy {
    private var orders: [UInt32: UInt32] = [:]
    private var up: Set<UInt32> = []

    package init() {}

    package var name: String { "failover" }
    package var origin: String { "built-in" }

    package func addUplink(_ id: UInt32, order: UInt32) { orders[id] = order }
    package func linkChanged(_ id: UInt32, up isUp: Bool) {
        if isUp { up.insert(id) } else { up.remove(id) }
    }

    package func selectUplink(_ frame: TeamingFrameInfo) -> Int32 {
        guard let best = up.min(by: { (orders[$0] ?? .max, $0) < (orders[$1] ?? .max, $1) }) else { return -1 }
        return Int32(best)
    }

    package func shouldFailback(_ id: UInt32) -> Bool? { nil }
}
