import HVSupport

/// An RGB colour.
struct ChartColor: Equatable, Sendable {
    var r: UInt8, g: UInt8, b: UInt8
    init(_ r: UInt8, _ g: UInt8, _ b: UInt8) { self.r = r; self.g = g; self.b = b }

    static let white = ChartColor(255, 255, 255)
    static let black = ChartColor(0, 0, 0)
    static let grid = ChartColor(225, 225, 225)
    static let text = ChartColor(40, 40, 40)

    /// Ten distinguishable line colours (the "tab10" palette).
    static let palette: [ChartColor] = [
        ChartColor(31, 119, 180), ChartColor(255, 127, 14), ChartColor(44, 160, 44), ChartColor(214, 39, 40),
        ChartColor(148, 103, 189), ChartColor(140, 86, 75), ChartColor(227, 119, 194), ChartColor(127, 127, 127),
        ChartColor(188, 189, 34), ChartColor(23, 190, 207),
    ]
}

/// An RGB raster with the few drawing operations a line chart needs: rectangles, lines
/// (solid or dashed, thick), and text in a built-in 5×7 bitmap font.
package struct ChartRaster: Sendable {
    let width: Int
    let height: Int
    /// width × height × 3 bytes, rows top to bottom.
    private(set) var pixels: [UInt8]

    init(width: Int, height: Int, background: ChartColor = .white) {
        self.width = width
        self.height = height
        pixels = [UInt8](repeating: 0, count: width * height * 3)
        fillRect(x: 0, y: 0, width: width, height: height, background)
    }

    func pixel(x: Int, y: Int) -> ChartColor {
        let o = (y * width + x) * 3
        return ChartColor(pixels[o], pixels[o + 1], pixels[o + 2])
    }

    mutating func set(x: Int, y: Int, _ c: ChartColor) {
        guard x >= 0, y >= 0, x < width, y < height else { return }
        let o = (y * width + x) * 3
        pixels[o] = c.r; pixels[o + 1] = c.g; pixels[o + 2] = c.b
    }

    mutating func fillRect(x: Int, y: Int, width w: Int, height h: Int, _ c: ChartColor) {
        for yy in max(0, y)..<min(height, y + h) {
            for xx in max(0, x)..<min(width, x + w) { set(x: xx, y: yy, c) }
        }
    }

    /// A line from (x0, y0) to (x1, y1) (Bresenham), `thickness` pixels wide; with
    /// `dash`, `dash.on` pixels drawn then `dash.off` skipped along the line.
    mutating func line(x0: Int, y0: Int, x1: Int, y1: Int, _ c: ChartColor, thickness: Int = 1,
                              dash: (on: Int, off: Int)? = nil) {
        var x = x0, y = y0
        let dx = abs(x1 - x0), dy = -abs(y1 - y0)
        let sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1
        var err = dx + dy
        var step = 0
        let lo = -(thickness - 1) / 2, hi = thickness / 2
        while true {
            if dash.map({ step % ($0.on + $0.off) < $0.on }) ?? true {
                for oy in lo...hi { for ox in lo...hi { set(x: x + ox, y: y + oy, c) } }
            }
            step += 1
            if x == x1 && y == y1 { break }
            let e2 = 2 * err
            if e2 >= dy { err += dy; x += sx }
            if e2 <= dx { err += dx; y += sy }
        }
    }

    /// Draws `s` with its top-left corner at (x, y); each glyph is 5×7 pixels times
    /// `scale`, 6 × `scale` apart. Characters without a glyph draw as '?'.
    mutating func text(_ s: String, x: Int, y: Int, _ c: ChartColor, scale: Int = 1) {
        var cx = x
        for ch in s {
            let rows = ChartFont.glyph(ch)
            for (ry, bits) in rows.enumerated() {
                for rx in 0..<5 where bits & (0x10 >> UInt8(rx)) != 0 {
                    fillRect(x: cx + rx * scale, y: y + ry * scale, width: scale, height: scale, c)
                }
            }
            cx += 6 * scale
        }
    }

    /// Width in pixels of `s` drawn at `scale` (without the trailing gap).
    static func textWidth(_ s: String, scale: Int = 1) -> Int { max(0, s.count * 6 - 1) * scale }

    /// The raster as a PNG file.
    package func png() -> [UInt8] { ChartPNG.encode(width: width, height: height, rgb: pixels) }
}
