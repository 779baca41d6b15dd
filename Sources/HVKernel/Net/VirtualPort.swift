import Glibc
import Synchronization

/// Per-port traffic counters, as seen from the port's owner (the NIC):
/// tx = frames the NIC sent into the switch, rx = frames the switch handed to the NIC.
public struct PortCounters: Sendable, Equatable, CustomStringConvertible {
    public var txFrames: UInt64 = 0
    public var txBytes: UInt64 = 0
    public var rxFrames: UInt64 = 0
    public var rxBytes: UInt64 = 0
    /// Frames the port refused to send: bad length, or link down.
    public var txDrops: UInt64 = 0
    /// Frames for this port that its NIC refused (receive returned false: ring full).
    public var rxDrops: UInt64 = 0

    public init() {}

    public var description: String {
        "tx \(txFrames) frames/\(txBytes) B (\(txDrops) dropped), rx \(rxFrames) frames/\(rxBytes) B (\(rxDrops) dropped)"
    }
}

/// The outcome of `VirtualPort.send`. Maps to the ABI's `net_send` results:
/// `.sent` → HV_OK, `.invalidLength` → HV_EINVAL, `.linkDown` → HV_EAGAIN.
public enum SendResult: Sendable, Equatable {
    /// The switch took the frame (it may still have had nowhere to go).
    case sent
    /// Shorter than 14 or longer than 65535 bytes; dropped and counted in `txDrops`.
    case invalidLength
    /// The port's link is down or the port was removed; dropped and counted in `txDrops`.
    case linkDown
}

/// One port of a `VirtualSwitch`, owned by one virtual NIC. Create with
/// `VirtualSwitch.makePort`. Thread contract: every member may be called from any thread.
///
/// - `receive` is called by whatever thread sent the frame, with no switch lock held, so
///   it may itself send (on this or any port). It must not call `removePort` for its own
///   port (that waits for in-flight deliveries to this port, including its own call).
/// - `linkChanged` is called by the thread that changed the link, with no lock held.
/// - After `VirtualSwitch.removePort` returns, neither closure is called again.
/// - A port starts with its link up ("connected at power on").
public final class VirtualPort: Sendable, CustomStringConvertible {
    public let name: String
    public let mac: MACAddress
    /// The switch this port is (or was) plugged into. (Strong: a switch and its
    /// attached ports keep each other alive; `removePort` breaks the switch's side.)
    public let virtualSwitch: VirtualSwitch

    private let receive: @Sendable ([UInt8]) -> Bool
    private let linkChanged: @Sendable (Bool) -> Void
    private let link = Atomic<Bool>(true)
    private let removed = Atomic<Bool>(false)
    /// Deliveries currently inside `receive`; `waitForDeliveries()` waits for it to reach zero.
    private let inFlight = Atomic<Int>(0)
    private let counterState = Mutex(PortCounters())

    init(name: String, mac: MACAddress, switch owner: VirtualSwitch,
         receive: @escaping @Sendable ([UInt8]) -> Bool,
         linkChanged: @escaping @Sendable (Bool) -> Void) {
        self.name = name
        self.mac = mac
        self.virtualSwitch = owner
        self.receive = receive
        self.linkChanged = linkChanged
    }

    public var description: String { "\(virtualSwitch.name)/\(name) (\(mac))" }

    /// True while the link is up and the port is still plugged into its switch.
    public var isLinkUp: Bool { link.load(ordering: .sequentiallyConsistent) && !isRemoved }

    /// Sets the link state and calls `linkChanged` when it actually changed. A port that
    /// was removed from its switch ignores this.
    public func setLink(up: Bool) {
        guard !isRemoved else { return }
        let (exchanged, _) = link.compareExchange(expected: !up, desired: up, ordering: .sequentiallyConsistent)
        if exchanged { linkChanged(up) }
    }

    /// A consistent snapshot of all counters.
    public var counters: PortCounters { counterState.withLock { $0 } }

    /// Sends one Ethernet frame (destination MAC first, no FCS). The frame is copied
    /// before this returns; receivers run on this thread before it returns.
    public func send(_ frame: UnsafeRawBufferPointer) -> SendResult {
        guard Ethernet.isValidLength(frame.count) else {
            counterState.withLock { $0.txDrops &+= 1 }
            return .invalidLength
        }
        guard isLinkUp else {
            counterState.withLock { $0.txDrops &+= 1 }
            return .linkDown
        }
        counterState.withLock {
            $0.txFrames &+= 1
            $0.txBytes &+= UInt64(frame.count)
        }
        virtualSwitch.forward(frame, from: self)
        return .sent
    }

    /// Convenience overload of `send(_:)` for a byte array.
    public func send(_ frame: [UInt8]) -> SendResult {
        frame.withUnsafeBytes { send($0) }
    }

    // MARK: - Switch side

    var isRemoved: Bool { removed.load(ordering: .sequentiallyConsistent) }

    /// Hands a frame to the NIC. Called by the switch outside its lock.
    func deliver(_ frame: [UInt8]) {
        // Announce the delivery before checking `removed`: with `markRemoved()` storing
        // `removed` before reading `inFlight` (both sequentially consistent), either we
        // see the removal or waitForDeliveries() sees us and waits.
        inFlight.wrappingAdd(1, ordering: .sequentiallyConsistent)
        defer { inFlight.wrappingSubtract(1, ordering: .sequentiallyConsistent) }
        guard !isRemoved, link.load(ordering: .sequentiallyConsistent) else { return }
        let taken = receive(frame)
        counterState.withLock {
            if taken {
                $0.rxFrames &+= 1
                $0.rxBytes &+= UInt64(frame.count)
            } else {
                $0.rxDrops &+= 1
            }
        }
    }

    /// Marks the port removed. The switch calls this under its lock, so a send racing
    /// with the removal cannot re-learn the port's addresses afterwards.
    func markRemoved() {
        removed.store(true, ordering: .sequentiallyConsistent)
    }

    /// Waits until no delivery is inside `receive` (after `markRemoved()`).
    func waitForDeliveries() {
        var spins = 0
        while inFlight.load(ordering: .sequentiallyConsistent) != 0 {
            spins += 1
            if spins < 100 { sched_yield() } else { usleep(100) }
        }
    }
}
