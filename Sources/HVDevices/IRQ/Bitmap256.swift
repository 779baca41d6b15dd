/// 256 bits (one per interrupt vector), as the LAPIC's IRR, ISR and TMR.
struct Bitmap256: Equatable {
    private var w0: UInt64 = 0, w1: UInt64 = 0, w2: UInt64 = 0, w3: UInt64 = 0

    subscript(bit: UInt8) -> Bool {
        get { word(Int(bit >> 6)) & (1 << UInt64(bit & 63)) != 0 }
        set {
            let mask: UInt64 = 1 << UInt64(bit & 63)
            var w = word(Int(bit >> 6))
            if newValue { w |= mask } else { w &= ~mask }
            setWord(Int(bit >> 6), w)
        }
    }

    /// The highest set bit, or nil.
    var highest: UInt8? {
        for i in stride(from: 3, through: 0, by: -1) {
            let w = word(i)
            if w != 0 { return UInt8(i * 64 + 63 - w.leadingZeroBitCount) }
        }
        return nil
    }

    var isEmpty: Bool { w0 | w1 | w2 | w3 == 0 }

    /// Bits 32*index ..< 32*index+32, as the APIC register at that index reads them.
    func register(_ index: Int) -> UInt32 {
        guard (0..<8).contains(index) else { return 0 }
        let w = word(index >> 1)
        return UInt32(truncatingIfNeeded: index & 1 == 0 ? w : w >> 32)
    }

    private func word(_ i: Int) -> UInt64 {
        switch i { case 0: return w0; case 1: return w1; case 2: return w2; default: return w3 }
    }

    private mutating func setWord(_ i: Int, _ v: UInt64) {
        switch i { case 0: w0 = v; case 1: w1 = v; case 2: w2 = v; default: w3 = v }
    }
}
