/// What a chart is drawn on: a raster (PNG) or an SVG document, with the few operations
/// a line chart needs. Coordinates are pixels, y down; text is placed by its top-left
/// corner in one of the two chart fonts.
protocol ChartCanvas {
    mutating func fillRect(x: Int, y: Int, width: Int, height: Int, _ c: ChartColor)
    /// A polyline `thickness` pixels wide; with `dash`, alternating on/off run lengths in
    /// pixels, continued across the points (so a step line keeps its pattern).
    mutating func polyline(_ points: [(x: Int, y: Int)], _ c: ChartColor, thickness: Int, dash: [Int]?)
    mutating func text(_ s: String, x: Int, y: Int, _ c: ChartColor, size: ChartFont.Size)
}

extension ChartCanvas {
    mutating func line(x0: Int, y0: Int, x1: Int, y1: Int, _ c: ChartColor, thickness: Int = 1, dash: [Int]? = nil) {
        polyline([(x0, y0), (x1, y1)], c, thickness: thickness, dash: dash)
    }
}

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

    /// `#rrggbb`, for SVG.
    var hex: String {
        "#" + [r, g, b].map { v in let s = String(v, radix: 16); return s.count == 1 ? "0" + s : s }.joined()
    }
}
