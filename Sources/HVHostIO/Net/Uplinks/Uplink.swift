import Glibc
import HVSupport
import Synchronization

/// Traffic counters of an uplink, as seen from the switch: tx = frames sent out to the
/// host network, rx = frames taken in from it.
package struct UplinkCounters: Sendable, Equatable {
    package var txFrames: UInt64 = 0
    package var txBytes: UInt64 = 0
    package var rxFrames: UInt64 = 0
    package var rxBytes: UInt64 = 0
    /// Frames the host refused to send (socket buffer full, interface down).
    package var txErrors: UInt64 = 0
    /// Frames dropped on the way in: a looped-back frame of a local vNIC (reverse-path
    /// filter), a group frame on a team member that is not the receiving port's, a VLAN
    /// no port group carries.
    package var rxFiltered: UInt64 = 0
}

/// One host interface a `VirtualSwitch` owns: its physical NIC ("vmnic"). The switch
/// sends on it what the teaming policy picks; its receive thread takes frames from the
/// host network into the switch. Its carrier (link state) comes from netlink events.
package final class Uplink: @unchecked Sendable, CustomStringConvertible {
    /// The id the teaming policy knows it by: its position in the switch's uplink list.
    package let id: UInt32
    /// Failover order (0 = first choice).
    package let order: UInt32
    package let spec: UplinkSpec
    let transport: UplinkTransport
    private let carrier: Atomic<Bool>
    private let stats = Mutex(UplinkCounters())
    private let stopping = Atomic<Bool>(false)
    private var thread: pthread_t?

    init(id: UInt32, order: UInt32, spec: UplinkSpec) throws {
        self.id = id
        self.order = order
        self.spec = spec
        switch spec.kind {
        case .packetSocket: transport = try PacketRingSocket(interface: spec.interface)
        case .tap: transport = try TAPDevice(name: spec.interface)
        }
        carrier = Atomic(LinkMonitor.carrier(of: spec.interface))
    }

    package var description: String { spec.description }
    package var interfaceName: String { transport.interfaceName }

    /// The host interface has carrier.
    package var isLinkUp: Bool { carrier.load(ordering: .sequentiallyConsistent) }

    /// Records a carrier change; true when it changed.
    func setCarrier(_ up: Bool) -> Bool {
        carrier.exchange(up, ordering: .sequentiallyConsistent) != up
    }

    package var counters: UplinkCounters { stats.withLock { $0 } }

    func countFiltered() { stats.withLock { $0.rxFiltered &+= 1 } }

    /// Sends a frame gathered from `parts` to the host network.
    func transmit(_ parts: [UnsafeRawBufferPointer]) {
        let bytes = parts.reduce(0) { $0 + $1.count }
        let sent = transport.transmit(parts)
        stats.withLock {
            if sent {
                $0.txFrames &+= 1
                $0.txBytes &+= UInt64(bytes)
            } else {
                $0.txErrors &+= 1
            }
        }
    }

    /// Starts the receive thread: every frame from the host network goes to `deliver`
    /// (on that thread), with the VLAN tag the kernel took off, if any.
    func startReceiving(_ deliver: @escaping @Sendable (UnsafeRawBufferPointer, UInt16?) -> Void) {
        thread = HostThread.spawn(name: "uplink \(spec.interface)") { [self] in
            while !stopping.load(ordering: .relaxed) {
                transport.receive(timeoutMilliseconds: 100) { frame, tag in
                    stats.withLock {
                        $0.rxFrames &+= 1
                        $0.rxBytes &+= UInt64(frame.count)
                    }
                    deliver(frame, tag)
                }
            }
        }
    }

    /// Stops the receive thread (within its 100 ms poll) and closes the host interface.
    func stop() {
        stopping.store(true, ordering: .relaxed)
        if let t = thread { pthread_join(t, nil) }
        thread = nil
        transport.close()
    }
}
