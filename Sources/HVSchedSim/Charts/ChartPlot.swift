import HVSched

/// The chart `hvhost sched-sim --png/--svg` writes: per VM, the achieved share of the
/// pool in each window (a thick step line in the VM's colour and dash pattern) and its
/// entitlement (thin, dashed, same colour), over time, with axes, grid, a legend and the
/// run's headline numbers. One drawing, two canvases: a raster (PNG) and SVG.
package struct SchedSimChart {
    static let width = 960
    static let height = 540

    /// How each VM's achieved line is drawn besides its colour: an on/off dash pattern
    /// (nil: solid) and a vertical offset in pixels, so equal shares stay visible as
    /// interleaved, side-by-side lines instead of one hiding the others.
    static let achievedDashes: [[Int]?] = [nil, [12, 4], [4, 4], [12, 4, 4, 4], [8, 8], [2, 4]]
    static let achievedOffsets = [0, 2, -2, 1, -1, 3]
    /// The entitlement lines: thin, dashed, in the VM's colour.
    static let entitledDash = [6, 4]

    let result: SchedSimResult

    package init(_ result: SchedSimResult) { self.result = result }

    /// The chart as a PNG file; throws when the bitmap fonts are not installed.
    package func png() throws -> [UInt8] { try Self.render(result).png() }

    /// The chart as an SVG document.
    package func svg() -> String {
        var c = ChartSVG(width: Self.width, height: Self.height)
        draw(into: &c)
        return c.document
    }

    /// Renders `result` to a raster (call `.png()` for the file).
    static func render(_ result: SchedSimResult) throws -> ChartRaster {
        var r = ChartRaster(width: width, height: height, fonts: try ChartFont.shared())
        SchedSimChart(result).draw(into: &r)
        return r
    }

    static func dash(forVM vi: Int) -> [Int]? { achievedDashes[vi % achievedDashes.count] }
    static func offset(forVM vi: Int) -> Int { achievedOffsets[vi % achievedOffsets.count] }

    /// Text width in pixels (every glyph is one cell wide).
    static func textWidth(_ s: String, _ size: ChartFont.Size) -> Int { s.count * (size == .small ? 6 : 8) }

    func draw<C: ChartCanvas>(into r: inout C) {
        let width = Self.width, height = Self.height
        r.fillRect(x: 0, y: 0, width: width, height: height, .white)
        let left = 70, right = width - 230, top = 70, bottom = height - 64
        let duration = Double(result.scenario.duration) / 1e9

        // Y range: 0 … a round number above every value (at most 100 %).
        let peak = result.windows.map { max($0.achievedPercent, $0.entitledPercent) }.max() ?? 100
        let yMax = min(100, max(10, ((peak * 1.08) / 10).rounded(.up) * 10))
        func px(_ seconds: Double) -> Int { left + Int(((seconds / duration) * Double(right - left)).rounded()) }
        func py(_ pct: Double) -> Int { bottom - Int(((min(pct, yMax) / yMax) * Double(bottom - top)).rounded()) }

        // Title.
        var title = result.scenario.title ?? result.scenario.name
        title += "  -  \(result.policy), seed \(result.seed), \(result.scenario.pcpus) pCPU" + (result.scenario.pcpus == 1 ? "" : "s")
        r.text(title, x: left, y: 14, .text, size: .large)

        // Grid and tick labels.
        let yStep = yMax <= 20 ? 2.0 : (yMax <= 50 ? 5.0 : 10.0)
        var yv = 0.0
        while yv <= yMax + 1e-9 {
            let y = py(yv)
            r.line(x0: left, y0: y, x1: right, y1: y, .grid)
            let label = SchedSimFormat.fixed(yv, 0) + "%"
            r.text(label, x: left - 8 - Self.textWidth(label, .large), y: y - 8, .text, size: .large)
            yv += yStep
        }
        let xStep = Self.niceStep(duration / 10)
        var xv = 0.0
        while xv <= duration + 1e-9 {
            let x = px(xv)
            r.line(x0: x, y0: top, x1: x, y1: bottom, .grid)
            r.line(x0: x, y0: bottom, x1: x, y1: bottom + 5, .black)
            let label = Self.trimmed(xv)
            r.text(label, x: x - Self.textWidth(label, .large) / 2, y: bottom + 9, .text, size: .large)
            xv += xStep
        }
        r.line(x0: left, y0: top, x1: left, y1: bottom, .black)
        r.line(x0: left, y0: bottom, x1: right, y1: bottom, .black)
        let xLabel = "time (s)"
        r.text(xLabel, x: (left + right - Self.textWidth(xLabel, .large)) / 2, y: bottom + 32, .text, size: .large)
        r.text("% of pool", x: 8, y: top - 26, .text, size: .large)

        // Series: entitlements thin and dashed first, achieved shares on top, each VM in
        // its own dash pattern and offset.
        for vi in result.scenario.vms.indices {
            let color = ChartColor.palette[vi % ChartColor.palette.count]
            let rows = result.windows.filter { $0.vm == vi }
            r.polyline(steps(rows.map { ($0.start, $0.end, $0.entitledPercent) }, offset: 0, px: px, py: py),
                       color, thickness: 1, dash: Self.entitledDash)
        }
        for vi in result.scenario.vms.indices {
            let color = ChartColor.palette[vi % ChartColor.palette.count]
            let rows = result.windows.filter { $0.vm == vi }
            r.polyline(steps(rows.map { ($0.start, $0.end, $0.achievedPercent) }, offset: Self.offset(forVM: vi), px: px, py: py),
                       color, thickness: 2, dash: Self.dash(forVM: vi))
        }

        // Legend: each VM's line as drawn, name and numbers.
        var ly = top
        let lx = right + 16
        for (vi, vm) in result.vms.enumerated() {
            let color = ChartColor.palette[vi % ChartColor.palette.count]
            r.line(x0: lx, y0: ly + 8, x1: lx + 28, y1: ly + 8, color, thickness: 2, dash: Self.dash(forVM: vi))
            r.text(vm.name, x: lx + 34, y: ly, .text, size: .large)
            var detail = "\(vm.shares) sh"
            if vm.minPercent > 0 { detail += " min\(vm.minPercent)" }
            if vm.maxPercent < 100 { detail += " max\(vm.maxPercent)" }
            r.text(detail, x: lx + 34, y: ly + 17, .text, size: .small)
            r.text("got " + SchedSimFormat.fixed(vm.achievedPercent, 1) + "% of " + SchedSimFormat.fixed(vm.entitledPercent, 1) + "%",
                   x: lx + 34, y: ly + 29, .text, size: .small)
            ly += 44
            if ly > bottom - 44 { break }
        }
        r.line(x0: lx, y0: bottom - 20, x1: lx + 28, y1: bottom - 20, .text, thickness: 2)
        r.text("achieved", x: lx + 34, y: bottom - 26, .text, size: .small)
        r.line(x0: lx, y0: bottom - 4, x1: lx + 28, y1: bottom - 4, .text, thickness: 1, dash: Self.entitledDash)
        r.text("entitled", x: lx + 34, y: bottom - 10, .text, size: .small)

        // Footer with the headline numbers.
        var foot = "window \(SchedSimScenario.formatDuration(result.scenario.window)), idle \(SchedSimFormat.fixed(result.idlePercent, 1))%"
        if let e = result.counters.maxPairErrorQuanta {
            foot += ", max pairwise error \(SchedSimFormat.fixed(e, 2)) quanta of \(SchedSimScenario.formatDuration(result.scenario.quantum))"
        }
        if let s = result.maxSkew { foot += ", max skew \(SchedSimFormat.fixed(Double(s) / 1e6, 2)) ms" }
        if result.counters.invalidPicks > 0 { foot += ", \(result.counters.invalidPicks) invalid picks" }
        r.text(foot, x: left, y: height - 16, .text, size: .small)
    }

    /// The points of a step line through (start, end, value) windows, `offset` pixels down.
    private func steps(_ pts: [(UInt64, UInt64, Double)], offset: Int, px: (Double) -> Int, py: (Double) -> Int) -> [(x: Int, y: Int)] {
        var out: [(x: Int, y: Int)] = []
        for (start, end, v) in pts {
            let x0 = px(Double(start) / 1e9), x1 = px(Double(end) / 1e9), y = py(v) + offset
            if let last = out.last, last.y != y { out.append((x0, y)) } else if out.isEmpty { out.append((x0, y)) }
            out.append((x1, y))
        }
        return out
    }

    /// 1, 2 or 5 × a power of ten, at least `raw`.
    static func niceStep(_ raw: Double) -> Double {
        guard raw > 0 else { return 1 }
        var p = 1e-3
        while p * 10 <= raw { p *= 10 }
        for m in [1.0, 2.0, 5.0, 10.0] where p * m >= raw { return p * m }
        return p * 10
    }

    static func trimmed(_ v: Double) -> String {
        var s = SchedSimFormat.fixed(v, 3)
        while s.hasSuffix("0") { s.removeLast() }
        if s.hasSuffix(".") { s.removeLast() }
        return s
    }
}
