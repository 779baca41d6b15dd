import HVSupport

/// Intel 8254 programmable interval timer at ports 0x40-0x43, plus the PC's system
/// control port B (0x61: channel 2 gate, speaker data, refresh toggle, channel 2 output).
///
/// The counters are derived from the VM clock at 1.193182 MHz: reading a counter computes
/// its value from the time elapsed since the count was loaded, so nothing ticks in the
/// background. Channel 0's output drives ISA IRQ 0: each rising edge of OUT becomes one
/// pulse on the line, produced by the owner's timer at ``nextDeadline``. Periodic modes
/// (2, 3) never fire more often than every ~100 µs (missed periods coalesce), which
/// bounds the work a guest can cause.
///
/// Not thread-safe: the owner (``Chipset``) serialises every call.
final class PIT8254 {
    static let frequency: UInt64 = 1_193_182
    /// Closest spacing of IRQ 0 pulses, in PIT ticks (~100 µs).
    static let minimumGapTicks: UInt64 = 119

    struct Channel {
        var count: UInt64 = 0x10000         // reload value; 0 means 0x10000
        var mode: UInt8 = 0                 // as written (0-7)
        var bcd = false
        var accessMode: UInt8 = 3           // 1 LSB, 2 MSB, 3 LSB then MSB
        var readState: UInt8 = 3            // 1, 2, 3 (word, LSB next), 4 (word, MSB next)
        var writeState: UInt8 = 3
        var writeLatch: UInt8 = 0
        var latchedCount: UInt16 = 0
        var countLatchState: UInt8 = 0      // 0 none, else like readState
        var status: UInt8 = 0
        var statusLatched = false
        var gate = true
        var loadTime: UInt64 = 0
        var running = false                 // a count has been loaded since the control word

        var effectiveMode: UInt8 { mode >= 6 ? mode & 3 : mode }
    }

    var channels = [Channel](repeating: Channel(), count: 3)
    var speakerData = false
    /// Channel 0: tick (since load) of the next IRQ 0 rising edge, if one is due.
    var nextEventTick: UInt64?

    let now: () -> UInt64
    /// Drives ISA IRQ 0.
    var irq0: (Bool) -> Void = { _ in }

    init(now: @escaping () -> UInt64) {
        self.now = now
        reset()
    }

    func reset() {
        channels = [Channel](repeating: Channel(), count: 3)
        channels[2].gate = false
        speakerData = false
        nextEventTick = nil
    }

    // MARK: Counting

    private func ticks(_ c: Channel, at t: UInt64) -> UInt64 {
        TimeScale.scale(t >= c.loadTime ? t - c.loadTime : 0, by: Self.frequency, over: 1_000_000_000)
    }

    /// The counting element of channel `c` at time `t`.
    private func counter(_ c: Channel, at t: UInt64) -> UInt16 {
        guard c.running else { return UInt16(truncatingIfNeeded: c.count) }
        let d = ticks(c, at: t)
        switch c.effectiveMode {
        case 2:
            return UInt16(truncatingIfNeeded: c.count - d % c.count)
        case 3:
            // Decrements by two, reloading every half period.
            let half = (c.count + 1) / 2
            let phase = d % half
            return UInt16(truncatingIfNeeded: (c.count - 2 &* phase) & 0xFFFF)
        default:
            return UInt16(truncatingIfNeeded: (c.count &- d) & 0xFFFF)
        }
    }

    /// The OUT pin of channel `c` at time `t`.
    private func output(_ c: Channel, at t: UInt64) -> Bool {
        guard c.running else { return c.effectiveMode != 0 }
        let d = ticks(c, at: t)
        switch c.effectiveMode {
        case 0: return d >= c.count
        case 1: return d >= c.count
        case 2: return d % c.count != c.count - 1 || c.count == 1
        case 3: return d % c.count < (c.count + 1) / 2
        default: return d != c.count      // 4, 5: one-tick low strobe at terminal count
        }
    }

    // MARK: Ports

    /// Ports 0x40-0x43 and 0x61. Unknown ports read 0xFF.
    func read(port: UInt16) -> UInt8 {
        let t = now()
        switch port {
        case 0x40...0x42:
            let i = Int(port - 0x40)
            var c = channels[i]
            defer { channels[i] = c }
            if c.statusLatched {
                c.statusLatched = false
                return c.status
            }
            switch c.countLatchState {
            case 1:
                c.countLatchState = 0
                return UInt8(truncatingIfNeeded: c.latchedCount)
            case 2:
                c.countLatchState = 0
                return UInt8(truncatingIfNeeded: c.latchedCount >> 8)
            case 3:
                c.countLatchState = 2
                return UInt8(truncatingIfNeeded: c.latchedCount)
            default:
                break
            }
            let value = counter(c, at: t)
            switch c.readState {
            case 1: return UInt8(truncatingIfNeeded: value)
            case 2: return UInt8(truncatingIfNeeded: value >> 8)
            case 3:
                c.readState = 4
                return UInt8(truncatingIfNeeded: value)
            default:
                c.readState = 3
                return UInt8(truncatingIfNeeded: value >> 8)
            }
        case 0x43:
            return 0xFF     // the control word register is write-only
        case 0x61:
            let c2 = channels[2]
            var v: UInt8 = c2.gate ? 0x01 : 0
            if speakerData { v |= 0x02 }
            if (t / 15_085) & 1 != 0 { v |= 0x10 }   // DRAM refresh toggle, ~15 µs
            if output(c2, at: t) { v |= 0x20 }
            return v
        default:
            return 0xFF
        }
    }

    func write(port: UInt16, value: UInt8) {
        let t = now()
        switch port {
        case 0x40...0x42:
            let i = Int(port - 0x40)
            switch channels[i].writeState {
            case 1: load(i, UInt64(value), at: t)
            case 2: load(i, UInt64(value) << 8, at: t)
            case 3:
                channels[i].writeLatch = value
                channels[i].writeState = 4
            default:
                channels[i].writeState = 3
                load(i, UInt64(channels[i].writeLatch) | UInt64(value) << 8, at: t)
            }
        case 0x43:
            writeControl(value, at: t)
        case 0x61:
            speakerData = value & 0x02 != 0
            setGate2(value & 0x01 != 0, at: t)
        default:
            break
        }
    }

    private func writeControl(_ value: UInt8, at t: UInt64) {
        let select = Int(value >> 6)
        if select == 3 {
            // Read-back: bit 5 = 0 latches counts, bit 4 = 0 latches status.
            for i in 0..<3 where value & (2 << UInt8(i)) != 0 {
                if value & 0x20 == 0 { latchCount(i, at: t) }
                if value & 0x10 == 0 && !channels[i].statusLatched {
                    let c = channels[i]
                    var s = (c.accessMode << 4) | ((c.mode & 7) << 1) | (c.bcd ? 1 : 0)
                    if output(c, at: t) { s |= 0x80 }
                    if !c.running { s |= 0x40 }       // null count
                    channels[i].status = s
                    channels[i].statusLatched = true
                }
            }
            return
        }
        let access = (value >> 4) & 3
        if access == 0 {
            latchCount(select, at: t)
            return
        }
        var c = channels[select]
        c.accessMode = access
        c.readState = access
        c.writeState = access
        c.mode = (value >> 1) & 7
        c.bcd = value & 1 != 0
        c.running = false      // counting waits for a new count
        c.countLatchState = 0
        c.statusLatched = false
        channels[select] = c
        if select == 0 { nextEventTick = nil }
    }

    private func latchCount(_ i: Int, at t: UInt64) {
        guard channels[i].countLatchState == 0 else { return }
        channels[i].latchedCount = counter(channels[i], at: t)
        channels[i].countLatchState = channels[i].accessMode
    }

    private func load(_ i: Int, _ value: UInt64, at t: UInt64) {
        channels[i].count = value == 0 ? 0x10000 : value
        channels[i].loadTime = t
        channels[i].running = true
        if i == 0 { nextEventTick = channels[0].count }
    }

    private func setGate2(_ gate: Bool, at t: UInt64) {
        let rising = gate && !channels[2].gate
        channels[2].gate = gate
        // Modes 1, 2, 3, 5 restart counting on a rising gate edge.
        guard rising && channels[2].running else { return }
        switch channels[2].effectiveMode {
        case 1, 2, 3, 5: channels[2].loadTime = t
        default: break
        }
    }

    // MARK: Channel 0 interrupt timing

    /// VM-clock time of the next IRQ 0 edge, if any.
    var nextDeadline: UInt64? {
        guard let tick = nextEventTick, channels[0].running else { return nil }
        let ns = TimeScale.scaleUp(tick, by: 1_000_000_000, over: Self.frequency)
        return TimeScale.deadline(channels[0].loadTime, plus: ns)
    }

    /// Delivers the IRQ 0 edge if its time has come and schedules the next one.
    func timerExpired(now t: UInt64) {
        let c = channels[0]
        guard c.running, let tick = nextEventTick else { return }
        let d = ticks(c, at: t)
        guard d >= tick else { return }
        irq0(true)
        irq0(false)
        switch c.effectiveMode {
        case 2, 3:
            let gap = c.count >= Self.minimumGapTicks ? 0 : Self.minimumGapTicks
            let from = d &+ gap
            nextEventTick = (from / c.count &+ 1) &* c.count
        default:
            nextEventTick = nil
        }
    }
}
