import HVSched

/// The chart `hvhost sched-sim --png` writes: per VM, the achieved share of the pool in
/// each window (solid step line) and its entitlement (dashed, same colour), over time,
/// with axes, grid, a legend and the run's headline numbers.
package enum SchedSimChart {
    static let width = 960
    static let height = 540

    /// Renders `result` to a raster (call `.png()` for the file).
    package static func render(_ result: SchedSimResult) -> ChartRaster {
        var r = ChartRaster(width: width, height: height)
        let left = 78, right = width - 220, top = 70, bottom = height - 64
        let duration = Double(result.scenario.duration) / 1e9

        // Y range: 0 … a round number above every value (at most 100 %).
        let peak = result.windows.map { max($0.achievedPercent, $0.entitledPercent) }.max() ?? 100
        let yMax = min(100, max(10, ((peak * 1.08) / 10).rounded(.up) * 10))
        func px(_ seconds: Double) -> Int { left + Int(((seconds / duration) * Double(right - left)).rounded()) }
        func py(_ pct: Double) -> Int { bottom - Int(((min(pct, yMax) / yMax) * Double(bottom - top)).rounded()) }

        // Title.
        var title = result.scenario.title ?? result.scenario.name
        title += "  -  \(result.policy), seed \(result.seed), \(result.scenario.pcpus) pCPU" + (result.scenario.pcpus == 1 ? "" : "s")
        r.text(title, x: left, y: 14, .text, scale: 2)

        // Grid and tick labels.
        let yStep = yMax <= 20 ? 2.0 : (yMax <= 50 ? 5.0 : 10.0)
        var yv = 0.0
        while yv <= yMax + 1e-9 {
            let y = py(yv)
            r.line(x0: left, y0: y, x1: right, y1: y, .grid)
            let label = SchedSimFormat.fixed(yv, 0) + "%"
            r.text(label, x: left - 8 - ChartRaster.textWidth(label, scale: 2), y: y - 7, .text, scale: 2)
            yv += yStep
        }
        let xStep = niceStep(duration / 10)
        var xv = 0.0
        while xv <= duration + 1e-9 {
            let x = px(xv)
            r.line(x0: x, y0: top, x1: x, y1: bottom, .grid)
            r.line(x0: x, y0: bottom, x1: x, y1: bottom + 5, .black)
            let label = trimmed(xv)
            r.text(label, x: x - ChartRaster.textWidth(label, scale: 2) / 2, y: bottom + 10, .text, scale: 2)
            xv += xStep
        }
        r.line(x0: left, y0: top, x1: left, y1: bottom, .black)
        r.line(x0: left, y0: bottom, x1: right, y1: bottom, .black)
        let xLabel = "time (s)"
        r.text(xLabel, x: (left + right - ChartRaster.textWidth(xLabel, scale: 2)) / 2, y: bottom + 34, .text, scale: 2)
        r.text("% of pool", x: 8, y: top - 26, .text, scale: 2)

        // Series: entitlement dashed first, achieved solid on top.
        for vi in result.scenario.vms.indices {
            let color = ChartColor.palette[vi % ChartColor.palette.count]
            let rows = result.windows.filter { $0.vm == vi }
            drawSteps(&r, rows.map { ($0.start, $0.end, $0.entitledPercent) }, color, thickness: 1, dash: (6, 4), px: px, py: py)
        }
        for vi in result.scenario.vms.indices {
            let color = ChartColor.palette[vi % ChartColor.palette.count]
            let rows = result.windows.filter { $0.vm == vi }
            drawSteps(&r, rows.map { ($0.start, $0.end, $0.achievedPercent) }, color, thickness: 2, dash: nil, px: px, py: py)
        }

        // Legend.
        var ly = top
        let lx = right + 20
        for (vi, vm) in result.vms.enumerated() {
            let color = ChartColor.palette[vi % ChartColor.palette.count]
            r.fillRect(x: lx, y: ly + 2, width: 14, height: 10, color)
            r.text(vm.name, x: lx + 20, y: ly, .text, scale: 2)
            var detail = "\(vm.shares) sh"
            if vm.minPercent > 0 { detail += " min\(vm.minPercent)" }
            if vm.maxPercent < 100 { detail += " max\(vm.maxPercent)" }
            r.text(detail, x: lx + 20, y: ly + 17, .text, scale: 1)
            r.text("got " + SchedSimFormat.fixed(vm.achievedPercent, 1) + "% of " + SchedSimFormat.fixed(vm.entitledPercent, 1) + "%",
                   x: lx + 20, y: ly + 27, .text, scale: 1)
            ly += 42
            if ly > bottom - 40 { break }
        }
        r.line(x0: lx, y0: bottom - 20, x1: lx + 24, y1: bottom - 20, .text, thickness: 2)
        r.text("achieved", x: lx + 30, y: bottom - 23, .text, scale: 1)
        r.line(x0: lx, y0: bottom - 6, x1: lx + 24, y1: bottom - 6, .text, thickness: 1, dash: (6, 4))
        r.text("entitled", x: lx + 30, y: bottom - 9, .text, scale: 1)

        // Footer with the headline numbers.
        var foot = "window \(SchedSimScenario.formatDuration(result.scenario.window)), idle \(SchedSimFormat.fixed(result.idlePercent, 1))%"
        if let e = result.counters.maxPairErrorQuanta {
            foot += ", max pairwise error \(SchedSimFormat.fixed(e, 2)) quanta of \(SchedSimScenario.formatDuration(result.scenario.quantum))"
        }
        if let s = result.maxSkew { foot += ", max skew \(SchedSimFormat.fixed(Double(s) / 1e6, 2)) ms" }
        if result.counters.invalidPicks > 0 { foot += ", \(result.counters.invalidPicks) invalid picks" }
        r.text(foot, x: left, y: height - 14, .text, scale: 1)
        return r
    }

    private static func drawSteps(_ r: inout ChartRaster, _ pts: [(UInt64, UInt64, Double)], _ c: ChartColor,
                                  thickness: Int, dash: (on: Int, off: Int)?, px: (Double) -> Int, py: (Double) -> Int) {
        var prevY: Int?
        for (start, end, v) in pts {
            let x0 = px(Double(start) / 1e9), x1 = px(Double(end) / 1e9), y = py(v)
            if let p = prevY, p != y { r.line(x0: x0, y0: p, x1: x0, y1: y, c, thickness: thickness, dash: dash) }
            r.line(x0: x0, y0: y, x1: x1, y1: y, c, thickness: thickness, dash: dash)
            prevY = y
        }
    }

    /// 1, 2 or 5 × a power of ten, at least `raw`.
    static func niceStep(_ raw: Double) -> Double {
        guard raw > 0 else { return 1 }
        var p = 1e-3
        while p * 10 <= raw { p *= 10 }
        for m in [1.0, 2.0, 5.0, 10.0] where p * m >= raw { return p * m }
        return p * 10
    }

    private static func trimmed(_ v: Double) -> String {
        var s = SchedSimFormat.fixed(v, 3)
        while s.hasSuffix("0") { s.removeLast() }
        if s.hasSuffix(".") { s.removeLast() }
        return s
    }
}
