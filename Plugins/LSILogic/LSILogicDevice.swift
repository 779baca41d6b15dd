import Glibc
import PluginABI

/// One LSI53C1030 Fusion-MPT SPI adapter: the MPI message unit (doorbell handshake,
/// request/reply FIFOs, interrupt registers, diagnostic reset) in front of the
/// VMkernel's SCSI layer ("hv.scsi/1"), which executes every CDB.
///
/// Threading (the model sets HV_DEVICE_THREAD_SAFE; see README.md):
/// - `mutex` guards all state. Register accesses (vCPU threads), SCSI completions (host
///   I/O threads) and reset (control thread) take it.
/// - `abort_all` waits for completions, which take `mutex`; so task management and
///   resets record the abort in `deferredAborts` under `mutex` and run it after
///   releasing it (`finish`), then post what must follow the abort (a task-management
///   reply) under `mutex` again.
/// - Requests in flight carry a generation in their tag: after a reset, completions
///   of older requests find a different generation and are dropped.
final class LSILogicDevice {
    // MARK: limits (also what IOC FACTS reports)

    static let requestFrameBytes = 128           // RequestFrameSize 32 dwords
    static let globalCredits = 128               // requests the host may have outstanding
    static let fifoDepth = 256                   // reply free and reply post FIFOs
    static let replyQueueDepth = 255
    static let maxChainDepth = 128               // chain elements per SCSI IO request
    static let maxSGEs = 2048                    // elements walked per request, zero-length included
    static let maxTargets = 16
    static let initiatorID: UInt8 = 7
    static let handshakeMaxDwords = 255
    /// Replies that may wait for a free reply frame or room in the post FIFO: one per
    /// request in flight plus events and doorbell-borne task-management replies.
    static let pendingReplyLimit = globalCredits + 64
    static let guestErrorLogLimit = 32

    // MARK: host services (validated in init)

    let host: OpaquePointer
    let services: UnsafePointer<hv_host_services>
    private let memReadFn: @convention(c) (OpaquePointer?, UInt64, UnsafeMutableRawPointer?, Int) -> Int32
    private let memWriteFn: @convention(c) (OpaquePointer?, UInt64, UnsafeRawPointer?, Int) -> Int32
    let irqSetLevel: @convention(c) (OpaquePointer?, Int32) -> Void
    private let pciCommand: @convention(c) (OpaquePointer?) -> UInt16
    private let logFn: @convention(c) (OpaquePointer?, Int32, UnsafePointer<CChar>?) -> Void
    let bus: OpaquePointer
    let scsiSubmit: @convention(c) (OpaquePointer?, UnsafePointer<hv_scsi_request>?) -> Int32
    let scsiAbortAll: @convention(c) (OpaquePointer?, Int32, Int32) -> Int32

    let mutex: UnsafeMutablePointer<pthread_mutex_t>

    // MARK: IOC state (under `mutex`)

    var state: MPI.IOCState = .ready
    var faultCode: UInt16 = 0
    var whoInit: UInt8 = 0
    var handshake = Handshake.idle
    var doorbellInterrupt = false
    var intMask: UInt32 = 0
    var diagnostic: UInt32 = 0
    var writeSequenceIndex = 0

    // IOC INIT parameters.
    var replyFrameSize = 0
    var hostMFAHigh: UInt64 = 0
    var senseBufferHigh: UInt64 = 0
    var maxDevices: UInt8 = 16
    var maxBuses: UInt8 = 1
    /// Event notification: on, and the MsgContext the events reply to.
    var eventsOn = false
    var eventContext: UInt32 = 0

    // FIFOs: frames the host gave us for address replies, replies the host reads, and
    // replies waiting for either.
    var freeFrames = Ring(capacity: LSILogicDevice.fifoDepth)
    var postFIFO = Ring(capacity: LSILogicDevice.fifoDepth)
    var pendingReplies: [PendingReply] = []
    var pendingHead = 0

    // Requests in flight.
    var slots: [InFlight?] = Array(repeating: nil, count: LSILogicDevice.globalCredits)
    var freeSlots: [Int] = Array((0..<LSILogicDevice.globalCredits).reversed())
    var generation: UInt32 = 1

    /// Aborts to run once `mutex` is released, in order.
    var deferredAborts: [DeferredAbort] = []
    /// Pages written with WRITE_CURRENT / WRITE_NVRAM, by page key.
    var pageOverrides: [UInt64: [UInt8]] = [:]

    var intxLevel = false
    var dmaAllowed = false
    var guestErrors = 0

    enum Handshake {
        case idle
        /// The host is writing `expected` request dwords.
        case receiving(expected: Int, dwords: [UInt32])
        /// The host reads the reply 16 bits at a time.
        case replying(words: [UInt16], index: Int)
    }

    enum PendingReply {
        case context(UInt32)
        case address([UInt8])
    }

    struct InFlight {
        var msgContext: UInt32
        var target: UInt8
        var bus: UInt8
        var lun: UInt8
        var cdbLength: UInt8
        var senseLength: UInt8
        var msgFlags: UInt8
        var senseAddress: UInt64
        var dataLength: UInt32
        var generation: UInt32
    }

    struct DeferredAbort {
        var target: Int32
        var reset: Bool
        /// The task-management reply to post after the abort, if any.
        var reply: [UInt8]?
        /// Whether to announce a bus reset event after it.
        var busResetEvent: Bool
    }

    /// A fixed-capacity FIFO of dwords.
    struct Ring {
        private var items: [UInt32]
        private var head = 0
        private(set) var count = 0
        init(capacity: Int) { items = Array(repeating: 0, count: capacity) }
        var isEmpty: Bool { count == 0 }
        var isFull: Bool { count == items.count }
        mutating func push(_ v: UInt32) {
            items[(head + count) % items.count] = v
            count += 1
        }
        mutating func pop() -> UInt32 {
            let v = items[head]
            head = (head + 1) % items.count
            count -= 1
            return v
        }
        mutating func clear() { head = 0; count = 0 }
        /// Oldest first.
        var contents: [UInt32] { (0..<count).map { items[(head + $0) % items.count] } }
    }

    init?(services: UnsafePointer<hv_host_services>, host: OpaquePointer, scsi: UnsafePointer<hv_scsi_ext>,
          bus: OpaquePointer) {
        let s = services.pointee
        let x = scsi.pointee
        guard let memRead = s.mem_read, let memWrite = s.mem_write, let irq = s.irq_set_level,
              let command = s.pci_command, let log = s.log, let submit = x.submit,
              let abortAll = x.abort_all else { return nil }
        self.host = host
        self.services = services
        memReadFn = memRead
        memWriteFn = memWrite
        irqSetLevel = irq
        pciCommand = command
        logFn = log
        self.bus = bus
        scsiSubmit = submit
        scsiAbortAll = abortAll
        mutex = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        hardReset()
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }


    // MARK: locking

    @inline(__always) func lock() { pthread_mutex_lock(mutex) }

    /// Ends a locked operation: drives INTx, releases `mutex`, then runs the aborts the
    /// operation asked for (each followed by its task-management reply).
    func finish() {
        updateIRQ()
        while !deferredAborts.isEmpty {
            let work = deferredAborts
            deferredAborts = []
            let gen = generation
            pthread_mutex_unlock(mutex)
            for a in work { _ = scsiAbortAll(bus, a.target, a.reset ? 1 : 0) }
            pthread_mutex_lock(mutex)
            // A reset meanwhile discarded these replies with everything else.
            if gen == generation {
                for a in work {
                    if let reply = a.reply { queueReply(.address(reply)) }
                    if a.busResetEvent { postEvent(MPI.Event.ioBusReset, data: [0]) }
                }
            }
            updateIRQ()
        }
        pthread_mutex_unlock(mutex)
    }

    // MARK: entry points

    func barRead(offset: UInt64, size: UInt32) -> UInt64 {
        guard size == 4 else { return size >= 8 ? ~0 : (UInt64(1) << (8 * UInt64(size))) &- 1 }
        lock()
        let v = registerRead(offset & 0xFF)
        finish()
        return UInt64(v)
    }

    func barWrite(offset: UInt64, size: UInt32, value: UInt64) {
        guard size == 4 else {
            lock()
            guestError("\(size)-byte write at register offset 0x\(String(offset, radix: 16)) (registers are 32-bit)")
            pthread_mutex_unlock(mutex)
            return
        }
        lock()
        registerWrite(offset & 0xFF, UInt32(truncatingIfNeeded: value))
        finish()
    }

    /// Power-on or guest reset (the device `reset` op).
    func powerOnReset() {
        lock()
        hardReset()
        deferredAborts.append(DeferredAbort(target: -1, reset: false, reply: nil, busResetEvent: false))
        finish()
    }

    // MARK: registers

    func registerRead(_ offset: UInt64) -> UInt32 {
        switch offset {
        case MPI.Register.doorbell: return doorbellRead()
        case MPI.Register.hostDiagnostic: return diagnostic
        case MPI.Register.intStatus:
            return (doorbellInterrupt ? MPI.IntStatus.doorbell : 0) | (postFIFO.isEmpty ? 0 : MPI.IntStatus.reply)
        case MPI.Register.intMask: return intMask
        case MPI.Register.replyFIFO:
            guard !postFIFO.isEmpty else { return 0xFFFF_FFFF }
            let v = postFIFO.pop()
            deliverPending()
            return v
        // WriteSequence, the test base and the diagnostic memory window read as zero:
        // the IOC's own memory is not modelled.
        default: return 0
        }
    }

    func registerWrite(_ offset: UInt64, _ value: UInt32) {
        switch offset {
        case MPI.Register.doorbell: doorbellWrite(value)
        case MPI.Register.writeSequence: writeSequence(value)
        case MPI.Register.hostDiagnostic: diagnosticWrite(value)
        case MPI.Register.intStatus: intStatusWrite()
        case MPI.Register.intMask: intMask = value & (MPI.IntStatus.doorbell | MPI.IntStatus.reply)
        case MPI.Register.requestFIFO, MPI.Register.highPriorityRequestFIFO: postRequest(value)
        case MPI.Register.replyFIFO: postFreeFrame(value)
        default: break
        }
    }

    var stateBits: UInt32 { state.rawValue << 28 }

    func doorbellRead() -> UInt32 {
        switch handshake {
        case .idle:
            let low = state == .fault ? UInt32(faultCode) : 0
            return stateBits | UInt32(whoInit & 7) << MPI.Doorbell.whoInitShift | low
        case .receiving:
            return stateBits | MPI.Doorbell.active
        case .replying(let words, let index):
            guard index < words.count else { return stateBits | MPI.Doorbell.active }
            handshake = .replying(words: words, index: index + 1)
            return stateBits | MPI.Doorbell.active | UInt32(words[index])
        }
    }

    func doorbellWrite(_ value: UInt32) {
        if case .receiving(let expected, var dwords) = handshake {
            dwords.append(value)
            if dwords.count < expected {
                handshake = .receiving(expected: expected, dwords: dwords)
            } else {
                handshake = .idle
                var frame = [UInt8](repeating: 0, count: dwords.count * 4)
                for (i, d) in dwords.enumerated() { frame.put32(i * 4, d) }
                handshakeRequest(frame)
            }
            return
        }
        let function = UInt8(value >> MPI.Doorbell.functionShift)
        switch function {
        case MPI.Function.messageUnitReset, MPI.Function.ioUnitReset:
            messageUnitReset()
        case MPI.Function.handshake:
            guard state == .ready || state == .operational else {
                guestError("handshake in IOC state \(state)")
                return
            }
            let dwords = Int((value >> MPI.Doorbell.dwordsShift) & 0xFF)
            guard dwords >= 3 else {
                guestError("handshake of \(dwords) dwords (a request header takes 3)")
                return
            }
            handshake = .receiving(expected: dwords, dwords: [])
            doorbellInterrupt = true
        default:
            guestError("doorbell function 0x\(String(function, radix: 16)) not supported")
        }
    }

    /// Writing the interrupt status register acknowledges the doorbell interrupt. While a
    /// reply is being read the next word is ready at once, and the acknowledgement after
    /// the last word ends the handshake with a final doorbell interrupt.
    func intStatusWrite() {
        doorbellInterrupt = false
        if case .replying(let words, let index) = handshake {
            if index >= words.count { handshake = .idle }
            doorbellInterrupt = true
        }
    }

    func writeSequence(_ value: UInt32) {
        if diagnostic & MPI.Diag.drwe != 0 {
            diagnostic &= ~MPI.Diag.drwe
            writeSequenceIndex = 0
            return
        }
        if value & 0xF == MPI.Diag.writeSequenceKeys[writeSequenceIndex] {
            writeSequenceIndex += 1
            if writeSequenceIndex == MPI.Diag.writeSequenceKeys.count {
                diagnostic |= MPI.Diag.drwe
                writeSequenceIndex = 0
            }
        } else {
            writeSequenceIndex = 0
        }
    }

    func diagnosticWrite(_ value: UInt32) {
        guard diagnostic & MPI.Diag.drwe != 0 else {
            guestError("host diagnostic write without the write sequence")
            return
        }
        // RESET_HISTORY is cleared by writing it as zero.
        if value & MPI.Diag.resetHistory == 0 { diagnostic &= ~MPI.Diag.resetHistory }
        diagnostic = (diagnostic & ~MPI.Diag.writable) | (value & MPI.Diag.writable)
        if value & MPI.Diag.resetAdapter != 0 {
            hardReset()
            diagnostic |= MPI.Diag.resetHistory
            deferredAborts.append(DeferredAbort(target: -1, reset: false, reply: nil, busResetEvent: false))
        }
    }

    // MARK: resets and faults

    /// Message unit reset: back to READY; requests in flight are ended and their replies
    /// dropped, the FIFOs are emptied. IOC INIT parameters and the mask survive.
    func messageUnitReset() {
        let hadRequests = freeSlots.count < slots.count
        generation &+= 1
        for i in slots.indices where slots[i] != nil { slots[i] = nil }
        freeSlots = Array((0..<slots.count).reversed())
        freeFrames.clear()
        postFIFO.clear()
        pendingReplies = []
        pendingHead = 0
        handshake = .idle
        doorbellInterrupt = false
        eventsOn = false
        state = .ready
        faultCode = 0
        if hadRequests {
            deferredAborts.append(DeferredAbort(target: -1, reset: false, reply: nil, busResetEvent: false))
        }
    }

    /// Adapter reset (power-on, diagnostic RESET_ADAPTER): a message unit reset plus the
    /// IOC INIT parameters, the diagnostic state and changed configuration pages.
    func hardReset() {
        messageUnitReset()
        deferredAborts = []
        intMask = MPI.IntStatus.doorbell | MPI.IntStatus.reply
        diagnostic = 0
        writeSequenceIndex = 0
        whoInit = 0
        replyFrameSize = 0
        hostMFAHigh = 0
        senseBufferHigh = 0
        maxDevices = UInt8(Self.maxTargets)
        maxBuses = 1
        pageOverrides = [:]
    }

    /// The IOC stops: FAULT with `code` in the doorbell's low 16 bits until a reset.
    func fault(_ code: UInt16, _ why: @autoclosure () -> String) {
        guard state != .fault else { return }
        guestError("IOC fault 0x\(String(code, radix: 16)): " + why())
        state = .fault
        faultCode = code
    }

    // MARK: FIFOs and replies

    func postFreeFrame(_ address: UInt32) {
        guard !freeFrames.isFull else {
            fault(MPI.IOCStatus.insufficientResources, "reply free FIFO overflow")
            return
        }
        freeFrames.push(address)
        deliverPending()
    }

    /// Queues a reply for the post FIFO; delivered in order as frames and room allow.
    func queueReply(_ reply: PendingReply) {
        guard state != .fault else { return }
        guard pendingReplies.count - pendingHead < Self.pendingReplyLimit else {
            fault(MPI.IOCStatus.insufficientResources, "replies waiting for reply frames overflow")
            return
        }
        pendingReplies.append(reply)
        deliverPending()
    }

    func deliverPending() {
        while pendingHead < pendingReplies.count, !postFIFO.isFull {
            switch pendingReplies[pendingHead] {
            case .context(let ctx):
                postFIFO.push(ctx)
            case .address(let bytes):
                guard !freeFrames.isEmpty else { return }
                let frame = freeFrames.pop()
                let len = min(bytes.count, replyFrameSize)
                if len > 0 {
                    refreshDMA()
                    guard dmaWrite(hostMFAHigh | UInt64(frame), bytes, len) else {
                        fault(MPI.IOCStatus.internalError, "reply frame 0x\(String(frame, radix: 16)) is not guest RAM")
                        return
                    }
                }
                postFIFO.push(MPI.addressReplyBit | frame >> 1)
            }
            pendingHead += 1
        }
        if pendingHead == pendingReplies.count {
            pendingReplies.removeAll(keepingCapacity: true)
            pendingHead = 0
        }
    }

    // MARK: interrupts

    func updateIRQ() {
        let pending = (doorbellInterrupt ? MPI.IntStatus.doorbell : 0) | (postFIFO.isEmpty ? 0 : MPI.IntStatus.reply)
        let level = pending & ~intMask != 0
        if level != intxLevel {
            intxLevel = level
            irqSetLevel(host, level ? 1 : 0)
        }
    }

    // MARK: guest memory

    func refreshDMA() {
        dmaAllowed = pciCommand(host) & 0x4 != 0
    }

    func dmaRead(_ gpa: UInt64, _ count: Int) -> [UInt8]? {
        guard dmaAllowed else { return nil }
        var buf = [UInt8](repeating: 0, count: count)
        let rc = buf.withUnsafeMutableBytes { memReadFn(host, gpa, $0.baseAddress, count) }
        return rc == HV_OK ? buf : nil
    }

    func dmaRead32(_ gpa: UInt64) -> UInt32? {
        guard dmaAllowed else { return nil }
        var v: UInt32 = 0
        return memReadFn(host, gpa, &v, 4) == HV_OK ? UInt32(littleEndian: v) : nil
    }

    func dmaWrite(_ gpa: UInt64, _ bytes: [UInt8], _ count: Int) -> Bool {
        guard dmaAllowed else { return false }
        return bytes.withUnsafeBytes { memWriteFn(host, gpa, $0.baseAddress, count) } == HV_OK
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
}
