import HVSupport

/// One vCPU's local APIC in xAPIC mode (the 4 KiB page at 0xFEE00000, which the vCPU
/// exit loop hands to ``Chipset/lapicRead(vcpu:offset:size:)``).
///
/// Registers: ID, version 0x00050014 (6 LVT entries), TPR, APR, PPR, EOI, LDR, DFR,
/// SVR, ISR/TMR/IRR (256 bits each), ESR, ICR low/high, LVT timer/thermal/perf/LINT0/
/// LINT1/error, timer initial/current count and divide configuration. The timer counts
/// at a 1 GHz bus clock (1 ns per count at divide-by-1) in one-shot or periodic mode;
/// TSC-deadline mode is not implemented (the mode bit is not writable). Periodic
/// interrupts come no closer than 100 µs apart.
///
/// Accesses must be 32 bits wide at 16-byte-aligned offsets to write; reads of 1, 2 or
/// 4 bytes inside a register's first dword are honoured. Everything else reads 0 and is
/// ignored on write.
///
/// Not thread-safe: the owner (``Chipset``) serialises every call.
final class LocalAPIC {
    static let defaultBase: UInt64 = 0xFEE0_0000
    static let version: UInt32 = 0x0005_0014
    static let minimumPeriod: UInt64 = 100_000

    enum LVT: Int, CaseIterable { case timer = 0, thermal, performance, lint0, lint1, error }
    static let lvtWritable: [UInt32] = [0x0003_00FF, 0x0001_07FF, 0x0001_07FF, 0x0001_A7FF, 0x0001_A7FF, 0x0001_00FF]
    static let lvtMasked: UInt32 = 1 << 16

    package let index: Int
    package var id: UInt32
    var tpr: UInt8 = 0
    var ldr: UInt32 = 0
    var dfr: UInt32 = 0xFFFF_FFFF
    var svr: UInt32 = 0xFF
    var isr = Bitmap256()
    var tmr = Bitmap256()
    var irr = Bitmap256()
    var esr: UInt32 = 0
    var pendingErrors: UInt32 = 0
    var icrLow: UInt32 = 0
    var icrHigh: UInt32 = 0
    var lvt = [UInt32](repeating: LocalAPIC.lvtMasked, count: 6)
    var initialCount: UInt32 = 0
    var divideConfig: UInt32 = 0
    var timerStart: UInt64 = 0
    var timerBaseCounts: UInt64 = 0    // counts already elapsed at `timerStart`
    var timerNext: UInt64?
    var nmiPending = false
    var extINTPending = false

    let now: () -> UInt64
    /// Sends an IPI from this APIC: the message and the ICR destination shorthand
    /// (0 none, 1 self, 2 all including self, 3 all excluding self).
    var sendIPI: (_ message: APICMessage, _ shorthand: UInt8) -> Void = { _, _ in }
    /// Broadcasts the EOI of a level-triggered vector to the I/O APIC.
    var eoiBroadcast: (UInt8) -> Void = { _ in }
    /// Something became pending for this vCPU.
    var signal: () -> Void = {}

    package init(index: Int, now: @escaping () -> UInt64) {
        self.index = index
        self.id = UInt32(truncatingIfNeeded: index) << 24
        self.now = now
    }

    // MARK: Reset

    /// The state INIT leaves (power-on state): software-disabled, every LVT masked.
    /// The APIC ID survives.
    func initReset() {
        tpr = 0; ldr = 0; dfr = 0xFFFF_FFFF; svr = 0xFF
        isr = Bitmap256(); tmr = Bitmap256(); irr = Bitmap256()
        esr = 0; pendingErrors = 0; icrLow = 0; icrHigh = 0
        for i in lvt.indices { lvt[i] = Self.lvtMasked }
        initialCount = 0; divideConfig = 0; timerNext = nil; timerBaseCounts = 0
        nmiPending = false; extINTPending = false
    }

    /// The state firmware leaves on the BSP: enabled (SVR 0x1FF), LINT0 ExtINT unmasked
    /// (virtual wire), LINT1 NMI, other LVTs masked. Application processors get the
    /// power-on state instead (they wait for INIT/SIPI).
    func firmwareReset(isBSP: Bool) {
        id = UInt32(truncatingIfNeeded: index) << 24
        initReset()
        if isBSP {
            svr = 0x1FF
            lvt[LVT.lint0.rawValue] = 0x700
            lvt[LVT.lint1.rawValue] = 0x400
        }
    }

    // MARK: State

    var physicalID: UInt8 { UInt8(truncatingIfNeeded: id >> 24) }
    var softwareEnabled: Bool { svr & 0x100 != 0 }
    var taskPriority: UInt8 {
        get { tpr }
        set { tpr = newValue }
    }

    var processorPriority: UInt8 {
        let isrv = isr.highest ?? 0
        return tpr >> 4 >= isrv >> 4 ? tpr : isrv & 0xF0
    }

    private var arbitrationPriority: UInt8 {
        let isrv = isr.highest ?? 0, irrv = irr.highest ?? 0
        if tpr >> 4 >= irrv >> 4 && tpr >> 4 > isrv >> 4 { return tpr }
        return max(tpr & 0xF0, isrv & 0xF0, irrv & 0xF0)
    }

    /// Whether LINT0 passes the 8259's INTR (ExtINT delivery, unmasked).
    var acceptsExtINT: Bool {
        let l = lvt[LVT.lint0.rawValue]
        return l & Self.lvtMasked == 0 && (l >> 8) & 7 == 7
    }

    /// The highest IRR vector whose priority class is above the PPR's.
    var pendingVector: UInt8? {
        guard let v = irr.highest, v >> 4 > processorPriority >> 4 else { return nil }
        return v
    }

    /// The INTA cycle: moves the pending vector from IRR to ISR.
    func acknowledge() -> UInt8? {
        guard let v = pendingVector else { return nil }
        irr[v] = false
        isr[v] = true
        return v
    }

    /// A fixed or lowest-priority interrupt arriving from the bus; false if refused
    /// (software-disabled APIC, illegal vector).
    @discardableResult
    func accept(vector: UInt8, levelTriggered: Bool) -> Bool {
        guard softwareEnabled else { return false }
        guard vector >= 16 else {
            recordError(0x40)      // receive illegal vector
            return false
        }
        irr[vector] = true
        tmr[vector] = levelTriggered
        signal()
        return true
    }

    func acceptNMI() {
        nmiPending = true
        signal()
    }

    /// Delivers a local interrupt source through its LVT entry.
    func deliverLocal(_ source: LVT) {
        let l = lvt[source.rawValue]
        guard l & Self.lvtMasked == 0 else { return }
        let vector = UInt8(truncatingIfNeeded: l)
        switch (l >> 8) & 7 {
        case 4 where source != .timer && source != .error:
            acceptNMI()
        case 7 where source == .lint0 || source == .lint1:
            extINTPending = true
            signal()
        case 0:
            if vector < 16 {
                pendingErrors |= 0x40
            } else {
                irr[vector] = true
                tmr[vector] = false
                signal()
            }
        default:
            break
        }
    }

    private func recordError(_ bits: UInt32) {
        pendingErrors |= bits
        deliverLocal(.error)
    }

    // MARK: Timer

    private var divisor: UInt64 {
        let tmp = (divideConfig & 3) | ((divideConfig & 8) >> 1)
        return 1 << UInt64((tmp + 1) & 7)
    }

    private var periodic: Bool { lvt[LVT.timer.rawValue] & (1 << 17) != 0 }
    private var period: UInt64 { UInt64(initialCount) &* divisor }

    /// Counts elapsed since the initial count was written.
    private func elapsedCounts(at t: UInt64) -> UInt64 {
        timerBaseCounts &+ (t >= timerStart ? t - timerStart : 0) / divisor
    }

    func currentCount(at t: UInt64) -> UInt32 {
        guard initialCount != 0 else { return 0 }
        let elapsed = elapsedCounts(at: t)
        let ic = UInt64(initialCount)
        if periodic { return UInt32(ic - elapsed % ic) }
        return elapsed >= ic ? 0 : UInt32(ic - elapsed)
    }

    /// The first expiry strictly after `t` that is still to come (nil: none).
    private func nextExpiry(after t: UInt64) -> UInt64? {
        guard initialCount != 0 else { return nil }
        let ic = UInt64(initialCount)
        let elapsed = elapsedCounts(at: t)
        let target: UInt64
        if periodic {
            target = (elapsed / ic &+ 1) &* ic
        } else {
            guard elapsed < ic else { return nil }
            target = ic
        }
        return TimeScale.deadline(timerStart, plus: (target &- timerBaseCounts) &* divisor)
    }

    var nextDeadline: UInt64? {
        lvt[LVT.timer.rawValue] & Self.lvtMasked == 0 ? timerNext : nil
    }

    func timerExpired(now t: UInt64) {
        guard let due = timerNext, t >= due, initialCount != 0 else { return }
        deliverLocal(.timer)
        if periodic {
            let gap = period < Self.minimumPeriod ? Self.minimumPeriod : 0
            timerNext = nextExpiry(after: t &+ gap)
        } else {
            timerNext = nil
        }
    }

    // MARK: Registers

    package func read(offset: UInt64, size: Int) -> UInt32 {
        let within = Int(offset & 0xF)
        guard offset < 0x1000, size == 1 || size == 2 || size == 4, within + size <= 4 else { return 0 }
        let value = register(Int(offset >> 4))
        let shifted = value >> UInt32(within * 8)
        return size == 4 ? shifted : shifted & ((1 << UInt32(size * 8)) - 1)
    }

    private func register(_ r: Int) -> UInt32 {
        switch r {
        case 0x02: return id
        case 0x03: return Self.version
        case 0x08: return UInt32(tpr)
        case 0x09: return UInt32(arbitrationPriority)
        case 0x0A: return UInt32(processorPriority)
        case 0x0D: return ldr
        case 0x0E: return dfr
        case 0x0F: return svr
        case 0x10...0x17: return isr.register(r - 0x10)
        case 0x18...0x1F: return tmr.register(r - 0x18)
        case 0x20...0x27: return irr.register(r - 0x20)
        case 0x28: return esr
        case 0x30: return icrLow
        case 0x31: return icrHigh
        case 0x32...0x37: return lvt[r - 0x32]
        case 0x38: return initialCount
        case 0x39: return currentCount(at: now())
        case 0x3E: return divideConfig
        default: return 0
        }
    }

    package func write(offset: UInt64, size: Int, value: UInt32) {
        guard offset < 0x1000, offset & 0xF == 0, size == 4 else { return }
        switch Int(offset >> 4) {
        case 0x02:
            id = value & 0xFF00_0000
        case 0x08:
            tpr = UInt8(truncatingIfNeeded: value)
        case 0x0B:
            if let v = isr.highest {
                isr[v] = false
                if tmr[v] { eoiBroadcast(v) }
            }
        case 0x0D:
            ldr = value & 0xFF00_0000
        case 0x0E:
            dfr = value | 0x0FFF_FFFF
        case 0x0F:
            svr = value & 0x3FF
            if !softwareEnabled {
                for i in lvt.indices { lvt[i] |= Self.lvtMasked }
            }
        case 0x28:
            esr = pendingErrors
            pendingErrors = 0
        case 0x30:
            icrLow = value & ~0x1000
            sendFromICR()
        case 0x31:
            icrHigh = value & 0xFF00_0000
        case 0x32...0x37:
            let i = Int(offset >> 4) - 0x32
            var v = (value & Self.lvtWritable[i]) | (lvt[i] & ~Self.lvtWritable[i] & 0x4000)
            if !softwareEnabled { v |= Self.lvtMasked }
            lvt[i] = v
            if i == LVT.timer.rawValue { timerNext = nextExpiry(after: now()) }
        case 0x38:
            initialCount = value
            timerStart = now()
            timerBaseCounts = 0
            timerNext = nextExpiry(after: timerStart)
        case 0x3E:
            // Keep the count where it is; only its rate changes.
            let t = now()
            timerBaseCounts = elapsedCounts(at: t)
            timerStart = t
            divideConfig = value & 0xB
            timerNext = nextExpiry(after: t)
        default:
            break
        }
    }

    private func sendFromICR() {
        let mode = APICMessage.DeliveryMode(rawValue: UInt8((icrLow >> 8) & 7)) ?? .fixed
        let vector = UInt8(truncatingIfNeeded: icrLow)
        let assert = icrLow & (1 << 14) != 0
        let level = icrLow & (1 << 15) != 0
        switch mode {
        case .initialize where level && !assert:
            return                                  // INIT level de-assert: no effect
        case .fixed, .lowestPriority:
            if vector < 16 { recordError(0x20); return }   // send illegal vector
        case .remoteRead, .extINT:
            return
        default:
            break
        }
        let message = APICMessage(vector: vector, deliveryMode: mode, logical: icrLow & (1 << 11) != 0,
                                  destination: UInt8(truncatingIfNeeded: icrHigh >> 24),
                                  levelTriggered: level)
        sendIPI(message, UInt8((icrLow >> 18) & 3))
    }

    /// Whether a message for `destination` in the given mode addresses this APIC.
    func matches(destination: UInt8, logical: Bool) -> Bool {
        if destination == 0xFF { return true }
        guard logical else { return physicalID == destination }
        let logicalID = UInt8(truncatingIfNeeded: ldr >> 24)
        if dfr >> 28 == 0xF { return logicalID & destination != 0 }     // flat model
        // Cluster model: high nibble selects the cluster, low nibble the members.
        return logicalID >> 4 == destination >> 4 && logicalID & destination & 0x0F != 0
    }
}
