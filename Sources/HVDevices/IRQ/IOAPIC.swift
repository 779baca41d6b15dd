/// Intel 82093AA I/O APIC, version 0x20 (with the EOI register), 24 input pins.
///
/// MMIO (default base 0xFEC00000): IOREGSEL at 0x00, IOWIN at 0x10, EOI at 0x40.
/// Indirect registers: 0x00 ID, 0x01 version (0x00170020), 0x02 arbitration ID,
/// 0x10 + 2n / 0x11 + 2n redirection entry n (low / high dword).
///
/// Pins take the logical assertion level (the polarity bit is stored, not applied, as
/// in QEMU and KVM). Edge-triggered pins deliver on each rising edge while unmasked;
/// level-triggered pins deliver while asserted, set Remote IRR, and deliver again
/// after the EOI (from a local APIC broadcast or the EOI register) if still asserted.
///
/// Not thread-safe: the owner (``Chipset``) serialises every call.
final class IOAPIC {
    static let defaultBase: UInt64 = 0xFEC0_0000
    static let mmioSize: UInt64 = 0x1000
    static let pinCount = 24
    static let version: UInt32 = 0x0017_0020

    static let masked: UInt64 = 1 << 16
    static let levelTrigger: UInt64 = 1 << 15
    static let remoteIRR: UInt64 = 1 << 14
    static let deliveryStatus: UInt64 = 1 << 12

    var id: UInt8 = 0
    var select: UInt8 = 0
    var table = [UInt64](repeating: IOAPIC.masked, count: IOAPIC.pinCount)
    var pending: UInt32 = 0        // requests waiting for delivery
    var lineLevel: UInt32 = 0

    /// Sends a message to the local APICs; returns whether any APIC accepted it.
    var deliver: (APICMessage) -> Bool = { _ in true }

    init() {}

    func reset() {
        id = 0
        select = 0
        for i in table.indices { table[i] = Self.masked }
        pending = 0
        lineLevel = 0
    }

    /// The redirection entry of `pin` (for tests and diagnostics).
    func redirectionEntry(_ pin: Int) -> UInt64 {
        table.indices.contains(pin) ? table[pin] : 0
    }

    /// Drives input `pin` (0-23); other values are ignored.
    func setIRQ(_ pin: Int, level: Bool) {
        guard (0..<Self.pinCount).contains(pin) else { return }
        let bit = UInt32(1) << UInt32(pin)
        let entry = table[pin]
        if entry & Self.levelTrigger != 0 {
            if level { pending |= bit } else { pending &= ~bit }
        } else if level && lineLevel & bit == 0 && entry & Self.masked == 0 {
            pending |= bit
        }
        if level { lineLevel |= bit } else { lineLevel &= ~bit }
        service()
    }

    /// End of interrupt for `vector`: clears Remote IRR of matching level-triggered pins.
    func endOfInterrupt(vector: UInt8) {
        var any = false
        for pin in 0..<Self.pinCount {
            let e = table[pin]
            if e & Self.levelTrigger != 0 && e & Self.remoteIRR != 0 && UInt8(truncatingIfNeeded: e) == vector {
                table[pin] = e & ~Self.remoteIRR
                any = true
            }
        }
        if any { service() }
    }

    private func service() {
        guard pending != 0 else { return }
        for pin in 0..<Self.pinCount {
            let bit = UInt32(1) << UInt32(pin)
            guard pending & bit != 0 else { continue }
            let e = table[pin]
            if e & Self.masked != 0 { continue }
            let mode = APICMessage.DeliveryMode(rawValue: UInt8((e >> 8) & 7)) ?? .fixed
            let level = e & Self.levelTrigger != 0
            let remoteIRRApplies = level && (mode == .fixed || mode == .lowestPriority)
            if remoteIRRApplies && e & Self.remoteIRR != 0 { continue }
            let accepted = deliver(APICMessage(vector: UInt8(truncatingIfNeeded: e), deliveryMode: mode,
                                               logical: e & (1 << 11) != 0,
                                               destination: UInt8(truncatingIfNeeded: e >> 56),
                                               levelTriggered: level))
            if remoteIRRApplies {
                // Remote IRR waits for an EOI only if some APIC took the interrupt; an
                // undelivered level request stays pending and is retried.
                if accepted { table[pin] = e | Self.remoteIRR }
            } else {
                pending &= ~bit
            }
        }
    }

    // MARK: MMIO

    func mmioRead(offset: UInt64, size: Int) -> UInt64 {
        let shift = UInt64(offset & 3) * 8
        switch offset & ~3 {
        case 0x00: return UInt64(select) >> shift
        case 0x10: return UInt64(windowRead() >> UInt32(shift))
        default: return 0
        }
    }

    func mmioWrite(offset: UInt64, size: Int, value: UInt64) {
        switch offset {
        case 0x00:
            select = UInt8(truncatingIfNeeded: value)
        case 0x10:
            guard size >= 4 else { return }
            windowWrite(UInt32(truncatingIfNeeded: value))
        case 0x40:
            endOfInterrupt(vector: UInt8(truncatingIfNeeded: value))
        default:
            break
        }
    }

    private func windowRead() -> UInt32 {
        switch select {
        case 0x00, 0x02: return UInt32(id) << 24
        case 0x01: return Self.version
        case 0x10..<0x40:
            let e = table[Int(select - 0x10) >> 1]
            return UInt32(truncatingIfNeeded: select & 1 == 0 ? e : e >> 32)
        default: return 0
        }
    }

    private func windowWrite(_ value: UInt32) {
        switch select {
        case 0x00:
            id = UInt8((value >> 24) & 0x0F)
        case 0x10..<0x40:
            let pin = Int(select - 0x10) >> 1
            var e = table[pin]
            if select & 1 == 0 {
                let readOnly = Self.remoteIRR | Self.deliveryStatus
                e = (e & ~0xFFFF_FFFF) | (UInt64(value) & ~readOnly) | (e & readOnly)
                let bit = UInt32(1) << UInt32(pin)
                if e & Self.levelTrigger == 0 {
                    e &= ~Self.remoteIRR
                } else {
                    pending = (pending & ~bit) | (lineLevel & bit)   // follow the line
                }
            } else {
                e = (e & 0xFFFF_FFFF) | (UInt64(value & 0xFF00_0000) << 32)
            }
            table[pin] = e
            service()
        default:
            break
        }
    }
}
