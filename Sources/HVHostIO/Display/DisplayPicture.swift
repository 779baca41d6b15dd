/// The screen as a person sees it: 8-bit RGB, rows top to bottom, the pointer image
/// blended in (straight alpha) where the device shows one. This is what a VNC client
/// without the cursor pseudo-encoding displays, and what `screenshot` saves.
package struct DisplayPicture: Equatable, Sendable {
    package let width: Int
    package let height: Int
    /// width * height * 3 bytes: red, green, blue.
    package let rgb: [UInt8]

    init(frame: DisplayFrame, cursor: DisplayCursor?) {
        let mode = frame.mode
        width = mode.width
        height = mode.height
        var out = [UInt8](repeating: 0, count: width * height * 3)
        let bytes = frame.bytes, palette = frame.palette
        for y in 0..<height {
            let row = y * mode.pitch
            for x in 0..<width {
                let c: UInt32
                switch mode.format {
                case .xrgb8888:
                    let i = row + x * 4
                    c = UInt32(bytes[i]) | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2]) << 16
                case .rgb888:
                    let i = row + x * 3
                    c = UInt32(bytes[i]) | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2]) << 16
                case .rgb565, .xrgb1555:
                    let i = row + x * 2
                    let v = UInt32(bytes[i]) | UInt32(bytes[i + 1]) << 8
                    let (r, g, b): (UInt32, UInt32, UInt32) = mode.format == .rgb565
                        ? ((v >> 11) & 0x1F, (v >> 5) & 0x3F, v & 0x1F)
                        : ((v >> 10) & 0x1F, (v >> 5) & 0x1F, v & 0x1F)
                    let gBits: UInt32 = mode.format == .rgb565 ? 6 : 5
                    c = Self.widen(r, 5) << 16 | Self.widen(g, gBits) << 8 | Self.widen(b, 5)
                case .indexed8:
                    c = palette[Int(bytes[row + x])]
                }
                let o = (y * width + x) * 3
                out[o] = UInt8(truncatingIfNeeded: c >> 16)
                out[o + 1] = UInt8(truncatingIfNeeded: c >> 8)
                out[o + 2] = UInt8(truncatingIfNeeded: c)
            }
        }
        if let cursor, cursor.visible, !cursor.pixels.isEmpty {
            Self.blend(cursor, into: &out, width: width, height: height)
        }
        rgb = out
    }

    /// An n-bit channel spread to 8 bits (the top bits repeated in the low ones).
    static func widen(_ v: UInt32, _ bits: UInt32) -> UInt32 { (v << (8 - bits)) | (v >> (2 * bits - 8)) }

    private static func blend(_ cursor: DisplayCursor, into out: inout [UInt8], width: Int, height: Int) {
        let left = cursor.x - cursor.hotX, top = cursor.y - cursor.hotY
        for cy in 0..<cursor.height {
            let y = top + cy
            guard y >= 0, y < height else { continue }
            for cx in 0..<cursor.width {
                let x = left + cx
                guard x >= 0, x < width else { continue }
                let p = cursor.pixels[cy * cursor.width + cx]
                let a = p >> 24
                guard a != 0 else { continue }
                let o = (y * width + x) * 3
                for (k, shift) in [(0, 16), (1, 8), (2, 0)] as [(Int, UInt32)] {
                    let src = (p >> shift) & 0xFF, dst = UInt32(out[o + k])
                    out[o + k] = UInt8((src * a + dst * (255 - a) + 127) / 255)
                }
            }
        }
    }
}

extension DisplaySurface {
    /// The screen now, with the pointer when `cursor` (and the device shows it); nil
    /// while blank.
    package func picture(cursor withCursor: Bool) -> DisplayPicture? {
        guard let frame = snapshot() else { return nil }
        return DisplayPicture(frame: frame, cursor: withCursor ? cursor : nil)
    }
}
