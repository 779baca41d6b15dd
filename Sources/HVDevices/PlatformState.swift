import HVSupport

/// Saved state of the chipset models (the "chipset" section of a suspend file).
///
/// Every time field is VM-clock nanoseconds, so a VM whose clock is restored to the
/// saved time finds its PIT counts, RTC phase, UART timeouts and APIC timers where they
/// were. Loading validates like a guest write: a value the model could never hold is
/// refused, so a crafted file cannot put a model in a state its code does not expect.
/// Layout: PIC master, PIC slave, PIT, RTC, COM1 (presence byte first), i8042, I/O
/// APIC, then a count and one local APIC per vCPU.
extension Chipset {
    package static let stateVersion: UInt32 = 2

    /// The models' state, taken under the chipset lock.
    package func saveState() -> [UInt8] {
        locked {
            var e = StateEncoder()
            pic.master.save(to: &e)
            pic.slave.save(to: &e)
            pit.save(to: &e)
            rtc.save(to: &e)
            e.bool(com1 != nil)
            com1?.save(to: &e)
            keyboard.save(to: &e)
            ioapic.save(to: &e)
            e.u32(UInt32(lapics.count))
            for l in lapics { l.save(to: &e) }
            return e.bytes
        }
    }

    /// Replaces the models' state with a saved one and re-arms their timers. On error
    /// the chipset is left in its reset state.
    package func loadState(_ bytes: [UInt8], version: UInt32 = Chipset.stateVersion) throws {
        try withModels(restoring: true) {
            do {
                var d = StateDecoder(bytes, context: "section 'chipset'")
                try pic.master.load(from: &d)
                try pic.slave.load(from: &d)
                pic.update()
                try pit.load(from: &d)
                try rtc.load(from: &d)
                guard try d.bool() == (com1 != nil) else {
                    throw StateDecodingError("section 'chipset': COM1 presence differs from this VM's configuration")
                }
                try com1?.load(from: &d)
                try keyboard.load(from: &d, version: version)
                try ioapic.load(from: &d)
                let count = try d.u32()
                guard count == lapics.count else {
                    throw StateDecodingError("section 'chipset': \(count) local APICs saved, this VM has \(lapics.count) vCPUs")
                }
                for l in lapics { try l.load(from: &d) }
                try d.finish()
            } catch {
                resetModels()
                throw error
            }
        }
    }
}

extension PIC8259.Chip {
    func save(to e: inout StateEncoder) {
        for v in [irr, isr, imr, lineLevel, elcr, vectorBase, priorityAdd] { e.u8(v) }
        for v in [readISR, poll, specialMask, autoEOI, rotateOnAutoEOI, specialFullyNested, levelTriggeredAll,
                  needICW4, single] { e.bool(v) }
        e.u8(UInt8(initState))
    }

    mutating func load(from d: inout StateDecoder) throws {
        irr = try d.u8(); isr = try d.u8(); imr = try d.u8(); lineLevel = try d.u8()
        elcr = try d.u8() & elcrMask
        vectorBase = try d.u8() & 0xF8
        priorityAdd = try d.u8() & 7
        readISR = try d.bool(); poll = try d.bool(); specialMask = try d.bool(); autoEOI = try d.bool()
        rotateOnAutoEOI = try d.bool(); specialFullyNested = try d.bool(); levelTriggeredAll = try d.bool()
        needICW4 = try d.bool(); single = try d.bool()
        let state = try d.u8()
        guard state <= 3 else { throw StateDecodingError("\(d.context): 8259 initialization state \(state) (expected 0-3)") }
        initState = Int(state)
    }
}

extension PIT8254 {
    func save(to e: inout StateEncoder) {
        for c in channels {
            e.u64(c.count)
            for v in [c.mode, c.accessMode, c.readState, c.writeState, c.writeLatch, c.countLatchState, c.status] { e.u8(v) }
            e.u16(c.latchedCount)
            for v in [c.bcd, c.statusLatched, c.gate, c.running] { e.bool(v) }
            e.u64(c.loadTime)
        }
        e.bool(speakerData)
        e.optionalU64(nextEventTick)
    }

    func load(from d: inout StateDecoder) throws {
        var loaded: [Channel] = []
        for i in 0..<3 {
            var c = Channel()
            c.count = try d.u64()
            c.mode = try d.u8(); c.accessMode = try d.u8(); c.readState = try d.u8(); c.writeState = try d.u8()
            c.writeLatch = try d.u8(); c.countLatchState = try d.u8(); c.status = try d.u8()
            c.latchedCount = try d.u16()
            c.bcd = try d.bool(); c.statusLatched = try d.bool(); c.gate = try d.bool(); c.running = try d.bool()
            c.loadTime = try d.u64()
            guard (1...0x10000).contains(c.count), c.mode <= 7, (1...3).contains(c.accessMode),
                  (1...4).contains(c.readState), (1...4).contains(c.writeState), c.countLatchState <= 3 else {
                throw StateDecodingError("\(d.context): 8254 channel \(i) holds values a guest cannot program")
            }
            loaded.append(c)
        }
        channels = loaded
        speakerData = try d.bool()
        nextEventTick = try d.optionalU64()
    }
}

extension RTCCMOS {
    func save(to e: inout StateEncoder) {
        e.data(cmos)
        e.u8(UInt8(index))
        e.bool(nmiDisabled)
        e.i64(baseSeconds)
        e.u64(origin)
        e.u64(lastAdvance)
        e.bool(irqLevel)
    }

    func load(from d: inout StateDecoder) throws {
        cmos = try d.data(count: 128)
        let i = try d.u8()
        guard i < 128 else { throw StateDecodingError("\(d.context): CMOS index \(i) (expected 0-127)") }
        index = Int(i)
        nmiDisabled = try d.bool()
        baseSeconds = try d.i64()
        origin = try d.u64()
        lastAdvance = try d.u64()
        irqLevel = try d.bool()
    }
}

extension ByteRing {
    /// The bytes in FIFO order.
    var contents: [UInt8] {
        var copy = self
        var out: [UInt8] = []
        while let b = copy.pop() { out.append(b) }
        return out
    }

    /// A ring of `capacity` holding `bytes`, or nil when they do not fit.
    init?(capacity: Int, holding bytes: [UInt8]) {
        guard bytes.count <= capacity else { return nil }
        self.init(capacity: capacity)
        for b in bytes { push(b) }
    }
}

extension UART16550 {
    func save(to e: inout StateEncoder) {
        e.u16(base)
        for v in [ier, lcr, mcr, lsrErrors, msrDeltas, scratch, UInt8(triggerLevel)] { e.u8(v) }
        e.u16(divisor)
        for v in [fifoEnabled, thrInterruptPending, timeoutFired, irqLevel] { e.bool(v) }
        e.data(rx.contents)
        e.data(backlog.contents)
        e.u64(lastRxActivity)
    }

    func load(from d: inout StateDecoder) throws {
        let savedBase = try d.u16()
        guard savedBase == base else {
            throw StateDecodingError("\(d.context): COM1 was at port 0x\(String(savedBase, radix: 16)), this VM has it at 0x\(String(base, radix: 16))")
        }
        ier = try d.u8() & 0x0F; lcr = try d.u8(); mcr = try d.u8() & 0x1F; lsrErrors = try d.u8()
        msrDeltas = try d.u8(); scratch = try d.u8()
        let trigger = Int(try d.u8())
        guard [1, 4, 8, 14].contains(trigger) else {
            throw StateDecodingError("\(d.context): 16550 FIFO trigger level \(trigger) (expected 1, 4, 8 or 14)")
        }
        triggerLevel = trigger
        divisor = try d.u16()
        fifoEnabled = try d.bool(); thrInterruptPending = try d.bool(); timeoutFired = try d.bool(); irqLevel = try d.bool()
        guard let r = ByteRing(capacity: 16, holding: try d.data(limit: fifoEnabled ? 16 : 1)),
              let b = ByteRing(capacity: Self.backlogCapacity, holding: try d.data(limit: Self.backlogCapacity)) else {
            throw StateDecodingError("\(d.context): 16550 receive buffers overflow")
        }
        rx = r
        backlog = b
        lastRxActivity = try d.u64()
    }
}

extension I8042 {
    func save(to e: inout StateEncoder) {
        for v in [commandByte, outputPort, lastRead] { e.u8(v) }
        for v in [lastWasCommand, irq1Level, irq12Level, translateBreak] { e.bool(v) }
        e.bool(pendingCommand != nil)
        e.u8(pendingCommand ?? 0)
        e.u32(UInt32(output.count))
        for o in output { e.u8(o.byte); e.bool(o.aux) }
        e.bool(latched != nil)
        e.u8(latched?.byte ?? 0); e.bool(latched?.aux ?? false)
        keyboard.save(to: &e)
        mouse.save(to: &e)
    }

    /// `version` 1 (before the PS/2 devices) held a keyboard command byte where the
    /// devices' state now is; such a file restores with the devices reset.
    func load(from d: inout StateDecoder, version: UInt32) throws {
        commandByte = try d.u8(); outputPort = try d.u8(); lastRead = try d.u8()
        lastWasCommand = try d.bool(); irq1Level = try d.bool(); irq12Level = try d.bool()
        translateBreak = version >= 2 ? try d.bool() : false
        let hasCommand = try d.bool(), command = try d.u8()
        pendingCommand = hasCommand ? command : nil
        if version < 2 { _ = try d.bool(); _ = try d.u8() }
        let n = try d.u32()
        guard n <= Self.outputCapacity else { throw StateDecodingError("\(d.context): 8042 output buffer of \(n) bytes") }
        output = try (0..<n).map { _ in (byte: try d.u8(), aux: try d.bool()) }
        keyboard.reset()
        mouse.reset()
        latched = nil
        if version >= 2 {
            let hasLatched = try d.bool(), byte = try d.u8(), aux = try d.bool()
            latched = hasLatched ? (byte, aux) : nil
            try keyboard.load(from: &d)
            try mouse.load(from: &d)
        } else if !output.isEmpty {
            latched = output.removeFirst()
        }
    }
}

extension PS2Keyboard {
    func save(to e: inout StateEncoder) {
        e.data(queue)
        for v in [scancodeSet, leds, typematic, lastSent, pendingCommand ?? 0] { e.u8(v) }
        e.bool(pendingCommand != nil)
        e.bool(scanning)
    }

    func load(from d: inout StateDecoder) throws {
        queue = try d.data(limit: Self.queueCapacity)
        scancodeSet = try d.u8(); leds = try d.u8(); typematic = try d.u8(); lastSent = try d.u8()
        let command = try d.u8()
        pendingCommand = try d.bool() ? command : nil
        scanning = try d.bool()
        guard scancodeSet == 1 || scancodeSet == 2, leds <= 7, typematic < 0x80 else {
            throw StateDecodingError("\(d.context): PS/2 keyboard set \(scancodeSet), LEDs \(leds), typematic \(typematic)")
        }
    }
}

extension PS2Mouse {
    func save(to e: inout StateEncoder) {
        e.data(queue)
        for v in [resolution, sampleRate, deviceID, lastSent, buttons, pendingCommand ?? 0] { e.u8(v) }
        for v in [pendingCommand != nil, streaming, enabled, wrap, scaling21, buttonsChanged] { e.bool(v) }
        e.data(recentRates)
        for v in [dx, dy, dz] { e.u32(UInt32(bitPattern: Int32(v))) }
    }

    func load(from d: inout StateDecoder) throws {
        queue = try d.data(limit: Self.queueCapacity)
        resolution = try d.u8(); sampleRate = try d.u8(); deviceID = try d.u8()
        lastSent = try d.u8(); buttons = try d.u8()
        let command = try d.u8()
        pendingCommand = try d.bool() ? command : nil
        streaming = try d.bool(); enabled = try d.bool(); wrap = try d.bool()
        scaling21 = try d.bool(); buttonsChanged = try d.bool()
        recentRates = try d.data(limit: 3)
        let limit = 1 << 20
        let motion = try (0..<3).map { _ in Int(Int32(bitPattern: try d.u32())) }
        guard resolution <= 3, Self.sampleRates.contains(sampleRate), deviceID == 0 || deviceID == 3,
              buttons <= 7, motion.allSatisfy({ abs($0) <= limit }) else {
            throw StateDecodingError("\(d.context): PS/2 mouse state out of range")
        }
        (dx, dy, dz) = (motion[0], motion[1], motion[2])
    }
}

extension IOAPIC {
    func save(to e: inout StateEncoder) {
        e.u8(id)
        e.u8(select)
        for entry in table { e.u64(entry) }
        e.u32(pending)
        e.u32(lineLevel)
    }

    func load(from d: inout StateDecoder) throws {
        id = try d.u8() & 0x0F
        select = try d.u8()
        table = try (0..<Self.pinCount).map { _ in try d.u64() }
        let pins = UInt32((1 << Self.pinCount) - 1)
        pending = try d.u32() & pins
        lineLevel = try d.u32() & pins
    }
}

extension Bitmap256 {
    func save(to e: inout StateEncoder) { for i in 0..<8 { e.u32(register(i)) } }

    static func load(from d: inout StateDecoder) throws -> Bitmap256 {
        var b = Bitmap256()
        for i in 0..<8 {
            let w = try d.u32()
            for bit in 0..<32 where w & (1 << UInt32(bit)) != 0 { b[UInt8(i * 32 + bit)] = true }
        }
        return b
    }
}

extension LocalAPIC {
    func save(to e: inout StateEncoder) {
        e.u32(UInt32(index))
        for v in [id, ldr, dfr, svr, esr, pendingErrors, icrLow, icrHigh, initialCount, divideConfig] { e.u32(v) }
        e.u8(tpr)
        isr.save(to: &e)
        tmr.save(to: &e)
        irr.save(to: &e)
        for v in lvt { e.u32(v) }
        e.u64(timerStart)
        e.u64(timerBaseCounts)
        e.optionalU64(timerNext)
        e.bool(nmiPending)
        e.bool(extINTPending)
    }

    package func load(from d: inout StateDecoder) throws {
        let saved = try d.u32()
        guard saved == index else { throw StateDecodingError("\(d.context): local APIC \(saved) found where \(index) was expected") }
        id = try d.u32() & 0xFF00_0000
        ldr = try d.u32() & 0xFF00_0000
        dfr = try d.u32() | 0x0FFF_FFFF
        svr = try d.u32() & 0x3FF
        esr = try d.u32(); pendingErrors = try d.u32(); icrLow = try d.u32()
        icrHigh = try d.u32() & 0xFF00_0000
        initialCount = try d.u32()
        divideConfig = try d.u32() & 0xB
        tpr = try d.u8()
        isr = try Bitmap256.load(from: &d)
        tmr = try Bitmap256.load(from: &d)
        irr = try Bitmap256.load(from: &d)
        lvt = try (0..<Self.lvtWritable.count).map { i in
            let v = try d.u32()
            return (v & Self.lvtWritable[i]) | (v & 0x4000) | (softwareEnabled ? 0 : Self.lvtMasked)
        }
        timerStart = try d.u64()
        timerBaseCounts = try d.u64()
        timerNext = try d.optionalU64()
        nmiPending = try d.bool()
        extINTPending = try d.bool()
    }
}
