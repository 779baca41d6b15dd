/// The MSI-X capability (PCI Local Bus 3.0, 6.8.2): 12 bytes of configuration space
/// (message control with enable and function mask, table and PBA offset/BIR) and, in a
/// memory BAR, the vector table (16 bytes per vector: address low, address high, data,
/// vector control) and the pending-bit array. Guest accesses arrive under the host
/// bridge's lock, byte by byte; what the guest may change is masked here.
struct MSIXCapability {
    static let capabilityID: UInt8 = 0x11
    static let maxVectors = 2048
    static let entrySize = 16
    /// Guest-writable bits of each byte of a table entry: address bits 1:0 are
    /// reserved, and of vector control only the mask bit exists.
    private static let entryWriteMask: [UInt8] = [0xFC, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                                                  0xFF, 0xFF, 0xFF, 0xFF, 0x01, 0x00, 0x00, 0x00]

    let offset: Int
    let vectors: Int
    let bar: Int
    let tableRange: Range<UInt64>
    let pbaRange: Range<UInt64>
    private var table: [UInt8]
    private var pending: [UInt64]

    /// Why a layout cannot be used, or nil when it can.
    static func problem(vectors: Int, barSize: UInt64, tableOffset: UInt64, pbaOffset: UInt64) -> String? {
        guard (1...maxVectors).contains(vectors) else { return "MSI-X vector count \(vectors) must be 1...\(maxVectors)" }
        guard tableOffset % 8 == 0, pbaOffset % 8 == 0 else { return "MSI-X table and PBA offsets must be 8-byte aligned" }
        let table = tableOffset..<tableOffset + UInt64(vectors * entrySize)
        let pba = pbaOffset..<pbaOffset + UInt64(8 * ((vectors + 63) / 64))
        guard table.upperBound <= barSize, pba.upperBound <= barSize else { return "MSI-X table or PBA runs past the BAR's end" }
        guard !table.overlaps(pba) else { return "MSI-X table and PBA overlap" }
        return nil
    }

    init(offset: Int, vectors: Int, bar: Int, tableOffset: UInt64, pbaOffset: UInt64) {
        self.offset = offset
        self.vectors = vectors
        self.bar = bar
        tableRange = tableOffset..<tableOffset + UInt64(vectors * Self.entrySize)
        pbaRange = pbaOffset..<pbaOffset + UInt64(8 * ((vectors + 63) / 64))
        table = [UInt8](repeating: 0, count: vectors * Self.entrySize)
        // Every vector starts masked (6.8.2.9).
        for v in 0..<vectors { table[v * Self.entrySize + 12] = 1 }
        pending = [UInt64](repeating: 0, count: (vectors + 63) / 64)
    }

    func install(into config: inout [UInt8], mask: inout [UInt8]) {
        config[offset] = Self.capabilityID
        let control = UInt16(vectors - 1)                  // table size, N - 1
        config[offset + 2] = UInt8(control & 0xFF)
        config[offset + 3] = UInt8(control >> 8)
        mask[offset + 3] = 0xC0                            // enable, function mask
        let tableBIR = UInt32(truncatingIfNeeded: tableRange.lowerBound) | UInt32(bar)
        let pbaBIR = UInt32(truncatingIfNeeded: pbaRange.lowerBound) | UInt32(bar)
        for i in 0..<4 {
            config[offset + 4 + i] = UInt8(truncatingIfNeeded: tableBIR >> (8 * UInt32(i)))
            config[offset + 8 + i] = UInt8(truncatingIfNeeded: pbaBIR >> (8 * UInt32(i)))
        }
    }

    func enabled(_ config: [UInt8]) -> Bool { config[offset + 3] & 0x80 != 0 }
    func functionMasked(_ config: [UInt8]) -> Bool { config[offset + 3] & 0x40 != 0 }
    func vectorMasked(_ vector: Int) -> Bool { table[vector * Self.entrySize + 12] & 1 != 0 }

    /// The message the guest programmed for `vector`.
    func message(_ vector: Int) -> (address: UInt64, data: UInt32) {
        let e = vector * Self.entrySize
        var address: UInt64 = 0, data: UInt32 = 0
        for i in 0..<8 { address |= UInt64(table[e + i]) << (8 * UInt64(i)) }
        for i in 0..<4 { data |= UInt32(table[e + 8 + i]) << (8 * UInt32(i)) }
        return (address, data)
    }

    func isPending(_ vector: Int) -> Bool { pending[vector / 64] & (1 << UInt64(vector % 64)) != 0 }

    mutating func setPending(_ vector: Int, _ on: Bool) {
        if on { pending[vector / 64] |= 1 << UInt64(vector % 64) } else { pending[vector / 64] &= ~(1 << UInt64(vector % 64)) }
    }

    /// The vectors with their pending bit set, lowest first.
    var pendingVectors: [Int] {
        var out: [Int] = []
        for (w, word) in pending.enumerated() where word != 0 {
            for b in 0..<64 where word & (1 << UInt64(b)) != 0 { out.append(w * 64 + b) }
        }
        return out
    }

    /// A byte of the table or PBA at `offset` from the BAR's base; nil outside both.
    func byte(at offset: UInt64) -> UInt8? {
        if tableRange.contains(offset) { return table[Int(offset - tableRange.lowerBound)] }
        if pbaRange.contains(offset) {
            let i = Int(offset - pbaRange.lowerBound)
            return UInt8(truncatingIfNeeded: pending[i / 8] >> (8 * UInt64(i % 8)))
        }
        return nil
    }

    /// The table and the PBA as a suspend file carries them.
    var savedTable: [UInt8] { table }
    var savedPending: [UInt64] { pending }

    /// Restores a saved table and PBA, masked like guest writes (reserved bits stay
    /// zero) and pending bits limited to real vectors. False when the sizes do not fit.
    mutating func restore(table saved: [UInt8], pending savedPending: [UInt64]) -> Bool {
        guard saved.count == table.count, savedPending.count == pending.count else { return false }
        for i in 0..<table.count {
            let mask = Self.entryWriteMask[i % Self.entrySize]
            table[i] = (table[i] & ~mask) | (saved[i] & mask)
        }
        pending = savedPending
        if vectors % 64 != 0 { pending[pending.count - 1] &= (1 << UInt64(vectors % 64)) - 1 }
        return true
    }

    /// A guest write of a table byte (the PBA is read-only); false outside the table.
    mutating func writeTableByte(at offset: UInt64, _ value: UInt8) -> Bool {
        guard tableRange.contains(offset) else { return false }
        let i = Int(offset - tableRange.lowerBound)
        let mask = Self.entryWriteMask[i % Self.entrySize]
        table[i] = (table[i] & ~mask) | (value & mask)
        return true
    }
}

/// The MSI-X table and PBA inside their BAR: decoded by the host bridge, which owns the
/// capability's state under its lock.
final class MSIXWindow: PCIBARWindow {
    private weak var bridge: PCIHostBridge?
    private unowned let function: PCIFunction
    private let table: Range<UInt64>
    private let pba: Range<UInt64>

    init(bridge: PCIHostBridge, function: PCIFunction, capability: MSIXCapability) {
        self.bridge = bridge
        self.function = function
        table = capability.tableRange
        pba = capability.pbaRange
    }

    private func claims(_ offset: UInt64) -> Bool { table.contains(offset) || pba.contains(offset) }

    func read(offset: UInt64, data: UnsafeMutableRawBufferPointer) -> Bool {
        guard claims(offset) else { return false }
        guard let bridge else {
            data.initializeMemory(as: UInt8.self, repeating: 0xFF)
            return true
        }
        bridge.msixRead(function, offset: offset, data: data)
        return true
    }

    func write(offset: UInt64, data: UnsafeRawBufferPointer) -> Bool {
        guard claims(offset) else { return false }
        bridge?.msixWrite(function, offset: offset, data: data)
        return true
    }
}
