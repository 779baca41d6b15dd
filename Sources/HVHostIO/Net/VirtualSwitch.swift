import Glibc
import HVSupport
import Synchronization

/// A VMkernel virtual switch (ESX "vSwitch"): a learning Ethernet bridge between the
/// ports of virtual NICs and, when configured with uplinks, the host's network.
///
/// Forwarding, per frame sent on a port (of port-group VLAN `v`; a VGT port's frame is
/// in the VLAN of its tag; a VLAN port never sends tagged frames itself):
/// - the source MAC (if unicast) is learned on the sending port, per VLAN (the table is
///   bounded to `macTableCapacity` entries; entries age out after `macAgingNanoseconds`);
/// - a unicast destination learned on another port goes to that port only; one learned
///   on the sending port itself is dropped (never echoed back);
/// - anything else (unknown unicast, broadcast, multicast) floods to every other port of
///   the VLAN, and out of the one uplink the teaming policy selects (tagged with `v` when
///   it is not 0);
/// - ports whose link is down receive nothing; VLANs are never crossed.
///
/// Per frame from an uplink (its VLAN from the tag; untagged is VLAN 0): dropped when its
/// source is a vNIC of this switch (the frame came back through another team member:
/// reverse-path filter); a unicast learned on a port goes there; anything else goes to
/// the ports of its VLAN whose own uplink (the one the policy picks for their traffic) is
/// this one, so a far switch flooding to every team member delivers each frame once.
/// Never from one uplink to another.
///
/// Thread contract: every member may be called from any thread. One lock guards the
/// port list, MAC table and teaming state (the teaming policy runs under it); frames are
/// copied into the receiving ports' queues, or sent on an uplink, after it is released,
/// and each port's own receive thread delivers them (see `VirtualPort`), so a sender never
/// runs a receiver's code and a receiver may send from inside `receive`.
package final class VirtualSwitch: @unchecked Sendable, CustomStringConvertible {
    /// Bound on learned addresses. When full, new addresses are not learned (their
    /// frames flood) until entries age out.
    static let macTableCapacity = 4096
    /// Learned addresses not seen as a source for this long are forgotten (ESX: 300 s).
    static let macAgingNanoseconds: UInt64 = 300 * 1_000_000_000

    package let name: String
    /// The host interfaces this switch owns, in failover order; fixed once made.
    package let uplinks: [Uplink]
    package let configuration: SwitchConfiguration?
    /// Where the switch reports teaming events (failover, a replaced policy).
    private let log: @Sendable (String) -> Void
    private var monitor: LinkMonitor?

    private struct MACEntry {
        var port: VirtualPort
        var lastSeen: UInt64
    }

    private struct State {
        var ports: [VirtualPort] = []
        /// Key: VLAN << 48 | MAC.
        var table: [UInt64: MACEntry] = [:]
        var lastPurge: UInt64 = 0
        var nextPortID: UInt32 = 0
        /// Ports of a VLAN port group (1-4095): the general path is needed.
        var vlanPorts = 0
        var policy: TeamingPolicy = FailoverTeaming()
        /// Uplinks the policy was told are up.
        var policyUp: Set<UInt32> = []
        /// Uplinks back up but held out of the team (failback off) until another fails.
        var standby: Set<UInt32> = []
        /// Each port's uplink (the policy's pick for its traffic), by port id; -1 none.
        var home: [UInt32: Int32] = [:]
        var failovers: UInt64 = 0
        var notifications: UInt64 = 0
    }

    private let state: Mutex<State>

    init(name: String) {
        self.name = name
        uplinks = []
        configuration = nil
        log = { _ in }
        state = Mutex(State())
    }

    /// A switch owning the uplinks of `configuration`, teamed by `policy` (the built-in
    /// failover when nil). The uplinks are opened here; their receive threads and the
    /// link monitor start before this returns.
    init(configuration: SwitchConfiguration, policy: TeamingPolicy?,
         log: @escaping @Sendable (String) -> Void) throws {
        name = configuration.name
        self.configuration = configuration
        self.log = log
        var opened: [Uplink] = []
        do {
            for (i, spec) in configuration.uplinks.enumerated() {
                opened.append(try Uplink(id: UInt32(i), order: UInt32(i), spec: spec))
            }
        } catch {
            for u in opened { u.stop() }
            throw error
        }
        uplinks = opened
        var s = State()
        s.policy = policy ?? FailoverTeaming()
        do {
            for u in opened { try s.policy.addUplink(u.id, order: u.order) }
        } catch {
            log("vSwitch \(configuration.name): teaming policy '\(s.policy.name)' refused an uplink (\(error)); using the built-in failover policy")
            s.policy = FailoverTeaming()
            for u in opened { try? s.policy.addUplink(u.id, order: u.order) }
        }
        for u in opened where u.isLinkUp {
            s.policyUp.insert(u.id)
            s.policy.linkChanged(u.id, up: true)
        }
        state = Mutex(s)
        for u in opened {
            u.startReceiving { [unowned self] frame, tag in receive(frame, tag: tag, from: u) }
        }
        var indexes: [Int32: String] = [:]
        for u in opened where u.spec.kind == .packetSocket {
            if let sock = u.transport as? PacketRingSocket { indexes[sock.interfaceIndex] = u.spec.interface }
        }
        for u in opened where u.spec.kind == .tap {
            let index = if_nametoindex(u.interfaceName)
            if index != 0 { indexes[Int32(index)] = u.interfaceName }
        }
        do {
            monitor = try LinkMonitor(interfaces: indexes) { [unowned self] interface, up in
                carrierChanged(interface: interface, up: up)
            }
        } catch {
            log("vSwitch \(configuration.name): no link-state events (\(error)); uplinks keep their carrier at start")
        }
    }

    /// Stops the uplinks' threads and the link monitor and closes the host interfaces.
    package func shutdown() {
        monitor?.stop()
        monitor = nil
        for u in uplinks { u.stop() }
    }

    package var description: String { "vSwitch \(name)" }

    /// The attached ports, in creation order.
    package var ports: [VirtualPort] { state.withLock { $0.ports } }

    /// Plugs a new port into the switch and starts its receive thread. `mac` must be 6
    /// bytes; `vlan` is the port group's VLAN id (0 none, 1-4094 access, 4095 guest
    /// tagging). The port's link starts up. See `VirtualPort` for when `receive` and
    /// `linkChanged` are called, and `PortReceiveResult` for what `receive` returns.
    package func makePort(name: String, mac: [UInt8], vlan: UInt16 = 0, queue limits: PortQueueLimits = .standard,
                         receive: @escaping @Sendable (UnsafeRawBufferPointer) -> PortReceiveResult,
                         linkChanged: @escaping @Sendable (Bool) -> Void) -> VirtualPort {
        precondition(mac.count == 6, "VirtualSwitch.makePort: a MAC address is 6 bytes, got \(mac.count)")
        precondition(vlan <= VLAN.guestTagging, "VirtualSwitch.makePort: VLAN ids are 0...4095, got \(vlan)")
        return state.withLock { s in
            let port = VirtualPort(name: name, id: s.nextPortID, vlan: vlan,
                                   mac: MACAddress(mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]),
                                   switch: self, limits: limits, receive: receive, linkChanged: linkChanged)
            s.nextPortID &+= 1
            s.ports.append(port)
            if vlan != 0 { s.vlanPorts += 1 }
            if !uplinks.isEmpty { s.home[port.id] = Self.homeUplink(of: port, in: &s) }
            return port
        }
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
            if port.vlan != 0 { s.vlanPorts -= 1 }
            s.home[port.id] = nil
            port.markRemoved()
            s.table = s.table.filter { $0.value.port !== port }
            return true
        }
        if wasAttached { port.stopReceiving() }
    }

    // MARK: - Forwarding

    /// Where a frame goes; built under the lock, queued outside it. (`.flood` carries
    /// a snapshot of the port list, the sender included; delivery skips it.)
    private enum Targets {
        case none
        case one(VirtualPort)
        case flood([VirtualPort])
    }

    @inline(__always)
    private static func key(_ vlan: UInt16, _ address: UInt64) -> UInt64 { UInt64(vlan) << 48 | address }

    /// Queues a frame of valid length sent by `source` (already counted as sent) for
    /// every port it goes to, and sends it on the selected uplink.
    func forward(_ frame: FrameSegments, from source: VirtualPort) {
        let now = monotonicCoarseNanoseconds()
        guard !uplinks.isEmpty || source.vlan != 0 || state.withLock({ $0.vlanPorts }) != 0 else {
            // An internal switch without VLANs: no header parsing, no copies.
            let (destination, sourceAddress) = frame.addresses()
            let targets = state.withLock { s in
                route(destination: destination, source: sourceAddress, vlan: 0, from: source, at: now, in: &s)
            }
            switch targets {
            case .none: return
            case .one(let port): port.enqueue(frame)
            case .flood(let ports): for port in ports where port !== source { port.enqueue(frame) }
            }
            return
        }
        let header = FrameHeader(frame)
        let vlan: UInt16
        if source.vlan == VLAN.guestTagging {
            vlan = header.taggedVLAN
        } else {
            guard !header.isTagged || source.vlan == 0 else { return }   // VST: the guest may not tag
            vlan = source.vlan
        }
        var uplink: Uplink?
        let targets: Targets = state.withLock { s in
            let t = route(destination: header.destination, source: header.source, vlan: vlan, from: source, at: now, in: &s)
            if case .one = t { return t }
            guard !source.isRemoved, !uplinks.isEmpty else { return t }
            uplink = select(header.teamingInfo(port: source.id, vlan: vlan), in: &s)
            return t
        }
        // Each form is built once, from one contiguous copy, and only when some target needs it.
        frame.withContiguousBytes { bytes in
            let inBand = source.vlan == VLAN.guestTagging && header.isTagged
            VLANForms.with(bytes, inBandTag: inBand, vlan: vlan, priority: inBand ? header.u16(14) >> 13 : 0) { forms in
                deliver(targets, forms: forms, vlan: vlan, except: source)
                if let uplink { uplink.transmit(vlan == 0 ? forms.untagged : forms.tagged) }
            }
        }
    }

    /// Queues an offloaded frame. On an internal switch without VLANs: whole (completed)
    /// for ports that take large frames, as segments for the others, the segments built
    /// once, only when some receiver needs them. Uplinks and VLAN port groups take
    /// ordinary frames: each segment is forwarded as if the NIC had sent it.
    func forward(_ frame: UnsafeMutableRawBufferPointer, offload: FrameOffload, from source: VirtualPort) {
        let scratch = UnsafeMutableRawPointer.allocate(byteCount: Ethernet.maximumFrameLength, alignment: 16)
        defer { scratch.deallocate() }
        guard uplinks.isEmpty, source.vlan == 0, state.withLock({ $0.vlanPorts }) == 0 else {
            offload.segments(of: frame, scratch: scratch) { segment in
                withUnsafePointer(to: segment) { forward(FrameSegments(UnsafeBufferPointer(start: $0, count: 1)), from: source) }
            }
            return
        }
        let (destination, sourceAddress) = FrameSegments.addresses(of: UnsafeRawBufferPointer(frame))
        let now = monotonicCoarseNanoseconds()
        let receivers: [VirtualPort]
        switch state.withLock({ route(destination: destination, source: sourceAddress, vlan: 0, from: source, at: now, in: &$0) }) {
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
        offload.segments(of: frame, scratch: scratch) { segment in
            withUnsafePointer(to: segment) { p in
                for port in small { port.enqueue(FrameSegments(UnsafeBufferPointer(start: p, count: 1))) }
            }
        }
    }

    /// Learning and lookup among the ports (VLAN `vlan`); under the lock.
    private func route(destination: UInt64, source sourceAddress: UInt64, vlan: UInt16, from source: VirtualPort,
                       at now: UInt64, in s: inout State) -> Targets {
        // A port removed concurrently with this send has already been unlinked.
        guard !source.isRemoved else { return .none }
        if !Ethernet.isGroup(sourceAddress) {
            Self.learn(Self.key(vlan, sourceAddress), on: source, at: now, in: &s)
        }
        if !Ethernet.isGroup(destination), let entry = s.table[Self.key(vlan, destination)] {
            if now &- entry.lastSeen <= Self.macAgingNanoseconds {
                return entry.port === source ? .none : .one(entry.port)
            }
            s.table[Self.key(vlan, destination)] = nil
        }
        return s.ports.count > 1 ? .flood(s.ports) : .none
    }

    private func deliver(_ targets: Targets, forms: VLANForms, vlan: UInt16, except source: VirtualPort?) {
        func send(to port: VirtualPort) {
            guard VLAN.port(port.vlan, carries: vlan) else { return }
            withFrameSegments(port.vlan == VLAN.guestTagging && vlan != 0 ? forms.tagged : forms.untagged) {
                port.enqueue($0)
            }
        }
        switch targets {
        case .none: return
        case .one(let port): send(to: port)
        case .flood(let ports): for port in ports where port !== source { send(to: port) }
        }
    }

    /// A frame from the host network on `uplink` (`tag`: the VLAN tag the kernel took off).
    private func receive(_ frame: UnsafeRawBufferPointer, tag: UInt16?, from uplink: Uplink) {
        guard Ethernet.isValidLength(frame.count) else { return }
        let header = FrameHeader(frame)
        let inBand = tag == nil && header.isTagged
        let vlan = tag.map { $0 & 0x0FFF } ?? header.taggedVLAN
        let now = monotonicCoarseNanoseconds()
        let targets: Targets = state.withLock { s in
            if !Ethernet.isGroup(header.source), let back = s.table[Self.key(vlan, header.source)],
               now &- back.lastSeen <= Self.macAgingNanoseconds {
                return .none   // one of ours, returning through the far switch
            }
            if !Ethernet.isGroup(header.destination), let entry = s.table[Self.key(vlan, header.destination)],
               now &- entry.lastSeen <= Self.macAgingNanoseconds {
                return .one(entry.port)
            }
            let homed = s.ports.filter { s.home[$0.id] == Int32(uplink.id) && VLAN.port($0.vlan, carries: vlan) }
            return homed.isEmpty ? .none : .flood(homed)
        }
        if case .none = targets {
            uplink.countFiltered()
            return
        }
        VLANForms.with(frame, inBandTag: inBand, vlan: vlan, priority: (tag ?? (inBand ? header.u16(14) : 0)) >> 13) { forms in
            deliver(targets, forms: forms, vlan: vlan, except: nil)
        }
    }

    // MARK: - Teaming

    /// The policy's uplink for a frame, or nil to drop it. A policy that answers an uplink
    /// that does not exist or is down (while another is up) is replaced, for good, by the
    /// built-in failover policy, and the frame goes where that one says.
    private func select(_ info: TeamingFrameInfo, in s: inout State) -> Uplink? {
        let pick = s.policy.selectUplink(info)
        if pick == -1 { return nil }
        if pick >= 0, Int(pick) < uplinks.count, s.policyUp.contains(UInt32(pick)) || s.policyUp.isEmpty {
            return uplinks[Int(pick)]
        }
        let reason = pick < -1 || Int(pick) >= uplinks.count
            ? "selected uplink \(pick), which does not exist (the team has \(uplinks.count))"
            : "selected uplink \(pick) (\(uplinks[Int(pick)])) whose link is down"
        replacePolicy(reason: reason, in: &s)
        let again = s.policy.selectUplink(info)
        return again >= 0 && Int(again) < uplinks.count ? uplinks[Int(again)] : nil
    }

    private func replacePolicy(reason: String, in s: inout State) {
        let old = s.policy
        log("vSwitch \(name): teaming policy '\(old.name)' (\(old.origin)) \(reason); replaced by the built-in failover policy")
        let fallback = FailoverTeaming()
        for u in uplinks { fallback.addUplink(u.id, order: u.order) }
        for id in s.policyUp { fallback.linkChanged(id, up: true) }
        s.policy = fallback
    }

    /// The uplink the policy picks for a port's own traffic (a broadcast from its MAC).
    private static func homeUplink(of port: VirtualPort, in s: inout State) -> Int32 {
        var info = TeamingFrameInfo()
        info.sourcePort = port.id
        info.sourceMAC = port.mac.value
        info.destinationMAC = 0xFFFF_FFFF_FFFF
        info.vlan = port.vlan == VLAN.guestTagging ? 0 : port.vlan
        return s.policy.selectUplink(info)
    }

    /// Recomputes every port's uplink; the ports whose uplink changed, with their new one.
    private func rehome(in s: inout State) -> [(VirtualPort, Uplink)] {
        var moved: [(VirtualPort, Uplink)] = []
        for port in s.ports {
            var pick = Self.homeUplink(of: port, in: &s)
            if pick != -1, pick < 0 || Int(pick) >= uplinks.count || !(s.policyUp.contains(UInt32(pick)) || s.policyUp.isEmpty) {
                replacePolicy(reason: "selected uplink \(pick) for port \(port.name), which is not an up member of the team", in: &s)
                pick = Self.homeUplink(of: port, in: &s)
            }
            let old = s.home[port.id]
            s.home[port.id] = pick
            if let old, old != pick, pick >= 0, Int(pick) < uplinks.count { moved.append((port, uplinks[Int(pick)])) }
        }
        return moved
    }

    /// A carrier change from the link monitor.
    private func carrierChanged(interface: String, up: Bool) {
        guard let uplink = uplinks.first(where: { $0.interfaceName == interface }), uplink.setCarrier(up) else { return }
        let failback = configuration?.failback ?? true
        let (moved, addresses) = state.withLock { s -> ([(VirtualPort, Uplink)], [UInt32: [UInt64]]) in
            if up {
                if s.policyUp.isEmpty || (failback && s.policy.shouldFailback(uplink.id) ?? true) {
                    s.policyUp.insert(uplink.id)
                    s.policy.linkChanged(uplink.id, up: true)
                } else {
                    s.standby.insert(uplink.id)
                }
            } else {
                s.standby.remove(uplink.id)
                if s.policyUp.remove(uplink.id) != nil { s.policy.linkChanged(uplink.id, up: false) }
                // The held-back members rejoin now that the team lost one.
                for id in s.standby.sorted() {
                    s.policyUp.insert(id)
                    s.policy.linkChanged(id, up: true)
                }
                s.standby = []
            }
            let moved = rehome(in: &s)
            if !moved.isEmpty { s.failovers &+= 1 }
            var addresses: [UInt32: [UInt64]] = [:]
            for (key, entry) in s.table where moved.contains(where: { $0.0 === entry.port }) {
                addresses[entry.port.id, default: []].append(key)
            }
            return (moved, addresses)
        }
        log("vSwitch \(name): uplink \(uplink) link \(up ? "up" : "down")" +
            (moved.isEmpty ? "" : "; \(moved.count) port(s) moved: " + moved.map { "\($0.0.name) -> \($0.1)" }.joined(separator: ", ")))
        guard configuration?.notifySwitches ?? true else { return }
        for (port, target) in moved {
            // The guest's own addresses on this port (learned), or the port's address.
            let keys = addresses[port.id] ?? [Self.key(port.vlan == VLAN.guestTagging ? 0 : port.vlan, port.mac.value)]
            for key in keys { notify(address: key & 0xFFFF_FFFF_FFFF, vlan: UInt16(key >> 48), on: target) }
        }
    }

    /// Sends a RARP for `address` on `uplink` (as the VMkernel does for a moved MAC) so
    /// the far switch learns the address on its new port.
    private func notify(address: UInt64, vlan: UInt16, on uplink: Uplink) {
        Self.rarpFrame(for: address).withUnsafeBytes { bytes in
            VLANForms.with(bytes, inBandTag: false, vlan: vlan) { forms in
                uplink.transmit(vlan == 0 ? forms.untagged : forms.tagged)
            }
        }
        state.withLock { $0.notifications &+= 1 }
    }

    /// A broadcast RARP reverse request whose sender is `address`.
    private static func rarpFrame(for address: UInt64) -> [UInt8] {
        var frame = [UInt8](repeating: 0, count: 60)
        for i in 0..<6 {
            frame[i] = 0xFF
            let b = UInt8(truncatingIfNeeded: address >> UInt64(40 - 8 * i))
            frame[6 + i] = b
            frame[22 + i] = b   // sender hardware address
            frame[32 + i] = b   // target hardware address
        }
        frame[12] = 0x80; frame[13] = 0x35            // RARP
        frame[14] = 0x00; frame[15] = 0x01            // Ethernet
        frame[16] = 0x08; frame[17] = 0x00            // IPv4
        frame[18] = 6; frame[19] = 4
        frame[20] = 0x00; frame[21] = 0x03            // reverse request
        return frame
    }

    /// Announces that `port`'s MAC now lives here (a VM that arrived by live migration):
    /// a RARP broadcast from the port, so this switch, its other ports and the physical
    /// switches behind its uplinks learn the address at once.
    package func announce(_ port: VirtualPort) {
        var frame = Self.rarpFrame(for: port.mac.value)
        frame.withUnsafeMutableBytes { forward($0, offload: FrameOffload(flags: 0), from: port) }
        state.withLock { $0.notifications &+= 1 }
    }

    /// The teaming state for the console: the policy, and per uplink whether it is in the
    /// team, held back (failback off) or down, and how many ports use it.
    package struct TeamStatus: Sendable {
        package let policy: String
        package let origin: String
        package let members: [(uplink: String, state: String, ports: Int)]
        package let failovers: UInt64
        package let notifications: UInt64
    }

    package var teamStatus: TeamStatus {
        state.withLock { s in
            TeamStatus(policy: s.policy.name, origin: s.policy.origin,
                       members: uplinks.map { u in
                           let st = s.policyUp.contains(u.id) ? "active" : s.standby.contains(u.id) ? "standby" : "down"
                           return (u.description, st, s.home.values.filter { $0 == Int32(u.id) }.count)
                       },
                       failovers: s.failovers, notifications: s.notifications)
        }
    }

    /// The uplink a port's traffic currently uses (console, tests).
    package func uplink(of port: VirtualPort) -> Uplink? {
        state.withLock { s in s.home[port.id].flatMap { $0 >= 0 && Int($0) < uplinks.count ? uplinks[Int($0)] : nil } }
    }

    private static func learn(_ key: UInt64, on port: VirtualPort, at now: UInt64, in s: inout State) {
        if s.table[key] != nil {
            s.table[key] = MACEntry(port: port, lastSeen: now)   // refresh, or station moved
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
        s.table[key] = MACEntry(port: port, lastSeen: now)
    }

    // MARK: - Diagnostics (internal; tests)

    var learnedAddressCount: Int { state.withLock { $0.table.count } }

    func learnedPort(for address: MACAddress, vlan: UInt16 = 0) -> VirtualPort? {
        state.withLock { $0.table[Self.key(vlan, address.value)]?.port }
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
