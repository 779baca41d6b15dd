/// PS/2 system control port A (0x92): bit 0 pulses the CPU reset line ("fast reset"),
/// bit 1 is the A20 gate. A20 is always on in this VM (KVM does not wrap addresses);
/// the bit reads back as written so firmware that toggles it sees what it set.
final class SystemControlPortA {
    static let port: UInt16 = 0x92
    static let fastReset: UInt8 = 1 << 0
    static let a20: UInt8 = 1 << 1

    private(set) var value: UInt8 = a20
    /// The guest asked for a reset.
    var resetRequest: () -> Void = {}

    func reset() { value = Self.a20 }

    func read() -> UInt8 { value }

    func write(_ byte: UInt8) {
        // The reset is edge-triggered on a 0 -> 1 transition of bit 0.
        let rising = byte & Self.fastReset != 0 && value & Self.fastReset == 0
        value = byte
        if rising { resetRequest() }
    }
}
