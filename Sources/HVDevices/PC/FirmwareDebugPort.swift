import HVSupport

/// Bochs/QEMU-style firmware debug console at port 0x402: every byte written is one
/// character of the firmware's log. A read returns 0xE9, the value SeaBIOS (a QEMU
/// build) checks for before it writes its log here; without the port it stays quiet.
final class FirmwareDebugPort {
    static let defaultBase: UInt16 = 0x402
    static let presenceValue: UInt8 = 0xE9

    let sink: any SerialSink

    init(sink: any SerialSink) { self.sink = sink }

    func read() -> UInt8 { Self.presenceValue }
    func write(_ byte: UInt8) { sink.transmit(byte) }
}
