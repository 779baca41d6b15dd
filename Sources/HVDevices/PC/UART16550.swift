import HVSupport

/// National Semiconductor 16550A UART (COM1 is base 0x3F8, IRQ 4).
///
/// Registers: RBR/THR and DLL (offset 0), IER and DLM (1), IIR/FCR (2), LCR (3),
/// MCR (4, with loopback), LSR (5), MSR (6), SCR (7). The receiver FIFO holds 16 bytes
/// with trigger levels 1/4/8/14 and the character-timeout interrupt (four character
/// times at the programmed baud rate); interrupts are prioritised RLS > RDA/timeout >
/// THRE > MSI as the datasheet lists them. Transmission is instantaneous: THRE and TEMT
/// are set again as soon as a byte is written, and the byte goes to ``transmit``.
///
/// Host input waits in a bounded backlog (the "cable") and moves into the FIFO as the
/// guest drains it, so a fast producer is flow-controlled instead of overrunning.
///
/// Not thread-safe: the owner (``Chipset``) serialises every call.
final class UART16550 {
    static let backlogCapacity = 4096

    let base: UInt16
    let irq: Int

    var ier: UInt8 = 0
    var lcr: UInt8 = 0
    var mcr: UInt8 = 0
    var lsrErrors: UInt8 = 0       // OE, PE, FE, BI; cleared by reading LSR
    var msrDeltas: UInt8 = 0       // DCTS, DDSR, TERI, DDCD; cleared by reading MSR
    var scratch: UInt8 = 0
    var divisor: UInt16 = 12       // 9600 baud
    var fifoEnabled = false
    var triggerLevel = 1
    var rx = ByteRing(capacity: 16)
    var backlog = ByteRing(capacity: UART16550.backlogCapacity)
    var thrInterruptPending = false
    var lastRxActivity: UInt64 = 0
    var timeoutFired = false
    var irqLevel = false

    let now: () -> UInt64
    /// Drives the UART's interrupt line.
    var irqLine: (Bool) -> Void = { _ in }
    /// Receives each transmitted byte (not called in loopback mode).
    var transmit: (UInt8) -> Void = { _ in }

    init(base: UInt16 = 0x3F8, irq: Int = 4, now: @escaping () -> UInt64) {
        self.base = base
        self.irq = irq
        self.now = now
    }

    func reset() {
        ier = 0; lcr = 0; mcr = 0; lsrErrors = 0; msrDeltas = 0; scratch = 0
        divisor = 12
        fifoEnabled = false
        triggerLevel = 1
        rx.removeAll()
        backlog.removeAll()
        thrInterruptPending = false
        timeoutFired = false
        updateIRQ(at: now())
    }

    private var dlab: Bool { lcr & 0x80 != 0 }
    private var loopback: Bool { mcr & 0x10 != 0 }
    private var rxCapacity: Int { fifoEnabled ? 16 : 1 }

    // MARK: Host side

    /// Queues host input; returns how many bytes were accepted (the rest do not fit yet).
    @discardableResult
    func receive<C: Collection>(_ bytes: C) -> Int where C.Element == UInt8 {
        var accepted = 0
        for b in bytes {
            guard backlog.push(b) else { break }
            accepted += 1
        }
        let t = now()
        refill(at: t)
        updateIRQ(at: t)
        return accepted
    }

    private func refill(at t: UInt64) {
        guard !loopback else { return }
        var moved = false
        while rx.count < rxCapacity, let b = backlog.pop() {
            rx.push(b)
            moved = true
        }
        if moved { rxActivity(at: t) }
    }

    private func rxActivity(at t: UInt64) {
        lastRxActivity = t
        timeoutFired = false
    }

    // MARK: Registers

    /// `offset` 0-7 from the base port.
    func read(offset: UInt16) -> UInt8 {
        // Only RBR, IIR, LSR and MSR reads look at the clock.
        switch offset {
        case 0:
            if dlab { return UInt8(truncatingIfNeeded: divisor) }
            let t = now()
            let b = rx.pop() ?? 0
            rxActivity(at: t)
            refill(at: t)
            updateIRQ(at: t)
            return b
        case 1:
            return dlab ? UInt8(truncatingIfNeeded: divisor >> 8) : ier
        case 2:
            let t = now()
            checkTimeout(at: t)
            let id = interruptID()
            if id == 0x02 { thrInterruptPending = false }
            let value = (id ?? 0x01) | (fifoEnabled ? 0xC0 : 0)
            updateIRQ(at: t)
            return value
        case 3:
            return lcr
        case 4:
            return mcr
        case 5:
            var v: UInt8 = 0x60 | lsrErrors       // THRE and TEMT: transmission is instant
            if !rx.isEmpty { v |= 0x01 }
            lsrErrors = 0
            updateIRQ(at: now())
            return v
        case 6:
            let v = modemInputs | msrDeltas
            msrDeltas = 0
            updateIRQ(at: now())
            return v
        case 7:
            return scratch
        default:
            return 0xFF
        }
    }

    func write(offset: UInt16, value: UInt8) {
        let t = now()
        switch offset {
        case 0:
            if dlab {
                divisor = divisor & 0xFF00 | UInt16(value)
                return
            }
            thrInterruptPending = false
            updateIRQ(at: t)                      // THR full: drop the THRE request
            if loopback {
                if rx.count < rxCapacity {
                    rx.push(value)
                } else if fifoEnabled {
                    lsrErrors |= 0x02             // overrun: the shift register's byte is lost
                } else {
                    rx.replaceLast(value)
                    lsrErrors |= 0x02
                }
                rxActivity(at: t)
            } else {
                transmit(value)
            }
            thrInterruptPending = true            // THR empty again: a new edge
        case 1:
            if dlab {
                divisor = divisor & 0x00FF | UInt16(value) << 8
                return
            }
            let newIER = value & 0x0F
            if (ier ^ newIER) & 0x02 != 0 {
                thrInterruptPending = newIER & 0x02 != 0   // THR is always empty here
            }
            ier = newIER
        case 2:
            let enable = value & 0x01 != 0
            if enable != fifoEnabled {
                rx.removeAll()
                fifoEnabled = enable
            }
            if value & 0x02 != 0 { rx.removeAll(); rxActivity(at: t) }
            switch value >> 6 {
            case 0: triggerLevel = 1
            case 1: triggerLevel = 4
            case 2: triggerLevel = 8
            default: triggerLevel = 14
            }
            refill(at: t)
        case 3:
            lcr = value
        case 4:
            let before = modemInputs
            let wasLoopback = loopback
            mcr = value & 0x1F
            let after = modemInputs
            let changed = before ^ after
            if changed & 0x10 != 0 { msrDeltas |= 0x01 }
            if changed & 0x20 != 0 { msrDeltas |= 0x02 }
            if before & 0x40 != 0 && after & 0x40 == 0 { msrDeltas |= 0x04 }
            if changed & 0x80 != 0 { msrDeltas |= 0x08 }
            if wasLoopback && !loopback { refill(at: t) }
        case 7:
            scratch = value
        default:
            break                                 // LSR and MSR are read-only
        }
        updateIRQ(at: t)
    }

    /// CTS, DSR, RI, DCD (MSR bits 4-7): looped from MCR, else a connected terminal.
    private var modemInputs: UInt8 {
        guard loopback else { return 0xB0 }
        var v: UInt8 = 0
        if mcr & 0x02 != 0 { v |= 0x10 }
        if mcr & 0x01 != 0 { v |= 0x20 }
        if mcr & 0x04 != 0 { v |= 0x40 }
        if mcr & 0x08 != 0 { v |= 0x80 }
        return v
    }

    private var characterTime: UInt64 {
        let bits = 1 + 5 + UInt64(lcr & 0x03) + (lcr & 0x08 != 0 ? 1 : 0) + (lcr & 0x04 != 0 ? 2 : 1)
        let d = divisor == 0 ? 65_536 : UInt64(divisor)
        return bits * d * 1_000_000_000 / 115_200
    }

    private var timeoutDeadline: UInt64 {
        TimeScale.deadline(lastRxActivity, plus: 4 * characterTime)
    }

    /// The IIR interrupt identification of the highest-priority pending source.
    private func interruptID() -> UInt8? {
        if ier & 0x04 != 0 && lsrErrors & 0x1E != 0 { return 0x06 }
        if ier & 0x01 != 0 && !rx.isEmpty {
            if !fifoEnabled || rx.count >= triggerLevel { return 0x04 }
            if timeoutFired { return 0x0C }
        }
        if ier & 0x02 != 0 && thrInterruptPending { return 0x02 }
        if ier & 0x08 != 0 && msrDeltas != 0 { return 0x00 }
        return nil
    }

    /// Notes the character timeout once four character times passed without activity.
    private func checkTimeout(at t: UInt64) {
        if !timeoutFired && fifoEnabled && !rx.isEmpty && t >= timeoutDeadline { timeoutFired = true }
    }

    private func updateIRQ(at t: UInt64) {
        checkTimeout(at: t)
        let level = interruptID() != nil
        if level != irqLevel {
            irqLevel = level
            irqLine(level)
        }
    }

    /// When the character timeout will expire, if it is armed.
    var nextDeadline: UInt64? {
        guard ier & 0x01 != 0, fifoEnabled, !rx.isEmpty, rx.count < triggerLevel, !timeoutFired else { return nil }
        return timeoutDeadline
    }

    func timerExpired(now t: UInt64) { updateIRQ(at: t) }
}
