/// The MSI capability structure (64-bit address, per-vector masking) and its pending bits.
struct MSICapability {
    let offset: Int
    let vectors: Int
    var pending: UInt32 = 0

    init(offset: Int, vectors: Int) {
        self.offset = offset
        self.vectors = vectors
    }

    private var log2Vectors: UInt16 { UInt16(vectors.trailingZeroBitCount) }

    func install(into config: inout [UInt8], mask: inout [UInt8]) {
        config[offset] = 0x05                               // capability id: MSI
        config[offset + 1] = 0                              // end of list
        let control: UInt16 = (1 << 8) | (1 << 7) | (log2Vectors << 1)
        config[offset + 2] = UInt8(control & 0xFF)
        config[offset + 3] = UInt8(control >> 8)
        mask[offset + 2] = 0x71                             // enable, multiple message enable
        for i in 4..<8 { mask[offset + i] = i == 4 ? 0xFC : 0xFF }   // address (dword aligned)
        for i in 8..<12 { mask[offset + i] = 0xFF }          // upper address
        mask[offset + 12] = 0xFF; mask[offset + 13] = 0xFF  // data
        let vectorMask = vectors == 32 ? UInt32.max : (UInt32(1) << vectors) - 1
        for i in 0..<4 { mask[offset + 16 + i] = UInt8(truncatingIfNeeded: vectorMask >> (8 * UInt32(i))) }
    }

    /// Clamps Multiple Message Enable to what the function is capable of and mirrors
    /// the pending bits into configuration space.
    func normalize(config: inout [UInt8]) {
        let mme = (config[offset + 2] >> 4) & 0x7
        if UInt16(mme) > log2Vectors {
            config[offset + 2] = (config[offset + 2] & 0x8F) | UInt8(log2Vectors << 4)
        }
        for i in 0..<4 { config[offset + 20 + i] = UInt8(truncatingIfNeeded: pending >> (8 * UInt32(i))) }
    }

    func enabled(_ config: [UInt8]) -> Bool { config[offset + 2] & 1 != 0 }
    func enabledVectors(_ config: [UInt8]) -> Int { 1 << Int((config[offset + 2] >> 4) & 0x7) }

    func address(_ config: [UInt8]) -> UInt64 {
        var a: UInt64 = 0
        for i in 0..<8 { a |= UInt64(config[offset + 4 + i]) << (8 * UInt64(i)) }
        return a
    }

    func data(_ config: [UInt8]) -> UInt32 { UInt32(config[offset + 12]) | UInt32(config[offset + 13]) << 8 }

    func masked(_ config: [UInt8], vector: Int) -> Bool {
        let byte = config[offset + 16 + vector / 8]
        return byte & (1 << (vector % 8)) != 0
    }
}
