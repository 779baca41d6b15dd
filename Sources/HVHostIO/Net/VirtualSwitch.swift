import Glibc
import HVSupport
import Synchronization

/// An internal-only VMkernel virtual switch (ESX "vSwitch" with no uplink): a learning
/// Ethernet bridge between the ports of virtual NICs.
///
/// Forwarding, per frame sent on a port:
/// - the source MAC (if unicast) is learned on the sending port (the table is bounded to
///   `macTableCapacity` entries; entries age out after `macAgingNanoseconds`);
/// - a unicast destination learned on another port goes to that port only; one learned
///   on the sending port itself is dropped (never echoed back);
/// - unknown unicast, broadcast and multicast (I/G bit set) flood to every other port;
/// - ports whose link is down receive nothing.
///
/// Thread contract: every member may be called from any thread. One lock guards the
/// port list and MAC table; frames are copied into the receiving ports' queues after it
/// is released, and each port's own receive thread delivers them (see `VirtualPort`), so
/// a sender never runs a receiver's code and a receiver may send from inside `receive`.
///
/// Extension points for later work (VLANs, uplinks, teaming, shaping): `forward(_:from:)`
/// is the single place that turns a frame into a destination list.
package final class VirtualSwitch: Sendable, CustomStringConvertible {
    /// Bound on learned addresses. When full, new addresses are not learned (their
    /// frames flood) until entries age out.
    static let macTableCapacity = 4096
    /// Learned addresses not seen as a source for this long are forgotten (ESX: 300 s).
    static let macAgingNanoseconds: UInt64 = 300 * 1_000_000_000

    package let name: String

    private struct MACEntry {
        var port: VirtualPort
        var lastSeen: UInt64
    }

    private struct State {
        var ports: [VirtualPort] = []
        var table: [UInt64: MACEntry] = [:]
        var lastPurge: UInt64 = 0
    }

    private let state = Mutex(State())

    init(name: String) {
        self.name = name
    }

    package var description: String { "vSwitch \(name)" }

    /// The attached ports, in creation order.
    package var ports: [VirtualPort] { state.withLock { $0.ports } }

    /// Plugs a new port into the switch and starts its receive thread. `mac` must be 6
    /// bytes. The port's link starts up. See `VirtualPort` for when `receive` and
    /// `linkChanged` are called, and `PortReceiveResult` for what `receive` returns.
    package func makePort(name: String, mac: [UInt8], queue limits: PortQueueLimits = .standard,
                         receive: @escaping @Sendable (UnsafeRawBufferPointer) -> PortReceiveResult,
                         linkChanged: @escaping @Sendable (Bool) -> Void) -> VirtualPort {
        precondition(mac.count == 6, "VirtualSwitch.makePort: a MAC address is 6 bytes, got \(mac.count)")
        let port = VirtualPort(name: name, mac: MACAddress(mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]),
                               switch: self, limits: limits, receive: receive, linkChanged: linkChanged)
        state.withLock { $0.ports.append(port) }
        return port
    }

    /// Unplugs a port: it is forgotten by the MAC table, its sends fail with `.linkDown`,
    /// frames still queued for it are discarded, and once this returns its closures are
    /// never called again (this waits for a delivery in progress and stops the port's
    /// receive thread). Must not be called from inside that port's own `receive`.
    /// Removing a port twice, or a port of another switch, does nothing.
    package func removePort(_ port: VirtualPort) {
        guard port.virtualSwitch === self else { return }
        let wasAttached = state.withLock { s -> Bool in
            guard let i = s.ports.firstIndex(where: { $0 === port }) else { return false }
            s.ports.remove(at: i)
            port.markRemoved()
            s.table = s.table.filter { $0.value.port !== port }
            return true
        }
        if wasAttached { port.stopReceiving() }
    }

    // MARK: - Forwarding

    /// Queues a frame of valid length sent by `source` (already counted as sent) for
    /// every port it goes to.
    func forward(_ frame: FrameSegments, from source: VirtualPort) {
        switch targets(frame.addresses(), from: source) {
        case .none:
            return
        case .one(let port):
            port.enqueue(frame)
        case .flood(let ports):
            for port in ports where port !== source {
                port.enqueue(frame)
            }
        }
    }

    /// Queues an offloaded frame: whole (completed) for ports that take large frames,
    /// as segments for the others. The segments are built once, in one scratch buffer
    /// per segment, only when some receiver needs them.
    func forward(_ frame: UnsafeMutableRawBufferPointer, offload: FrameOffload, from source: VirtualPort) {
        let receivers: [VirtualPort]
        switch targets(FrameSegments.addresses(of: UnsafeRawBufferPointer(frame)), from: source) {
        case .none: return
        case .one(let port): receivers = [port]
        case .flood(let ports): receivers = ports.filter { $0 !== source }
        }
        let small = receivers.filter { !$0.takesLargeFrames }
        if small.count < receivers.count {
            // Segmenting works on its own copy, so the whole frame can be completed first.
            var copy = Array(UnsafeRawBufferPointer(frame))
            copy.withUnsafeMutableBytes { whole in
                offload.completeWhole(whole)
                for port in receivers where port.takesLargeFrames {
                    withUnsafePointer(to: UnsafeRawBufferPointer(whole)) {
                        port.enqueue(FrameSegments(UnsafeBufferPointer(start: $0, count: 1)))
                    }
                }
            }
        }
        guard !small.isEmpty else { return }
        let scratch = UnsafeMutableRawPointer.allocate(byteCount: Ethernet.maximumFrameLength, alignment: 16)
        defer { scratch.deallocate() }
        offload.segments(of: frame, scratch: scratch) { segment in
            withUnsafePointer(to: segment) { p in
                for port in small { port.enqueue(FrameSegments(UnsafeBufferPointer(start: p, count: 1))) }
            }
        }
    }

    /// Learns the sender's address and decides where a frame with these addresses goes.
    private func targets(_ addresses: (destination: UInt64, source: UInt64), from source: VirtualPort) -> Targets {
        let (destination, sourceAddress) = addresses
        let now = monotonicCoarseNanoseconds()

        return state.withLock { s in
            // A port removed concurrently with this send has already been unlinked.
            guard !source.isRemoved else { return .none }
            if !Ethernet.isGroup(sourceAddress) {
                Self.learn(sourceAddress, on: source, at: now, in: &s)
            }
            if !Ethernet.isGroup(destination), let entry = s.table[destination] {
                if now &- entry.lastSeen <= Self.macAgingNanoseconds {
                    return entry.port === source ? .none : .one(entry.port)
                }
                s.table[destination] = nil
            }
            return s.ports.count > 1 ? .flood(s.ports) : .none
        }
    }

    /// Where a frame goes; built under the lock, queued outside it. (`.flood` carries
    /// a snapshot of the port list, the sender included; delivery skips it.)
    private enum Targets {
        case none
        case one(VirtualPort)
        case flood([VirtualPort])
    }

    private static func learn(_ address: UInt64, on port: VirtualPort, at now: UInt64, in s: inout State) {
        if s.table[address] != nil {
            s.table[address] = MACEntry(port: port, lastSeen: now)   // refresh, or station moved
            return
        }
        if s.table.count >= macTableCapacity {
            // Purge aged entries, at most once a second so a flood of new source
            // addresses cannot make every send scan the table.
            guard now &- s.lastPurge >= 1_000_000_000 else { return }
            s.lastPurge = now
            s.table = s.table.filter { now &- $0.value.lastSeen <= macAgingNanoseconds }
            guard s.table.count < macTableCapacity else { return }
        }
        s.table[address] = MACEntry(port: port, lastSeen: now)
    }

    // MARK: - Diagnostics (internal; tests)

    var learnedAddressCount: Int { state.withLock { $0.table.count } }

    func learnedPort(for address: MACAddress) -> VirtualPort? {
        state.withLock { $0.table[address.value]?.port }
    }

    /// Waits until every port has delivered what it can: frames sent before the call, and
    /// those its receivers sent in turn. False on timeout.
    func waitUntilDelivered(timeout nanoseconds: UInt64 = 10_000_000_000) -> Bool {
        // Settled when a pass finds every port idle and no port took a frame meanwhile
        // (a receiver may send to a port that was already checked).
        while true {
            let before = ports.reduce(UInt64(0)) { $0 &+ $1.framesQueued }
            for port in ports where !port.waitUntilDelivered(timeout: nanoseconds) { return false }
            if ports.reduce(UInt64(0), { $0 &+ $1.framesQueued }) == before { return true }
        }
    }
}
