import Glibc
import HVSupport

/// Motorola MC146818 real-time clock and its 128 bytes of CMOS RAM, at ports 0x70
/// (index; bit 7 disables NMI) and 0x71 (data).
///
/// The time starts from the host's UTC at power-on and advances with the VM clock; the
/// guest may set it (SET bit in register B). Date registers follow register B's BCD /
/// binary (DM) and 12 / 24-hour formats. Register A's UIP bit reads 1 during the 244 µs
/// before each second update. Periodic (register A rate), update-ended and alarm events
/// set register C's flags; enabled ones raise IRQ 8, which stays high until register C
/// is read (reading clears it). Flags are computed lazily from the clock, so a timer is
/// only needed while an enabled event can raise the line.
///
/// Not thread-safe: the owner (``Chipset``) serialises every call.
final class RTCCMOS {
    static let regA = 0x0A, regB = 0x0B, regC = 0x0C, regD = 0x0D
    static let centuryIndex = 0x32
    static let second: UInt64 = 1_000_000_000
    static let uipWindow: UInt64 = 244_000

    var cmos = [UInt8](repeating: 0, count: 128)
    var index = 0
    /// Bit 7 of the last index written to port 0x70.
    var nmiDisabled = false

    /// Unix time (seconds) at `origin`.
    var baseSeconds: Int64 = 0
    /// VM-clock time at which a second began (the update phase).
    var origin: UInt64 = 0
    /// VM-clock time up to which flags in register C are current.
    var lastAdvance: UInt64 = 0
    var irqLevel = false

    let now: () -> UInt64
    /// Drives ISA IRQ 8.
    var irq8: (Bool) -> Void = { _ in }

    /// - Parameter startTime: Unix time (seconds, nanoseconds) at this instant of the VM
    ///   clock; nil takes the host's `CLOCK_REALTIME`.
    init(now: @escaping () -> UInt64, startTime: (seconds: Int64, nanoseconds: UInt64)? = nil) {
        self.now = now
        cmos[Self.regA] = 0x26      // 32.768 kHz time base, 1024 Hz periodic rate
        cmos[Self.regB] = 0x02      // 24-hour, BCD
        cmos[Self.regD] = 0x80      // valid RAM and time
        cmos[0x14] = 0x06           // equipment: FPU, PS/2 mouse port
        var start = startTime
        if start == nil {
            var ts = timespec()
            clock_gettime(CLOCK_REALTIME, &ts)
            start = (Int64(ts.tv_sec), UInt64(ts.tv_nsec))
        }
        setTime(seconds: start!.seconds, nanoseconds: start!.nanoseconds % Self.second)
    }

    /// Sets the clock to Unix time `seconds` + `nanoseconds` at this instant.
    func setTime(seconds: Int64, nanoseconds: UInt64 = 0) {
        let t = now()
        let ns = nanoseconds % Self.second
        if t >= ns {
            origin = t - ns
            baseSeconds = seconds
        } else {
            origin = t &+ (Self.second - ns)
            baseSeconds = seconds &+ 1
        }
        lastAdvance = t
        if cmos[Self.regB] & 0x80 != 0 { storeTime(baseSeconds) }
    }

    /// The clock's current Unix time in whole seconds.
    var currentTime: Int64 { seconds(at: now()) }

    /// What a VM reset does: interrupt enables and flags clear, the line drops.
    /// Time and CMOS RAM survive (they are battery-backed).
    func reset() {
        cmos[Self.regB] &= ~0x78
        cmos[Self.regC] = 0
        lastAdvance = now()
        updateIRQ()
    }

    /// Fills the BIOS memory-size bytes: base (0x15/0x16, KiB), extended above 1 MiB
    /// (0x17/0x18 and 0x30/0x31, KiB, capped 65535), above 16 MiB below 4 GiB
    /// (0x34/0x35, 64 KiB units), above 4 GiB (0x5B-0x5D, 64 KiB units), and the
    /// processor count minus one (0x5F), then the standard checksum (0x2E/0x2F).
    func setMemoryLayout(belowFourGiB low: UInt64, aboveFourGiB high: UInt64, processors: Int) {
        let kib: UInt64 = 1024, mib: UInt64 = 1024 * 1024
        func put16(_ i: Int, _ v: UInt64) {
            cmos[i] = UInt8(truncatingIfNeeded: v); cmos[i + 1] = UInt8(truncatingIfNeeded: v >> 8)
        }
        put16(0x15, min(low / kib, 640))
        let ext = low > mib ? min((low - mib) / kib, 65535) : 0
        put16(0x17, ext)
        put16(0x30, ext)
        put16(0x34, low > 16 * mib ? min((low - 16 * mib) / 65536, 65535) : 0)
        let above = min(high / 65536, 0xFF_FFFF)
        cmos[0x5B] = UInt8(truncatingIfNeeded: above)
        cmos[0x5C] = UInt8(truncatingIfNeeded: above >> 8)
        cmos[0x5D] = UInt8(truncatingIfNeeded: above >> 16)
        cmos[0x5F] = UInt8(truncatingIfNeeded: max(processors, 1) - 1)
        var sum: UInt16 = 0
        for i in 0x10...0x2D { sum &+= UInt16(cmos[i]) }
        cmos[0x2E] = UInt8(sum >> 8)
        cmos[0x2F] = UInt8(truncatingIfNeeded: sum)
    }

    /// The boot order in the Bochs/QEMU BIOS CMOS bytes SeaBIOS reads without fw_cfg:
    /// first device in 0x3D bits 0-3, second in 0x3D bits 4-7, third in 0x38 bits 4-7.
    /// 0x38 bit 0 set skips the floppy boot-sector signature check (no floppy here).
    func setBootOrder(_ devices: [CMOSBootDevice]) {
        let code = devices.prefix(3).enumerated().reduce(0) { $0 | Int($1.element.rawValue) << (4 * $1.offset) }
        cmos[0x3D] = UInt8(code & 0xFF)
        cmos[0x38] = UInt8((code >> 4) & 0xF0) | 0x01
    }

    /// Raw CMOS byte `index & 0x7F` as the guest would read it.
    func register(_ index: Int) -> UInt8 { readRegister(index & 0x7F, at: now()) }

    // MARK: Ports

    /// Ports 0x70 and 0x71. Unknown ports read 0xFF.
    func read(port: UInt16) -> UInt8 {
        guard port == 0x71 else { return 0xFF }
        return readRegister(index, at: now())
    }

    func write(port: UInt16, value: UInt8) {
        switch port {
        case 0x70:
            index = Int(value & 0x7F)
            nmiDisabled = value & 0x80 != 0
        case 0x71:
            writeRegister(index, value, at: now())
        default:
            break
        }
    }

    private func readRegister(_ i: Int, at t: UInt64) -> UInt8 {
        advance(to: t)
        switch i {
        case 0, 2, 4, 6, 7, 8, 9, Self.centuryIndex:
            if !setMode { storeTime(seconds(at: t)) }
            return cmos[i]
        case Self.regA:
            var a = cmos[Self.regA] & 0x7F
            if !setMode && since(t) % Self.second >= Self.second - Self.uipWindow { a |= 0x80 }
            return a
        case Self.regC:
            let c = cmos[Self.regC]
            cmos[Self.regC] = 0
            updateIRQ()
            return c
        case Self.regD:
            return 0x80
        default:
            return cmos[i]
        }
    }

    private func writeRegister(_ i: Int, _ value: UInt8, at t: UInt64) {
        advance(to: t)
        switch i {
        case 0, 2, 4, 6, 7, 8, 9, Self.centuryIndex:
            if setMode {
                cmos[i] = value
            } else {
                // Running clock: keep the sub-second phase, take the new fields.
                storeTime(seconds(at: t))
                cmos[i] = value
                baseSeconds = loadTime() &- Int64(since(t) / Self.second)
            }
        case Self.regA:
            cmos[Self.regA] = value & 0x7F
        case Self.regB:
            var b = value
            if b & 0x80 != 0 { b &= ~0x10 }               // SET clears UIE
            let wasSet = setMode
            if !wasSet && b & 0x80 != 0 { storeTime(seconds(at: t)) }
            cmos[Self.regB] = b
            if wasSet && b & 0x80 == 0 {
                baseSeconds = loadTime()
                origin = t
                lastAdvance = t
            }
            updateIRQ()
        case Self.regC, Self.regD:
            break
        default:
            cmos[i] = value
        }
    }

    // MARK: Time

    private var setMode: Bool { cmos[Self.regB] & 0x80 != 0 }
    private var binary: Bool { cmos[Self.regB] & 0x04 != 0 }
    private var hours24: Bool { cmos[Self.regB] & 0x02 != 0 }

    private func since(_ t: UInt64) -> UInt64 { t > origin ? t - origin : 0 }

    private func seconds(at t: UInt64) -> Int64 {
        baseSeconds &+ Int64(since(t) / Self.second)
    }

    private func encode(_ v: Int64) -> UInt8 {
        let v = UInt8(truncatingIfNeeded: max(0, min(v, 99)))
        return binary ? v : (v / 10) << 4 | (v % 10)
    }

    private func decode(_ v: UInt8) -> Int64 {
        binary ? Int64(v) : Int64(v >> 4) * 10 + Int64(v & 0x0F)
    }

    private func encodeHour(_ h: Int64) -> UInt8 {
        if hours24 { return encode(h) }
        let h12 = h % 12 == 0 ? 12 : h % 12
        return encode(h12) | (h >= 12 ? 0x80 : 0)
    }

    private func decodeHour(_ v: UInt8) -> Int64 {
        if hours24 { return decode(v) }
        return decode(v & 0x7F) % 12 + (v & 0x80 != 0 ? 12 : 0)
    }

    /// Writes the date and time of Unix time `secs` into the clock registers.
    private func storeTime(_ secs: Int64) {
        let days = Self.floorDiv(secs, 86_400)
        let sod = secs &- days &* 86_400
        let (y, m, d) = Self.civil(fromDays: days)
        cmos[0] = encode(sod % 60)
        cmos[2] = encode(sod / 60 % 60)
        cmos[4] = encodeHour(sod / 3600)
        cmos[6] = UInt8(truncatingIfNeeded: Self.floorMod(days &+ 4, 7) + 1)   // 1 = Sunday
        cmos[7] = encode(d)
        cmos[8] = encode(m)
        cmos[9] = encode(Self.floorMod(y, 100))
        cmos[Self.centuryIndex] = encode(Self.floorDiv(y, 100))
    }

    /// The Unix time the clock registers hold.
    private func loadTime() -> Int64 {
        let s = decode(cmos[0]), mi = decode(cmos[2]), h = decodeHour(cmos[4])
        let d = max(1, decode(cmos[7]))
        let m = min(max(1, decode(cmos[8])), 12)
        let y = decode(cmos[Self.centuryIndex]) * 100 + decode(cmos[9])
        return Self.days(fromCivil: y, m, d) * 86_400 + h * 3600 + mi * 60 + s
    }

    static func floorDiv(_ a: Int64, _ b: Int64) -> Int64 { a >= 0 ? a / b : -((-a + b - 1) / b) }
    static func floorMod(_ a: Int64, _ b: Int64) -> Int64 { a &- floorDiv(a, b) &* b }

    /// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
    static func days(fromCivil year: Int64, _ month: Int64, _ day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = floorDiv(y, 400)
        let yoe = y - era * 400
        let doy = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    static func civil(fromDays days: Int64) -> (year: Int64, month: Int64, day: Int64) {
        let z = days + 719_468
        let era = floorDiv(z, 146_097)
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (m <= 2 ? 1 : 0), m, d)
    }

    // MARK: Events

    /// Periodic interrupt period in 32.768 kHz ticks, nil when RS = 0.
    private var periodTicks: UInt64? {
        var rs = UInt64(cmos[Self.regA] & 0x0F)
        if rs == 0 { return nil }
        if rs <= 2 { rs += 7 }
        return 1 << (rs - 1)
    }

    private func periodIndex(_ t: UInt64, _ p: UInt64) -> UInt64 {
        TimeScale.scale(since(t), by: 32_768, over: Self.second) / p
    }

    /// Sets register C flags for every event in (lastAdvance, t].
    private func advance(to t: UInt64) {
        guard t > lastAdvance else { return }
        let t0 = lastAdvance
        lastAdvance = t
        var flags: UInt8 = 0
        if let p = periodTicks, periodIndex(t, p) > periodIndex(t0, p) { flags |= 0x40 }
        if !setMode {
            let s0 = since(t0) / Self.second, s1 = since(t) / Self.second
            if s1 > s0 {
                flags |= 0x10
                if alarmMatches(afterSecond: s0, through: s1) { flags |= 0x20 }
            }
        }
        cmos[Self.regC] |= flags
        updateIRQ()
    }

    /// Whether the alarm matched at an update in seconds (s0, s1] since `origin`.
    private func alarmMatches(afterSecond s0: UInt64, through s1: UInt64) -> Bool {
        let alarm = (cmos[1], cmos[3], cmos[5])
        let count = s1 - s0
        if count >= 86_400 {
            // Every time of day occurred: the alarm matched unless a field can never match.
            func reachable(_ a: UInt8, _ limit: Int64, hour: Bool) -> Bool {
                if a & 0xC0 == 0xC0 { return true }
                for v in 0...limit where (hour ? encodeHour(v) : encode(v)) == a { return true }
                return false
            }
            return reachable(alarm.0, 59, hour: false) && reachable(alarm.1, 59, hour: false)
                && reachable(alarm.2, 23, hour: true)
        }
        var s = s0 &+ 1
        while s <= s1 {
            let secs = baseSeconds &+ Int64(s)
            let sod = Self.floorMod(secs, 86_400)
            if (alarm.0 & 0xC0 == 0xC0 || alarm.0 == encode(sod % 60))
                && (alarm.1 & 0xC0 == 0xC0 || alarm.1 == encode(sod / 60 % 60))
                && (alarm.2 & 0xC0 == 0xC0 || alarm.2 == encodeHour(sod / 3600)) {
                return true
            }
            s &+= 1
        }
        return false
    }

    private func updateIRQ() {
        if cmos[Self.regC] & cmos[Self.regB] & 0x70 != 0 { cmos[Self.regC] |= 0x80 }
        let level = cmos[Self.regC] & 0x80 != 0
        if level != irqLevel {
            irqLevel = level
            irq8(level)
        }
    }

    /// VM-clock time of the next event that would raise IRQ 8, if any.
    var nextDeadline: UInt64? {
        if cmos[Self.regC] & 0x80 != 0 { return nil }   // already raised; flags catch up lazily
        let b = cmos[Self.regB]
        var best: UInt64?
        if b & 0x40 != 0, let p = periodTicks {
            let k = periodIndex(lastAdvance, p) &+ 1
            let ns = TimeScale.scaleUp(k &* p, by: Self.second, over: 32_768)
            best = TimeScale.deadline(origin, plus: ns)
        }
        if b & 0x30 != 0 && !setMode {
            let next = TimeScale.deadline(origin, plus: (since(lastAdvance) / Self.second &+ 1) &* Self.second)
            best = min(best ?? next, next)
        }
        return best
    }

    func timerExpired(now t: UInt64) { advance(to: t) }
}

/// A boot device class as the CMOS boot-order nibbles encode it.
package enum CMOSBootDevice: UInt8, Sendable {
    case floppy = 1
    case hardDisk = 2
    case cdrom = 3
    /// A network boot ROM (a PCI option ROM's BEV entry).
    case network = 4
}
