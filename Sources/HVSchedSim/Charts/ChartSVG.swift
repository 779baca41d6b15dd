/// An SVG chart canvas (for papers): the same drawing as the raster, as vector shapes
/// and real text in a monospace font sized like the bitmap fonts' cells.
struct ChartSVG: ChartCanvas {
    let width: Int
    let height: Int
    private var body = ""

    init(width: Int, height: Int) {
        self.width = width
        self.height = height
    }

    mutating func fillRect(x: Int, y: Int, width w: Int, height h: Int, _ c: ChartColor) {
        body += "<rect x=\"\(x)\" y=\"\(y)\" width=\"\(w)\" height=\"\(h)\" fill=\"\(c.hex)\"/>\n"
    }

    mutating func polyline(_ points: [(x: Int, y: Int)], _ c: ChartColor, thickness: Int, dash: [Int]?) {
        guard points.count >= 2 else { return }
        // Odd widths sit on pixel centres, as in the raster.
        let shift = thickness % 2 == 1 ? 0.5 : 0
        let pts = points.map { "\(Double($0.x) + shift),\(Double($0.y) + shift)" }.joined(separator: " ")
        body += "<polyline points=\"\(pts)\" fill=\"none\" stroke=\"\(c.hex)\" stroke-width=\"\(thickness)\""
        if let dash { body += " stroke-dasharray=\"\(dash.map(String.init).joined(separator: " "))\"" }
        body += "/>\n"
    }

    mutating func text(_ s: String, x: Int, y: Int, _ c: ChartColor, size: ChartFont.Size) {
        let (px, advance) = size == .small ? (11, 6) : (14, 8)
        let escaped = s.replacingAll([("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("\"", "&quot;")])
        // textLength keeps the bitmap layout's widths whatever monospace font renders it.
        body += "<text x=\"\(x)\" y=\"\(y + px - 2)\" font-family=\"DejaVu Sans Mono, monospace\" font-size=\"\(px)\""
        body += " textLength=\"\(advance * s.count)\" lengthAdjust=\"spacingAndGlyphs\" fill=\"\(c.hex)\">\(escaped)</text>\n"
    }

    /// The whole document.
    var document: String {
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n" +
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(width)\" height=\"\(height)\" viewBox=\"0 0 \(width) \(height)\">\n" +
            body + "</svg>\n"
    }
}

extension String {
    fileprivate func replacingAll(_ pairs: [(String, String)]) -> String {
        var out = ""
        for ch in self {
            if let r = pairs.first(where: { $0.0 == String(ch) }) { out += r.1 } else { out.append(ch) }
        }
        return out
    }
}
