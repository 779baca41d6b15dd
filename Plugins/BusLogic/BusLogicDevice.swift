import Glibc
import PluginABI

/// One BusLogic BT-958 MultiMaster host adapter. It emulates the adapter only: the
/// host adapter registers and commands, the mailboxes and CCBs; every SCSI command goes to
/// the VMkernel's SCSI layer ("hv.scsi/1").
///
/// Threading (the model sets HV_DEVICE_THREAD_SAFE; see README.md):
/// - `mutex` guards everything below. Register accesses (vCPU threads, PCI BAR and ISA
///   window), SCSI completions (host I/O threads) and reset (control thread) take it.
/// - `abort_all` waits for completions, which take `mutex`: it is called only after
///   `mutex` is released (`finish` runs the queued task-management work), and every
///   request carries the reset generation in its tag, so completions of requests
///   from before a reset are dropped.
final class BusLogicDevice {
    // MARK: limits

    /// The adapter's own SCSI id (Inquire Configuration, AutoSCSI).
    static let adapterID: UInt32 = 7
    /// Requests the adapter keeps in flight; further outgoing mailboxes wait.
    static let maxInFlight = 256
    /// Scatter/gather entries per CCB (Inquire Extended Setup Information reports it);
    /// it is also the most segments one request hands to hv.scsi.
    static let scatterGatherLimit = Int(HV_SCSI_MAX_SEGMENTS)
    /// Incoming-mailbox entries waiting for a free slot before the adapter stops taking
    /// outgoing mailboxes.
    static let maxPendingIncoming = 256
    /// Guest-error log lines per instance before they are suppressed.
    static let guestErrorLogLimit = 32
    /// ISA-compatible port windows, indexed by the Modify I/O Address code (0-5).
    static let isaPorts: [UInt64] = [0x330, 0x334, 0x230, 0x234, 0x130, 0x134]
    /// The 8-port blocks claimed for them (windows 2k and 2k+1 share block k).
    static let isaBlocks: [UInt64] = [0x330, 0x230, 0x130]
    /// Modify I/O Address code for "ISA port disabled".
    static let isaDisabled: UInt8 = 6

    // MARK: host services

    let host: OpaquePointer
    private let memRead: @convention(c) (OpaquePointer?, UInt64, UnsafeMutableRawPointer?, Int) -> Int32
    private let memWrite: @convention(c) (OpaquePointer?, UInt64, UnsafeRawPointer?, Int) -> Int32
    private let irqSetLevel: @convention(c) (OpaquePointer?, Int32) -> Void
    private let pciCommand: @convention(c) (OpaquePointer?) -> UInt16
    private let logFn: @convention(c) (OpaquePointer?, Int32, UnsafePointer<CChar>?) -> Void
    let scsiBus: OpaquePointer
    private let scsiSubmit: @convention(c) (OpaquePointer?, UnsafePointer<hv_scsi_request>?) -> Int32
    private let scsiTargetMask: @convention(c) (OpaquePointer?) -> UInt32
    private let scsiAbortAll: @convention(c) (OpaquePointer?, Int32, Int32) -> Int32
    let statePut: (@convention(c) (OpaquePointer?, UnsafePointer<CChar>?, UInt32, UnsafeRawPointer?, Int) -> Int32)?
    let stateGet: (@convention(c) (OpaquePointer?, UnsafePointer<CChar>?, UInt32, UnsafeMutableRawPointer?, Int) -> Int32)?
    /// The completion callback handed to hv.scsi (set by the plugin glue).
    let completion: hv_scsi_complete_fn

    let mutex: UnsafeMutablePointer<pthread_mutex_t>

    // MARK: adapter registers (under `mutex`)

    /// DACT shows on the first status read after a reset, then the diagnostics are done.
    var diagnosticPending = false
    var commandInvalid = false
    var interrupts: UInt8 = 0
    var interruptsEnabled = true
    var intxLevel = false

    /// The command in progress: opcode, parameters so far, how many it takes.
    var opcode: UInt8?
    var parameters: [UInt8] = []
    var parametersExpected = 0
    /// Reply bytes of the command in progress and how many the guest has read.
    var reply: [UInt8] = []
    var replyRead = 0

    // MARK: configuration set by commands (under `mutex`)

    var mailboxes = MailboxArea.none
    var outgoingIndex: UInt32 = 0
    var incomingIndex: UInt32 = 0
    var strictRoundRobin = false
    var extendedLUN = false
    var outgoingAvailableInterrupt = false
    /// The ISA window that decodes (0-5) or `isaDisabled`; which windows were claimed.
    var isaPort: UInt8 = BusLogicDevice.isaDisabled
    var isaDefault: UInt8 = BusLogicDevice.isaDisabled
    var isaClaimed = [Bool](repeating: false, count: 6)

    // MARK: requests (under `mutex`)

    var slots: [ActiveRequest?] = Array(repeating: nil, count: BusLogicDevice.maxInFlight)
    var freeSlots: [Int] = Array((0..<BusLogicDevice.maxInFlight).reversed())
    /// Bumped by soft and hard resets; the upper half of every request tag.
    var generation: UInt32 = 0
    /// Incoming-mailbox entries not yet written (their slot was still in use).
    var pendingIncoming: [IncomingEntry] = []
    var pendingHead = 0
    /// Outgoing mailboxes wait because the adapter was full.
    var scanDeferred = false
    /// Task management to run once `mutex` is released (abort_all waits for completions).
    var deferredResets: [DeferredReset] = []
    var guestErrors = 0
    var dead = false

    /// Segment scratch for one request (hv.scsi copies the segments in submit).
    let segments: UnsafeMutablePointer<hv_disk_segment>

    init?(services: UnsafePointer<hv_host_services>, host: OpaquePointer, scsi: UnsafePointer<hv_scsi_ext>,
          bus: OpaquePointer, completion: hv_scsi_complete_fn) {
        let s = services.pointee
        let x = scsi.pointee
        guard let memRead = s.mem_read, let memWrite = s.mem_write, let irq = s.irq_set_level,
              let command = s.pci_command, let log = s.log, let submit = x.submit,
              let mask = x.target_mask, let abortAll = x.abort_all else { return nil }
        self.host = host
        self.memRead = memRead
        self.memWrite = memWrite
        self.irqSetLevel = irq
        self.pciCommand = command
        self.logFn = log
        self.scsiBus = bus
        self.scsiSubmit = submit
        self.scsiTargetMask = mask
        self.scsiAbortAll = abortAll
        self.completion = completion
        self.statePut = s.state_put
        self.stateGet = s.state_get
        mutex = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        segments = .allocate(capacity: Self.scatterGatherLimit)
        segments.initialize(repeating: hv_disk_segment(), count: Self.scatterGatherLimit)
        adapterReset(hard: true)
        diagnosticPending = false
        deferredResets = []
    }

    deinit {
        segments.deallocate()
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }


    // MARK: locking

    /// Takes `mutex`; false (and released) once the instance is destroyed.
    @inline(__always) func lockLive() -> Bool {
        pthread_mutex_lock(mutex)
        if dead { pthread_mutex_unlock(mutex); return false }
        return true
    }

    /// Ends a locked operation: updates INTx, releases `mutex`, then runs task management
    /// that had to wait for it (abort_all waits for completions, which take `mutex`).
    func finish() {
        while true {
            updateIRQ()
            let work = deferredResets
            deferredResets = []
            pthread_mutex_unlock(mutex)
            guard !work.isEmpty else { return }
            for w in work { _ = scsiAbortAll(scsiBus, w.target, w.resetTargets ? 1 : 0) }
            guard lockLive() else { return }
            for w in work {
                if let ccb = w.ccb, w.generation == generation { completeBusDeviceReset(ccb) }
            }
        }
    }

    func updateIRQ() {
        let level = interruptsEnabled && interrupts & Interrupt.sources != 0
        if level != intxLevel {
            intxLevel = level
            irqSetLevel(host, level ? 1 : 0)
        }
    }

    func shutdown() {
        pthread_mutex_lock(mutex)
        dead = true
        pthread_mutex_unlock(mutex)
    }

    // MARK: entry points

    func barRead(offset: UInt64, size: UInt32) -> UInt64 {
        guard lockLive() else { return ones(size) }
        var v: UInt64 = 0
        for i in 0..<UInt64(min(size, 8)) {
            v |= UInt64(registerRead(offset + i)) << (8 * i)
        }
        finish()
        return v
    }

    func barWrite(offset: UInt64, size: UInt32, value: UInt64) {
        guard lockLive() else { return }
        for i in 0..<UInt64(min(size, 8)) {
            registerWrite(offset + i, UInt8(truncatingIfNeeded: value >> (8 * i)))
        }
        finish()
    }

    /// The ISA window holding `port`, when it is the selected one (only it decodes).
    private func isaWindowOffset(_ port: UInt64) -> UInt64? {
        guard Int(isaPort) < Self.isaPorts.count else { return nil }
        let base = Self.isaPorts[Int(isaPort)]
        return port >= base && port < base + 4 ? port - base : nil
    }

    func isaRead(port: UInt64, size: UInt32) -> UInt64 {
        guard lockLive() else { return ones(size) }
        var v: UInt64 = 0
        for i in 0..<UInt64(min(size, 4)) {
            let b = isaWindowOffset(port + i).map { registerRead($0) } ?? 0xFF
            v |= UInt64(b) << (8 * i)
        }
        finish()
        return v
    }

    func isaWrite(port: UInt64, size: UInt32, value: UInt64) {
        guard lockLive() else { return }
        for i in 0..<UInt64(min(size, 4)) {
            if let offset = isaWindowOffset(port + i) {
                registerWrite(offset, UInt8(truncatingIfNeeded: value >> (8 * i)))
            }
        }
        finish()
    }

    /// Power-on reset (the device `reset` op): the adapter comes up ready, nothing in
    /// flight, the ISA window at its default.
    func powerOnReset() {
        guard lockLive() else { return }
        adapterReset(hard: true)
        isaPort = isaDefault
        diagnosticPending = false
        deferredResets = []   // nothing is in flight at power-on
        finish()
    }

    private func ones(_ size: UInt32) -> UInt64 {
        size >= 8 ? ~0 : (UInt64(1) << (8 * UInt64(size))) &- 1
    }

    // MARK: registers

    /// Offsets 0-3 are the adapter's four ports; the rest of the BAR reads as all ones.
    func registerRead(_ offset: UInt64) -> UInt8 {
        switch offset {
        case 0: return statusRegister()
        case 1: return dataInRegister()
        case 2:
            let pending = interrupts & Interrupt.sources
            return pending | (pending != 0 ? Interrupt.valid : 0)
        case 3: return 0x00   // geometry: no BIOS drives, extended translation off
        default: return 0xFF
        }
    }

    func registerWrite(_ offset: UInt64, _ value: UInt8) {
        switch offset {
        case 0: controlWrite(value)
        case 1: commandWrite(value)
        default: break
        }
    }

    func statusRegister() -> UInt8 {
        if diagnosticPending {
            diagnosticPending = false
            return Status.diagnosticActive
        }
        var s: UInt8 = 0
        if opcode == nil { s |= Status.ready }
        if replyRead < reply.count { s |= Status.dataInReady }
        if commandInvalid { s |= Status.commandInvalid }
        if case .none = mailboxes { s |= Status.initRequired }
        return s
    }

    func dataInRegister() -> UInt8 {
        guard opcode != nil, replyRead < reply.count else { return reply.last ?? 0 }
        let b = reply[replyRead]
        replyRead += 1
        if replyRead == reply.count { endCommand(interrupt: true) }
        return b
    }

    func controlWrite(_ value: UInt8) {
        if value & (Control.hardReset | Control.softReset) != 0 {
            adapterReset(hard: value & Control.hardReset != 0)
            return
        }
        if value & Control.interruptReset != 0 {
            interrupts = 0
            drainIncoming()
            resumeScanIfDeferred()
        }
        if value & Control.scsiBusReset != 0 {
            for i in slots.indices where slots[i] != nil { slots[i]!.abortReason = .busReset }
            deferredResets.append(DeferredReset(target: -1, resetTargets: true, ccb: nil, generation: generation))
        }
    }

    /// Hard reset: diagnostics and a SCSI bus reset. Soft reset: the adapter only. Both
    /// forget the mailboxes and what is in flight; neither touches the ISA window (a
    /// guest-initiated reset keeps what Modify I/O Address chose).
    func adapterReset(hard: Bool) {
        diagnosticPending = true
        commandInvalid = false
        interrupts = 0
        interruptsEnabled = true
        opcode = nil
        parameters = []
        reply = []
        replyRead = 0
        mailboxes = .none
        outgoingIndex = 0
        incomingIndex = 0
        strictRoundRobin = false
        extendedLUN = false
        outgoingAvailableInterrupt = false
        generation &+= 1
        let hadRequests = freeSlots.count != Self.maxInFlight
        slots = Array(repeating: nil, count: Self.maxInFlight)
        freeSlots = Array((0..<Self.maxInFlight).reversed())
        pendingIncoming = []
        pendingHead = 0
        scanDeferred = false
        if hard {
            deferredResets.append(DeferredReset(target: -1, resetTargets: true, ccb: nil, generation: generation))
        } else if hadRequests {
            // The adapter drops its commands without a bus reset: the targets end them
            // but keep their state.
            deferredResets.append(DeferredReset(target: -1, resetTargets: false, ccb: nil, generation: generation))
        }
    }

    // MARK: commands

    func commandWrite(_ value: UInt8) {
        guard let op = opcode else {
            startCommand(value)
            return
        }
        guard parameters.count < parametersExpected else {
            // A byte beyond the command's parameters (or during its reply): invalid.
            commandInvalid = true
            endCommand(interrupt: true)
            return
        }
        parameters.append(value)
        if op == Opcode.setAdapterOptions && parameters.count == 1 { parametersExpected = 1 + Int(value) }
        if parameters.count == parametersExpected { executeCommand() }
    }

    func startCommand(_ op: UInt8) {
        if op == Opcode.executeMailboxCommand {
            // The fast path drivers use while running: no command phase, no interrupt.
            drainIncoming()
            scanOutgoing()
            return
        }
        commandInvalid = false
        reply = []
        replyRead = 0
        parameters = []
        guard let count = Self.parameterCount(op) else {
            opcode = op
            commandInvalid = true
            endCommand(interrupt: true)
            guestError("invalid host adapter command 0x\(String(op, radix: 16))")
            return
        }
        opcode = op
        parametersExpected = count
        if count == 0 { executeCommand() }
    }

    /// Ends the command in progress; the adapter is ready again.
    func endCommand(interrupt: Bool) {
        opcode = nil
        parameters = []
        parametersExpected = 0
        reply = []
        replyRead = 0
        if interrupt { interrupts |= Interrupt.commandComplete }
    }

    /// Runs a command once its parameters are in: a reply to read, or done at once.
    func executeCommand() {
        guard let op = opcode else { return }
        switch commandOutcome(op, parameters) {
        case .reply(let bytes) where !bytes.isEmpty:
            reply = bytes
            replyRead = 0
        case .reply:
            endCommand(interrupt: true)
        case .silent:
            endCommand(interrupt: false)
        case .invalid:
            commandInvalid = true
            endCommand(interrupt: op != Opcode.modifyIOAddress)
        }
    }

    // MARK: logging

    func guestError(_ text: String) {
        guestErrors += 1
        guard guestErrors <= Self.guestErrorLogLimit else { return }
        let line = guestErrors == Self.guestErrorLogLimit ? text + " (further guest errors not logged)" : text
        line.withCString { logFn(host, HV_LOG_WARN, $0) }
    }

    // MARK: guest memory

    var busMaster: Bool { pciCommand(host) & 0x4 != 0 }

    @inline(__always) func dmaRead(_ gpa: UInt64, _ buf: UnsafeMutableRawPointer, _ len: Int) -> Bool {
        gpa <= UInt64(UInt32.max) && memRead(host, gpa, buf, len) == HV_OK
    }

    @inline(__always) func dmaWrite(_ gpa: UInt64, _ buf: UnsafeRawPointer, _ len: Int) -> Bool {
        gpa <= UInt64(UInt32.max) && memWrite(host, gpa, buf, len) == HV_OK
    }

    func readBytes(_ gpa: UInt64, _ count: Int) -> [UInt8]? {
        var b = [UInt8](repeating: 0, count: count)
        let ok = b.withUnsafeMutableBytes { dmaRead(gpa, $0.baseAddress!, count) }
        return ok ? b : nil
    }

    @discardableResult
    func writeBytes(_ gpa: UInt64, _ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { dmaWrite(gpa, $0.baseAddress!, bytes.count) }
    }

    // MARK: hv.scsi

    var targetMask: UInt32 { scsiTargetMask(scsiBus) & 0xFFFF & ~(1 << Self.adapterID) }

    func submit(_ req: inout hv_scsi_request) -> Int32 { scsiSubmit(scsiBus, &req) }
}

/// Where the mailboxes live (Initialize Mailbox: 24-bit, Initialize Extended Mailbox: 32-bit).
enum MailboxArea {
    case none
    case legacy24(base: UInt32, count: UInt32)
    case extended32(base: UInt32, count: UInt32)

    var count: UInt32 {
        switch self {
        case .none: return 0
        case .legacy24(_, let c), .extended32(_, let c): return c
        }
    }

    var entrySize: UInt32 {
        if case .legacy24 = self { return 4 }
        return 8
    }

    var outgoingBase: UInt64 {
        switch self {
        case .none: return 0
        case .legacy24(let b, _), .extended32(let b, _): return UInt64(b)
        }
    }

    var incomingBase: UInt64 { outgoingBase + UInt64(count) * UInt64(entrySize) }
}

/// Why an in-flight request ended early, for its host adapter status.
enum AbortReason {
    case none
    case mailbox
    case busDeviceReset
    case busReset
}

/// A CCB the adapter handed to hv.scsi.
struct ActiveRequest {
    var ccb: UInt32
    var target: UInt32
    var residualCCB: Bool
    var senseAddress: UInt64
    var senseLength: Int
    var abortReason: AbortReason
}

/// An incoming-mailbox entry to write.
struct IncomingEntry {
    var ccb: UInt32
    var adapterStatus: UInt8
    var targetStatus: UInt8
    var completion: UInt8
}

/// abort_all to run once `mutex` is released (with a reset of the targets for a bus or
/// device reset); `ccb` is a Bus Device Reset CCB to complete afterwards.
struct DeferredReset {
    var target: Int32
    var resetTargets: Bool
    var ccb: UInt32?
    var generation: UInt32
}
