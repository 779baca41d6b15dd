import Glibc
import PluginABI

/// One Vlance NIC: an AMD PCnet-PCI II (Am79C970A) on a VMkernel virtual-switch port.
///
/// Threading (the model sets HV_DEVICE_THREAD_SAFE; see README.md):
/// - `mutex` guards every register, ring position and buffer below. Every entry point
///   (BAR access on a vCPU thread, `receive` on the port's receive thread, `link_changed`
///   on the thread that changed the link, the poll timer on the host timer thread,
///   reset/save/load on the control thread) takes it.
/// - While holding `mutex` the device calls only host services that never call back into
///   a device: guest memory, `irq_set_level`, `pci_command`, `clock_ns`, `log`, and the
///   network sends and `rx_ready` ("hv.net-queue/1": ports are queues drained on the
///   receiver's own thread), so frames go to the switch straight from the ring.
/// - The poll timer is (re)armed once per entry point, after `mutex` is released.
final class VlanceDevice {
    // MARK: limits

    /// Largest frame (without FCS) sent or accepted: 1518 plus a VLAN tag and slack.
    static let maxFrame = 1536
    /// Frames shorter than this (without FCS) are padded with zeros.
    static let minFrame = 60
    /// Descriptors one transmit pass may consume before it yields to the poll timer
    /// (checked between frames; one frame uses at most maxFrame + 1 descriptors).
    static let descriptorsPerPass = 512
    /// Transmit-ring polling interval while STRT and not TXDPOLL.
    static let pollIntervalNs: UInt64 = 1_600_000
    /// First receive-ring poll after the switch began holding frames for want of a
    /// buffer; each poll that finds none doubles the interval, up to pollIntervalNs. A
    /// guest that is consuming is served within microseconds, an idle one costs little.
    static let rxWaitPollNs: UInt64 = 20_000
    /// Guest-error log lines per instance before they are suppressed.
    static let guestErrorLogLimit = 32

    // MARK: host services (validated in init)

    typealias MemRead = @convention(c) (OpaquePointer?, UInt64, UnsafeMutableRawPointer?, Int) -> Int32
    typealias MemWrite = @convention(c) (OpaquePointer?, UInt64, UnsafeRawPointer?, Int) -> Int32

    let host: OpaquePointer
    let services: UnsafePointer<hv_host_services>
    private let memRead: MemRead
    private let memWrite: MemWrite
    private let irqSetLevel: @convention(c) (OpaquePointer?, Int32) -> Void
    private let clockNs: @convention(c) (OpaquePointer?) -> UInt64
    private let pciCommand: @convention(c) (OpaquePointer?) -> UInt16
    private let logFn: @convention(c) (OpaquePointer?, Int32, UnsafePointer<CChar>?) -> Void
    private let timerArm: @convention(c) (OpaquePointer?, OpaquePointer?, UInt64) -> Void
    let netSend: @convention(c) (OpaquePointer?, UnsafeRawPointer?, Int) -> Int32
    let sendGuest: @convention(c) (OpaquePointer?, UnsafePointer<hv_net_segment>?, UInt32, UInt32) -> Int32
    private let rxReady: @convention(c) (OpaquePointer?) -> Void

    var port: OpaquePointer?
    var pollTimer: OpaquePointer?
    /// hv.timer/1's timer_cancel_wait; nil on a host without the extension.
    var timerCancelWait: (@convention(c) (OpaquePointer?, OpaquePointer?) -> Int32)?
    let mac: [UInt8]

    // MARK: locks

    let mutex: UnsafeMutablePointer<pthread_mutex_t>

    // MARK: guest-visible state (under `mutex`)

    /// CSR0-127 as stored; some are computed on read (see csrRead).
    let csr: UnsafeMutablePointer<UInt16>
    /// BCR0-31.
    let bcr: UnsafeMutablePointer<UInt16>
    /// The 16-byte address PROM at BAR offsets 0x00-0x0F.
    let prom: UnsafeMutablePointer<UInt8>
    var rap: UInt16 = 0
    /// Descriptor ring bases (CSR24/25, CSR30/31) and lengths (1...65536; CSR76/78 hold
    /// their two's complement) and the current descriptor of each ring.
    var rdra: UInt32 = 0
    var tdra: UInt32 = 0
    var rxLen: UInt32 = 1
    var txLen: UInt32 = 1
    var rxIndex: UInt32 = 0
    var txIndex: UInt32 = 0
    var linkUp = true
    /// A memory error on the transmit ring: polling stops until TDMD, STRT or INIT.
    var txStalled = false
    /// A transmit pass stopped early (budget); the poll timer continues it.
    var txContinue = false
    /// The switch holds frames for us (`receive` said HV_EAGAIN: no receive buffer);
    /// the ring is polled until the guest gives one, then `rx_ready` resumes delivery.
    var rxWaiting = false
    /// The next receive-ring poll interval while `rxWaiting`.
    var rxPollDelay = VlanceDevice.rxWaitPollNs

    // MARK: bookkeeping (under `mutex`)

    var intxLevel = false
    var pollArmed = false
    /// A poll-timer deadline to arm once `mutex` is released (0: none).
    var armAt: UInt64 = 0
    /// Bus mastering as read at the start of the current DMA operation.
    var dmaAllowed = false
    var guestErrors = 0
    /// Set by destroy; every entry point checks it first.
    var dead = false

    // MARK: buffers (under `mutex`)

    /// Scratch for descriptors and the init block.
    let scratch: UnsafeMutableRawPointer
    /// A transmit frame as guest-memory pieces, for `send_guest` (one copy to the switch).
    let txSegments: UnsafeMutablePointer<hv_net_segment>
    /// A frame gathered from transmit descriptors when it must be copied here: loopback,
    /// or more pieces than `send_guest` takes.
    let txBuf: UnsafeMutablePointer<UInt8>
    /// What the chip appends to a received frame: pad to 60 bytes, then the FCS.
    let rxTail: UnsafeMutablePointer<UInt8>

    // MARK: counters (diagnostics)

    var framesSent: UInt64 = 0
    var framesReceived: UInt64 = 0
    var sendFailures: UInt64 = 0

    init?(services: UnsafePointer<hv_host_services>, host: OpaquePointer, mac: [UInt8],
          netQueue: UnsafePointer<hv_net_queue_ext>) {
        let s = services.pointee
        let q = netQueue.pointee
        guard let memRead = s.mem_read, let memWrite = s.mem_write, let irq = s.irq_set_level,
              let clock = s.clock_ns, let command = s.pci_command, let log = s.log,
              let arm = s.timer_arm, let send = s.net_send, let sendGuest = q.send_guest,
              let rxReady = q.rx_ready else { return nil }
        self.services = services
        self.host = host
        self.memRead = memRead
        self.memWrite = memWrite
        self.irqSetLevel = irq
        self.clockNs = clock
        self.pciCommand = command
        self.logFn = log
        self.timerArm = arm
        self.netSend = send
        self.sendGuest = sendGuest
        self.rxReady = rxReady
        self.mac = mac

        mutex = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)

        csr = .allocate(capacity: 128)
        csr.initialize(repeating: 0, count: 128)
        bcr = .allocate(capacity: BCR.count)
        bcr.initialize(repeating: 0, count: BCR.count)
        prom = .allocate(capacity: 16)
        prom.initialize(repeating: 0, count: 16)
        scratch = .allocate(byteCount: 32, alignment: 8)
        txSegments = .allocate(capacity: Int(HV_NET_MAX_SEGMENTS))
        txSegments.initialize(repeating: hv_net_segment(), count: Int(HV_NET_MAX_SEGMENTS))
        txBuf = .allocate(capacity: Self.maxFrame)
        txBuf.initialize(repeating: 0, count: Self.maxFrame)
        rxTail = .allocate(capacity: Self.minFrame + 4)
        rxTail.initialize(repeating: 0, count: Self.minFrame + 4)

        buildPROM()
        hardReset()
    }

    /// Runs when create fails after allocating the device, or when destroy releases it.
    deinit {
        if !dead { freeBuffers() }
        csr.deallocate()
        bcr.deallocate()
        prom.deallocate()
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    private func freeBuffers() {
        txSegments.deallocate()
        txBuf.deallocate()
        rxTail.deallocate()
        scratch.deallocate()
    }


    // MARK: locking

    @inline(__always) func lock() { pthread_mutex_lock(mutex) }

    /// Takes `mutex`; false (and released) when the instance is destroyed.
    @inline(__always) func lockLive() -> Bool {
        pthread_mutex_lock(mutex)
        if dead { pthread_mutex_unlock(mutex); return false }
        return true
    }

    /// Ends a locked operation: updates the interrupt line, decides about polling and
    /// about frames the switch holds for us, releases `mutex`, then arms the poll timer
    /// (once per operation, however many polls it asked for).
    func finish() {
        if !dead {
            if rxWaiting { checkReceiveRoom() }
            updateIRQ()
            if pollWanted && !pollArmed { requestPoll(after: Self.pollIntervalNs) }
        }
        let deadline = armAt
        armAt = 0
        pthread_mutex_unlock(mutex)
        if deadline != 0, let t = pollTimer { timerArm(host, t, deadline) }
    }

    /// While the switch holds frames: once the guest owns the current receive descriptor
    /// (or the receiver went off, or the ring is unreadable, so the frame will be dropped
    /// rather than stored) delivery resumes; until then the ring is polled.
    func checkReceiveRoom() {
        let c0 = csr[0]
        let receiving = c0 & CSR0.RXON != 0 && c0 & CSR0.STOP == 0 && csr[5] & CSR5.SPND == 0
            && csr[15] & CSR15.LOOP == 0
        if receiving {
            dmaAllowed = pciCommand(host) & 0x4 != 0
            if dmaAllowed, let d = loadDescriptor(at: rxDescriptorAddress(rxIndex)), !d.owned {
                requestPoll(after: rxPollDelay)
                return
            }
        }
        rxWaiting = false
        rxReady(port)
    }

    /// Whether the transmit ring should be polled.
    var pollWanted: Bool {
        let c0 = csr[0]
        return c0 & CSR0.TXON != 0 && c0 & CSR0.STOP == 0 && csr[5] & CSR5.SPND == 0
            && csr[4] & CSR4.TXDPOLL == 0 && !txStalled
    }

    /// Asks for a poll `delay` ns from now (the earliest request wins).
    func requestPoll(after delay: UInt64) {
        let deadline = max(clockNs(host) &+ delay, 1)
        pollArmed = true
        if armAt == 0 || deadline < armAt { armAt = deadline }
    }

    // MARK: entry points

    func barRead(offset: UInt64, size: UInt32) -> UInt64 {
        let ones: UInt64 = size >= 8 ? ~0 : (UInt64(1) << (8 * UInt64(size))) &- 1
        guard lockLive() else { return ones }
        let v = ioRead(offset: offset, size: size) & ones
        finish()
        return v
    }

    func barWrite(offset: UInt64, size: UInt32, value: UInt64) {
        guard lockLive() else { return }
        ioWrite(offset: offset, size: size, value: value)
        finish()
    }

    /// A frame from the switch, on the port's receive thread. HV_EAGAIN (no receive
    /// buffer) makes the switch hold it until `rx_ready`.
    func receive(_ frame: UnsafeRawPointer?, _ len: Int) -> Int32 {
        guard let frame, len > 0 else { return HV_EINVAL }
        guard lockLive() else { return HV_EIO }
        let r = receiveFrame(UnsafeRawBufferPointer(start: frame, count: len), loopback: false)
        finish()
        return r
    }

    func linkChanged(_ up: Bool) {
        guard lockLive() else { return }
        linkUp = up
        finish()
    }

    /// The poll timer: [device] on the host timer thread.
    func pollTimerFired() {
        guard lockLive() else { return }
        pollArmed = false
        if rxWaiting { rxPollDelay = min(rxPollDelay &* 2, Self.pollIntervalNs) }
        if pollWanted || txContinue || csr[0] & CSR0.TDMD != 0 {
            txContinue = false
            transmitPass()
        }
        finish()
    }

    /// Power-on or guest-visible reset (the RST pin: H_RESET).
    func powerOnReset() {
        guard lockLive() else { return }
        hardReset()
        finish()
    }

    /// The VM runs again. Link changes are not delivered while paused: read the link.
    func resumed() {
        guard lockLive() else { return }
        if let port, let linkUpFn = services.pointee.net_link_up { linkUp = linkUpFn(port) != 0 }
        pollArmed = false
        finish()
    }

    /// Called once by destroy, after the host detached the port (its receive thread is
    /// stopped) and cancelled the poll timer. A poll callback may still be running on the
    /// timer thread: timer_cancel_wait waits it out, and then nothing can call the
    /// instance, so it may be freed (returns true). Without hv.timer/1 (an older host) it
    /// only marks itself dead and frees its buffers; the object and its mutex stay
    /// allocated for a late callback to find it dead (returns false).
    func shutdown() -> Bool {
        let quiet = pollTimer.map { timerCancelWait?(host, $0) == HV_OK } ?? true
        pthread_mutex_lock(mutex)
        dead = true
        pthread_mutex_unlock(mutex)
        freeBuffers()
        return quiet
    }

    /// Counts the result of a send (a failure is the link going down meanwhile).
    func countSend(_ rc: Int32) {
        if rc == HV_OK { framesSent &+= 1 } else { sendFailures &+= 1 }
    }

    // MARK: interrupts

    /// Recomputes CSR0.INTR and drives INTA# = INTR && INEA.
    func updateIRQ() {
        let c0 = csr[0], c4 = csr[4], c5 = csr[5]
        var intr = c0 & ~csr[3] & CSR0.interruptSources != 0
        if !intr {
            // Each CSR4 status bit sits one above its mask bit; UINT has no mask.
            let c4Pending = (c4 >> 1) & ~c4 & (CSR4.MFCOM | CSR4.RCVCCOM | CSR4.TXSTRTM | CSR4.JABM)
            intr = c4Pending != 0 || c4 & CSR4.UINT != 0
        }
        if !intr {
            // Each CSR5 status bit sits one above its enable bit.
            intr = (c5 >> 1) & c5 & (CSR5.SINTE | CSR5.EXDINTE | CSR5.MPINTE) != 0
        }
        csr[0] = intr ? c0 | CSR0.INTR : c0 & ~CSR0.INTR
        let level = intr && c0 & CSR0.INEA != 0
        if level != intxLevel {
            intxLevel = level
            irqSetLevel(host, level ? 1 : 0)
        }
    }

    /// Re-drives INTx unconditionally (after load_state).
    func forceIRQ() {
        updateIRQ()
        irqSetLevel(host, intxLevel ? 1 : 0)
    }

    // MARK: guest memory

    /// Reads the bus-master bit; DMA is refused while it is clear (see README.md).
    func refreshDMA() -> Bool {
        dmaAllowed = pciCommand(host) & 0x4 != 0
        if !dmaAllowed { guestError("DMA with bus mastering disabled (PCI command bit 2)") }
        return dmaAllowed
    }

    @inline(__always) func dmaRead(_ gpa: UInt64, _ buf: UnsafeMutableRawPointer, _ len: Int) -> Bool {
        dmaAllowed && memRead(host, gpa, buf, len) == HV_OK
    }

    @inline(__always) func dmaWrite(_ gpa: UInt64, _ buf: UnsafeRawPointer, _ len: Int) -> Bool {
        dmaAllowed && memWrite(host, gpa, buf, len) == HV_OK
    }

    // MARK: logging

    func log(_ level: Int32, _ message: String) {
        message.withCString { logFn(host, level, $0) }
    }

    /// Logs a guest programming error, at most `guestErrorLogLimit` times per instance.
    func guestError(_ message: @autoclosure () -> String) {
        guard guestErrors <= Self.guestErrorLogLimit else { return }
        guestErrors += 1
        if guestErrors > Self.guestErrorLogLimit {
            log(HV_LOG_WARN, "guest error: further guest errors are not logged")
        } else {
            log(HV_LOG_WARN, "guest error: " + message())
        }
    }

    // MARK: reset

    /// The address PROM: MAC, reserved zeros, hardware id 0x11 at byte 9, checksum of
    /// bytes 0-11 and 14-15 at 12-13 (little endian), ASCII "WW" at 14-15.
    func buildPROM() {
        for i in 0..<16 { prom[i] = 0 }
        for i in 0..<6 { prom[i] = mac[i] }
        prom[9] = 0x11
        prom[14] = 0x57
        prom[15] = 0x57
        var sum: UInt16 = 0
        for i in 0..<16 { sum &+= UInt16(prom[i]) }
        prom[12] = UInt8(truncatingIfNeeded: sum)
        prom[13] = UInt8(truncatingIfNeeded: sum >> 8)
    }

    /// H_RESET: the RST pin (power-on, guest reset).
    func hardReset() {
        for i in 0..<128 { csr[i] = 0 }
        for i in 0..<BCR.count { bcr[i] = 0 }
        bcr[BCR.MSRDA] = 0x0005
        bcr[BCR.MSWRA] = 0x0005
        bcr[BCR.MC] = 0x0002
        bcr[BCR.LNKST] = 0x00C0
        bcr[BCR.LED1] = 0x0084
        bcr[BCR.LED2] = 0x0088
        bcr[BCR.LED3] = 0x0090
        bcr[BCR.BSBC] = 0x9001
        bcr[BCR.EECAS] = 0x0002
        bcr[BCR.SWS] = 0x0200
        bcr[BCR.PCILAT] = 0xFF06
        rxLen = 1
        txLen = 1
        softReset()
    }

    /// S_RESET: reading the RESET register (also part of H_RESET). DWIO is kept.
    func softReset() {
        rap = 0
        csr[0] = CSR0.STOP
        csr[3] = 0
        csr[4] = CSR4.resetValue
        csr[5] = 0
        csr[6] = 0
        for i in 8...11 { csr[i] = 0 }
        csr[12] = UInt16(prom[0]) | UInt16(prom[1]) << 8
        csr[13] = UInt16(prom[2]) | UInt16(prom[3]) << 8
        csr[14] = UInt16(prom[4]) | UInt16(prom[5]) << 8
        csr[15] &= CSR15.keptBySoftReset
        csr[80] = 0x1410
        csr[88] = 0x1003
        csr[89] = 0x0262
        csr[94] = 0
        csr[100] = 0x0200
        csr[103] = 0x0105
        csr[112] = 0
        csr[114] = 0
        csr[122] = 0
        csr[124] = 0
        rdra = 0
        tdra = 0
        rxIndex = 0
        txIndex = 0
        txStalled = false
        txContinue = false
    }
}
