extension DisplayFrame {
    /// The pixels of `rect` (inside the mode) as 0x00RRGGBB, rows top to bottom.
    func xrgb(_ rect: DisplayRect) -> [UInt32] {
        var out = [UInt32](repeating: 0, count: rect.width * rect.height)
        let pitch = mode.pitch
        bytes.withUnsafeBufferPointer { b in
            out.withUnsafeMutableBufferPointer { o in
                var i = 0
                for y in rect.y..<(rect.y + rect.height) {
                    let row = y * pitch
                    for x in rect.x..<(rect.x + rect.width) {
                        o[i] = pixel(b, row, x)
                        i += 1
                    }
                }
            }
        }
        return out
    }

    private func pixel(_ b: UnsafeBufferPointer<UInt8>, _ row: Int, _ x: Int) -> UInt32 {
        switch mode.format {
        case .xrgb8888:
            let o = row + 4 * x
            return UInt32(b[o]) | UInt32(b[o + 1]) << 8 | UInt32(b[o + 2]) << 16
        case .rgb888:
            let o = row + 3 * x
            return UInt32(b[o]) | UInt32(b[o + 1]) << 8 | UInt32(b[o + 2]) << 16
        case .rgb565:
            let v = UInt32(b[row + 2 * x]) | UInt32(b[row + 2 * x + 1]) << 8
            return Self.expand(v >> 11 & 0x1F, 5) << 16 | Self.expand(v >> 5 & 0x3F, 6) << 8 | Self.expand(v & 0x1F, 5)
        case .xrgb1555:
            let v = UInt32(b[row + 2 * x]) | UInt32(b[row + 2 * x + 1]) << 8
            return Self.expand(v >> 10 & 0x1F, 5) << 16 | Self.expand(v >> 5 & 0x1F, 5) << 8 | Self.expand(v & 0x1F, 5)
        case .indexed8:
            return palette[Int(b[row + x])]
        }
    }

    /// An n-bit channel scaled to 8 bits (top bits repeated, so full scale is 0xFF).
    private static func expand(_ v: UInt32, _ bits: UInt32) -> UInt32 {
        (v << (8 - bits)) | (v >> (2 * bits - 8))
    }
}
