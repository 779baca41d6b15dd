/// An interrupt message on the (virtual) APIC bus: what an I/O APIC redirection entry,
/// a local APIC's ICR or an MSI write produces.
struct APICMessage: Equatable, Sendable {
    enum DeliveryMode: UInt8, Sendable {
        case fixed = 0, lowestPriority = 1, smi = 2, remoteRead = 3
        case nmi = 4, initialize = 5, startup = 6, extINT = 7
    }

    var vector: UInt8
    var deliveryMode: DeliveryMode
    /// Logical (true) or physical destination mode.
    var logical: Bool
    /// APIC ID (physical) or message destination address (logical); 0xFF broadcasts.
    var destination: UInt8
    var levelTriggered: Bool

    init(vector: UInt8, deliveryMode: DeliveryMode, logical: Bool, destination: UInt8,
                levelTriggered: Bool) {
        self.vector = vector
        self.deliveryMode = deliveryMode
        self.logical = logical
        self.destination = destination
        self.levelTriggered = levelTriggered
    }

    /// Decodes an MSI write (address 0xFEExxxxx: destination ID bits 19:12, destination
    /// mode bit 2; data: vector bits 7:0, delivery mode 10:8, trigger mode bit 15).
    /// Returns nil for addresses outside the interrupt window.
    init?(msiAddress address: UInt64, data: UInt32) {
        guard address >> 20 == 0xFEE else { return nil }
        self.init(vector: UInt8(truncatingIfNeeded: data),
                  deliveryMode: DeliveryMode(rawValue: UInt8((data >> 8) & 7)) ?? .fixed,
                  logical: address & 0x4 != 0,
                  destination: UInt8(truncatingIfNeeded: address >> 12),
                  levelTriggered: data & 0x8000 != 0)
    }
}
