import HVSupport

/// An RGB raster chart canvas: rectangles, thick and dashed polylines (Bresenham), and
/// text in the bitmap chart fonts; `png()` encodes it.
package struct ChartRaster: ChartCanvas, Sendable {
    let width: Int
    let height: Int
    let fonts: ChartFont
    /// width × height × 3 bytes, rows top to bottom.
    private(set) var pixels: [UInt8]

    init(width: Int, height: Int, fonts: ChartFont, background: ChartColor = .white) {
        self.width = width
        self.height = height
        self.fonts = fonts
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
        for yy in max(0, y)..<max(max(0, y), min(height, y + h)) {
            for xx in max(0, x)..<max(max(0, x), min(width, x + w)) { set(x: xx, y: yy, c) }
        }
    }

    mutating func polyline(_ points: [(x: Int, y: Int)], _ c: ChartColor, thickness: Int, dash: [Int]?) {
        let period = dash.map { $0.reduce(0, +) } ?? 0
        var step = 0
        let lo = -(thickness - 1) / 2, hi = thickness / 2
        for (a, b) in zip(points, points.dropFirst()) {
            var x = a.x, y = a.y
            let dx = abs(b.x - a.x), dy = -abs(b.y - a.y)
            let sx = a.x < b.x ? 1 : -1, sy = a.y < b.y ? 1 : -1
            var err = dx + dy
            while true {
                if let dash, period > 0, !Self.isOn(dash, at: step % period) {
                } else {
                    for oy in lo...hi { for ox in lo...hi { set(x: x + ox, y: y + oy, c) } }
                }
                if x == b.x && y == b.y { break }
                step += 1
                let e2 = 2 * err
                if e2 >= dy { err += dy; x += sx }
                if e2 <= dx { err += dx; y += sy }
            }
        }
    }

    /// Whether position `p` (0 ..< the period) of an on/off pattern is drawn.
    static func isOn(_ dash: [Int], at p: Int) -> Bool {
        var rest = p
        for (k, len) in dash.enumerated() {
            if rest < len { return k % 2 == 0 }
            rest -= len
        }
        return true
    }

    /// Draws `s` with its top-left corner at (x, y), one glyph cell per character.
    mutating func text(_ s: String, x: Int, y: Int, _ c: ChartColor, size: ChartFont.Size) {
        let font = fonts.font(size)
        var cx = x
        for ch in s {
            for gy in 0..<font.height {
                for gx in 0..<font.width where font.isSet(ch, x: gx, y: gy) { set(x: cx + gx, y: y + gy, c) }
            }
            cx += font.width
        }
    }

    /// The raster as a PNG file.
    package func png() -> [UInt8] { PNGEncoder.encode(width: width, height: height, pixels: pixels, format: .rgb) }
}
