import Glibc
import HVSupport
import Synchronization

/// Per-port traffic counters, as seen from the port's owner (the NIC):
/// tx = frames the NIC sent into the switch, rx = frames the switch handed to the NIC.
package struct PortCounters: Sendable, Equatable, CustomStringConvertible {
    package var txFrames: UInt64 = 0
    package var txBytes: UInt64 = 0
    package var rxFrames: UInt64 = 0
    package var rxBytes: UInt64 = 0
    /// Frames the port refused to send: bad length, link down, or over its shaping limits.
    package var txDrops: UInt64 = 0
    /// Of `txDrops`, those the traffic shaper dropped.
    package var txShaped: UInt64 = 0
    /// Frames for this port that were lost: its receive queue was full, or its NIC
    /// refused them (receiver off, or ring full on a port that does not hold frames).
    package var rxDrops: UInt64 = 0

    init() {}

    package var description: String {
        "tx \(txFrames) frames/\(txBytes) B (\(txDrops) dropped), rx \(rxFrames) frames/\(rxBytes) B (\(rxDrops) dropped)"
    }
}

/// The outcome of `VirtualPort.send`. Maps to the ABI's `net_send` results:
/// `.sent` → HV_OK, `.invalidLength` → HV_EINVAL, `.linkDown` → HV_EAGAIN.
package enum SendResult: Sendable, Equatable {
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
/// - A port is a bounded receive queue drained by the port's own host thread: `send`
///   copies the frame into each receiving port's queue and returns; `receive` runs on the
///   receiving port's thread, one frame at a time in arrival order, with no switch or
///   queue lock held, so it may itself send (on this or any port). It must not call
///   `removePort` for its own port (that waits for the receive thread).
/// - `linkChanged` is called by the thread that changed the link, with no lock held.
/// - After `VirtualSwitch.removePort` returns, neither closure is called again.
/// - A port starts with its link up ("connected at power on").
package final class VirtualPort: Sendable, CustomStringConvertible {
    package let name: String
    /// The port's number in its switch (the teaming policies' "originating virtual port id").
    package let id: UInt32
    /// The port group's VLAN id: 0 none, 1-4094 tagged on the uplinks only, 4095 guest tagging.
    package let vlan: UInt16
    package let mac: MACAddress
    /// The switch this port is (or was) plugged into. (Strong: a switch and its
    /// attached ports keep each other alive; `removePort` breaks the switch's side.)
    package let virtualSwitch: VirtualSwitch

    private let queue: PortReceiveQueue
    private let linkChanged: @Sendable (Bool) -> Void
    private let link = Atomic<Bool>(true)
    private let removed = Atomic<Bool>(false)
    private let largeFrames = Atomic<Bool>(false)
    private let txCounters = Mutex(PortCounters())
    private let shaper = Mutex<TrafficShaper?>(nil)

    init(name: String, id: UInt32, vlan: UInt16, mac: MACAddress, switch owner: VirtualSwitch, limits: PortQueueLimits,
         receive: @escaping PortReceiveQueue.Receiver,
         linkChanged: @escaping @Sendable (Bool) -> Void) {
        self.name = name
        self.id = id
        self.vlan = vlan
        self.mac = mac
        self.virtualSwitch = owner
        self.queue = PortReceiveQueue(limits: limits, threadName: "rx \(name)", receiver: receive)
        self.linkChanged = linkChanged
    }

    package var description: String { "\(virtualSwitch.name)/\(name) (\(mac))" }

    /// True while the link is up and the port is still plugged into its switch.
    package var isLinkUp: Bool { link.load(ordering: .sequentiallyConsistent) && !isRemoved }

    /// Sets the link state and calls `linkChanged` when it actually changed. A port that
    /// was removed from its switch ignores this.
    package func setLink(up: Bool) {
        guard !isRemoved else { return }
        let (exchanged, _) = link.compareExchange(expected: !up, desired: up, ordering: .sequentiallyConsistent)
        if exchanged { linkChanged(up) }
    }

    /// A snapshot of the counters (the tx and the rx side each consistent).
    package var counters: PortCounters {
        var c = txCounters.withLock { $0 }
        (c.rxFrames, c.rxBytes, c.rxDrops) = queue.counters
        return c
    }

    /// Frames waiting in the receive queue (including one being delivered).
    var queuedFrames: Int { queue.queuedFrames }

    // MARK: - Receive-side flow control

    /// When true, a `.full` from `receive` keeps the frame at the head of the queue and
    /// delivery pauses until `receiveReady()` (the queue itself still drops what does not
    /// fit). When false (the default), `.full` drops the frame and counts it.
    package var holdsFramesWhenFull: Bool {
        get { queue.holdsWhenFull }
        set { queue.setHoldWhenFull(newValue) }
    }

    /// The NIC has room again (e.g. the guest posted receive buffers): delivery of held
    /// frames resumes on the port's receive thread. Cheap, and safe from inside `receive`.
    package func receiveReady() { queue.receiveReady() }

    // MARK: - Sending

    /// Sends one Ethernet frame (destination MAC first, no FCS), gathered from `frame`'s
    /// buffers. Before this returns the frame is copied into the queue of every port it
    /// goes to; the receivers run later, on their own threads.
    package func send(_ frame: FrameSegments) -> SendResult {
        guard Ethernet.isValidLength(frame.length) else {
            txCounters.withLock { $0.txDrops &+= 1 }
            return .invalidLength
        }
        guard isLinkUp else {
            txCounters.withLock { $0.txDrops &+= 1 }
            return .linkDown
        }
        let admitted = shaper.withLock { s in s == nil || s!.admit(frame.length, now: monotonicNanoseconds()) }
        guard admitted else {
            // Shaped away: the guest sent it, the wire never saw it (counted, not an error).
            txCounters.withLock {
                $0.txDrops &+= 1
                $0.txShaped &+= 1
            }
            return .sent
        }
        txCounters.withLock {
            $0.txFrames &+= 1
            $0.txBytes &+= UInt64(frame.length)
        }
        virtualSwitch.forward(frame, from: self)
        return .sent
    }

    /// Sends one frame held in a single buffer.
    package func send(_ frame: UnsafeRawBufferPointer) -> SendResult {
        withUnsafePointer(to: frame) { send(FrameSegments(UnsafeBufferPointer(start: $0, count: 1))) }
    }

    /// Convenience overload of `send(_:)` for a byte array.
    package func send(_ frame: [UInt8]) -> SendResult {
        frame.withUnsafeBytes { send($0) }
    }

    /// Sends a frame with work left to the VMkernel (`offload`, already validated against
    /// the frame): receivers that take large frames get it whole with its checksums
    /// completed, the others MSS-sized segments. `frame` is changed in place.
    package func send(_ frame: UnsafeMutableRawBufferPointer, offload: FrameOffload) -> SendResult {
        guard Ethernet.isValidLength(frame.count) else {
            txCounters.withLock { $0.txDrops &+= 1 }
            return .invalidLength
        }
        guard isLinkUp else {
            txCounters.withLock { $0.txDrops &+= 1 }
            return .linkDown
        }
        txCounters.withLock {
            $0.txFrames &+= 1
            $0.txBytes &+= UInt64(frame.count)
        }
        virtualSwitch.forward(frame, offload: offload, from: self)
        return .sent
    }

    /// Whether this port's NIC takes TCP frames larger than its MTU (up to 65535 bytes,
    /// one packet with valid checksums) instead of the segments of an offloaded send.
    package var takesLargeFrames: Bool {
        get { largeFrames.load(ordering: .sequentiallyConsistent) }
        set { largeFrames.store(newValue, ordering: .sequentiallyConsistent) }
    }
    // MARK: - Traffic shaping

    /// Shapes this port's outbound traffic from now on (nil: unshaped). Takes effect for
    /// the next frame; the bucket starts full.
    package func setShaping(_ parameters: ShapingParameters?) {
        shaper.withLock { $0 = parameters.map { TrafficShaper($0, now: monotonicNanoseconds()) } }
    }

    /// The shaper's parameters and counters, if the port is shaped.
    package var shaping: TrafficShaper? { shaper.withLock { $0 } }

    // MARK: - Switch side

    var isRemoved: Bool { removed.load(ordering: .sequentiallyConsistent) }

    /// Queues a frame for this port's NIC. Called by the switch outside its lock. A port
    /// whose link is down does not see (or count) the frame.
    func enqueue(_ frame: FrameSegments) {
        guard !isRemoved, link.load(ordering: .sequentiallyConsistent) else { return }
        _ = queue.enqueue(frame)
    }

    /// Marks the port removed. The switch calls this under its lock, so a send racing
    /// with the removal cannot re-learn the port's addresses afterwards.
    func markRemoved() {
        removed.store(true, ordering: .sequentiallyConsistent)
    }

    /// Stops the receive thread (after `markRemoved()`): waits for a delivery in progress,
    /// and no frame is queued or delivered afterwards.
    func stopReceiving() { queue.stop() }

    /// Frames ever taken into the receive queue (tests).
    var framesQueued: UInt64 { queue.framesQueued }

    /// Waits until the receive thread has delivered everything it can (tests). False on timeout.
    func waitUntilDelivered(timeout nanoseconds: UInt64 = 10_000_000_000) -> Bool {
        queue.waitUntilIdle(timeout: nanoseconds)
    }
}
