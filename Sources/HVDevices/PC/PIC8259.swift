/// The cascaded pair of Intel 8259A programmable interrupt controllers of a PC:
/// the master at ports 0x20/0x21 (IRQ 0-7), the slave at 0xA0/0xA1 (IRQ 8-15) wired to
/// the master's IR2, and the PIIX edge/level control registers (ELCR) at 0x4D0/0x4D1.
///
/// Implemented: ICW1-ICW4, OCW1 (IMR), OCW2 (specific / non-specific EOI, rotation,
/// set priority), OCW3 (IRR/ISR read select, special mask, poll), auto-EOI, special fully
/// nested mode, edge and level triggering (per line through the ELCR, or all lines via
/// ICW1.LTIM), spurious IRQ 7 / IRQ 15 when a request vanishes before the INTA cycle.
///
/// Not thread-safe: the owner (``Chipset``) serialises every call.
final class PIC8259 {
    /// One 8259A.
    struct Chip {
        var irr: UInt8 = 0
        var isr: UInt8 = 0
        var imr: UInt8 = 0
        var lineLevel: UInt8 = 0        // input pin levels, for edge detection
        var elcr: UInt8 = 0
        var elcrMask: UInt8
        var vectorBase: UInt8 = 0
        var priorityAdd: UInt8 = 0      // the IRQ that has lowest priority is priorityAdd-1
        var readISR = false
        var poll = false
        var specialMask = false
        var autoEOI = false
        var rotateOnAutoEOI = false
        var specialFullyNested = false
        var levelTriggeredAll = false   // ICW1.LTIM
        var initState = 0               // 0 ready, 1 expects ICW2, 2 ICW3, 3 ICW4
        var needICW4 = false
        var single = false

        init(elcrMask: UInt8) { self.elcrMask = elcrMask }

        var levelMask: UInt8 { levelTriggeredAll ? 0xFF : elcr }

        /// Priority (0 highest .. 7 lowest) of the highest-priority bit in `mask`, 8 if none.
        func priority(of mask: UInt8) -> Int {
            if mask == 0 { return 8 }
            var p = 0
            while p < 8 && mask & (1 << ((UInt8(p) &+ priorityAdd) & 7)) == 0 { p += 1 }
            return p
        }

        /// The IRQ (0-7) this chip would present at INTA, or nil.
        func pendingIRQ(isMaster: Bool) -> Int? {
            let p = priority(of: irr & ~imr)
            if p == 8 { return nil }
            var inService = isr
            if specialMask { inService &= ~imr }
            if isMaster && specialFullyNested { inService &= ~(1 << 2) }
            let current = priority(of: inService)
            guard p < current else { return nil }
            return Int((UInt8(p) &+ priorityAdd) & 7)
        }

        mutating func setLine(_ irq: Int, level: Bool) {
            let mask = UInt8(1) << UInt8(irq & 7)
            if levelMask & mask != 0 {
                if level { irr |= mask } else { irr &= ~mask }
            } else if level {
                if lineLevel & mask == 0 { irr |= mask }
            }
            if level { lineLevel |= mask } else { lineLevel &= ~mask }
        }

        /// The INTA side effects for `irq` on this chip.
        mutating func acknowledge(_ irq: Int) {
            let mask = UInt8(1) << UInt8(irq & 7)
            if autoEOI {
                if rotateOnAutoEOI { priorityAdd = (UInt8(irq) &+ 1) & 7 }
            } else {
                isr |= mask
            }
            // A level-triggered request stays in IRR while the line is high.
            if levelMask & mask == 0 { irr &= ~mask }
        }

        mutating func initialize(icw1: UInt8) {
            // Edge detection restarts; IRR keeps level-triggered requests only.
            lineLevel = 0
            irr &= elcr
            imr = 0; isr = 0; priorityAdd = 0; vectorBase = 0
            readISR = false; poll = false; specialMask = false
            autoEOI = false; rotateOnAutoEOI = false; specialFullyNested = false
            needICW4 = icw1 & 0x01 != 0
            single = icw1 & 0x02 != 0
            levelTriggeredAll = icw1 & 0x08 != 0
            initState = 1
        }

        mutating func hardReset() {
            let mask = elcrMask
            self = Chip(elcrMask: mask)
        }
    }

    var master = Chip(elcrMask: 0xF8)   // IRQ 0, 1, 2 are always edge-triggered
    var slave = Chip(elcrMask: 0xDE)    // IRQ 8 and 13 are always edge-triggered

    /// Called when the INTR output to the CPU changes.
    var onOutputChange: (Bool) -> Void = { _ in }
    private(set) var output = false

    init() {}

    /// Power-on state; the ELCR keeps its value only if `keepELCR`.
    func reset(keepELCR: Bool = false) {
        let (m, s) = (master.elcr, slave.elcr)
        master.hardReset(); slave.hardReset()
        if keepELCR { master.elcr = m; slave.elcr = s }
        update()
    }

    /// Drives ISA interrupt line `irq` (0-15). Other values are ignored.
    func setIRQ(_ irq: Int, level: Bool) {
        switch irq {
        case 2: return                  // the cascade input; ISA IRQ 2 is wired to IRQ 9
        case 0..<8: master.setLine(irq, level: level)
        case 8..<16: slave.setLine(irq - 8, level: level)
        default: return
        }
        update()
    }

    /// Whether INTR is asserted to the CPU.
    var hasInterrupt: Bool { output }

    /// The vector an INTA cycle would return now, without performing it.
    var pendingVector: UInt8? {
        guard let irq = master.pendingIRQ(isMaster: true) else { return nil }
        if irq == 2 && !master.single {
            let s = slave.pendingIRQ(isMaster: false) ?? 7
            return slave.vectorBase &+ UInt8(s)
        }
        return master.vectorBase &+ UInt8(irq)
    }

    /// The INTA cycle: moves the winning request to ISR and returns its vector.
    /// With no request left it returns the spurious vector (IRQ 7 of the master, or
    /// IRQ 15 when the slave lost its request).
    func acknowledge() -> UInt8 {
        let vector: UInt8
        if let irq = master.pendingIRQ(isMaster: true) {
            master.acknowledge(irq)
            if irq == 2 && !master.single {
                if let s = slave.pendingIRQ(isMaster: false) {
                    slave.acknowledge(s)
                    vector = slave.vectorBase &+ UInt8(s)
                } else {
                    vector = slave.vectorBase &+ 7
                }
            } else {
                vector = master.vectorBase &+ UInt8(irq)
            }
        } else {
            vector = master.vectorBase &+ 7
        }
        update()
        return vector
    }

    /// Ports 0x20, 0x21, 0xA0, 0xA1, 0x4D0, 0x4D1. Unknown ports read 0xFF.
    func read(port: UInt16) -> UInt8 {
        switch port {
        case 0x20: return readCommand(master: true)
        case 0x21: return master.imr
        case 0xA0: return readCommand(master: false)
        case 0xA1: return slave.imr
        case 0x4D0: return master.elcr
        case 0x4D1: return slave.elcr
        default: return 0xFF
        }
    }

    func write(port: UInt16, value: UInt8) {
        switch port {
        case 0x20: writeCommand(&master, value)
        case 0x21: writeData(&master, value)
        case 0xA0: writeCommand(&slave, value)
        case 0xA1: writeData(&slave, value)
        case 0x4D0: master.elcr = value & master.elcrMask
        case 0x4D1: slave.elcr = value & slave.elcrMask
        default: return
        }
        update()
    }

    private func readCommand(master isMaster: Bool) -> UInt8 {
        let chip = isMaster ? master : slave
        if chip.poll {
            // Poll command: acts as an INTA on this chip only, returns 0x80 | irq.
            if isMaster { master.poll = false } else { slave.poll = false }
            let irq = chip.pendingIRQ(isMaster: isMaster)
            guard let irq else { return 0 }
            if isMaster { master.acknowledge(irq) } else { slave.acknowledge(irq) }
            update()
            return 0x80 | UInt8(irq)
        }
        return chip.readISR ? chip.isr : chip.irr
    }

    private func writeCommand(_ chip: inout Chip, _ value: UInt8) {
        if value & 0x10 != 0 {
            chip.initialize(icw1: value)
        } else if value & 0x08 != 0 {
            // OCW3
            if value & 0x04 != 0 { chip.poll = true }
            if value & 0x02 != 0 { chip.readISR = value & 0x01 != 0 }
            if value & 0x40 != 0 { chip.specialMask = value & 0x20 != 0 }
        } else {
            // OCW2
            let command = value >> 5
            switch command {
            case 0, 4:
                chip.rotateOnAutoEOI = command == 4
            case 1, 5:
                let p = chip.priority(of: chip.isr)
                if p != 8 {
                    let irq = (UInt8(p) &+ chip.priorityAdd) & 7
                    chip.isr &= ~(1 << irq)
                    if command == 5 { chip.priorityAdd = (irq &+ 1) & 7 }
                }
            case 3:
                chip.isr &= ~(1 << (value & 7))
            case 6:
                chip.priorityAdd = ((value & 7) &+ 1) & 7
            case 7:
                let irq = value & 7
                chip.isr &= ~(1 << irq)
                chip.priorityAdd = (irq &+ 1) & 7
            default:
                break
            }
        }
    }

    private func writeData(_ chip: inout Chip, _ value: UInt8) {
        switch chip.initState {
        case 1:
            chip.vectorBase = value & 0xF8
            chip.initState = chip.single ? (chip.needICW4 ? 3 : 0) : 2
        case 2:
            chip.initState = chip.needICW4 ? 3 : 0
        case 3:
            chip.specialFullyNested = value & 0x10 != 0
            chip.autoEOI = value & 0x02 != 0
            chip.initState = 0
        default:
            chip.imr = value
        }
    }

    /// Propagates the slave's output to master IR2 and recomputes INTR.
    func update() {
        // The slave's INT output is a level on master IR2, whatever the trigger mode.
        if slave.pendingIRQ(isMaster: false) != nil { master.irr |= 0x04 } else { master.irr &= ~0x04 }
        let out = master.pendingIRQ(isMaster: true) != nil
        if out != output {
            output = out
            onOutputChange(out)
        }
    }

    // MARK: Introspection for tests and diagnostics

    /// IRR, ISR and IMR of master (low byte) and slave (high byte).
    var registers: (irr: UInt16, isr: UInt16, imr: UInt16) {
        (UInt16(master.irr) | UInt16(slave.irr) << 8,
         UInt16(master.isr) | UInt16(slave.isr) << 8,
         UInt16(master.imr) | UInt16(slave.imr) << 8)
    }
}
