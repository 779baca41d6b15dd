/// Where an outgoing migration is, for `migrate status` and the progress bar of
/// `hvhost migrate`.
package struct MigrationProgress: Sendable {
    package enum Phase: Sendable, Equatable {
        case connecting, checking, copying, stopped, completed, failed(String), cancelled
    }

    var phase: Phase = .connecting
    /// Pages of guest RAM (the denominator of the first pass).
    var totalPages = 0
    /// Pages looked at in the first pass so far, then all of them.
    var firstPassPages = 0
    var round = 0
    var bytesSent: UInt64 = 0
    var pagesSent = 0
    var zeroPages = 0
    var duplicatePages = 0
    /// Dirty pages left after the last pass.
    var remainingPages = 0
    /// Pages the guest dirtied per second during the last pass.
    var dirtyPagesPerSecond = 0.0
    /// Measured link bandwidth, bytes per second.
    var bandwidth = 0.0
    var expectedDowntimeMilliseconds = 0.0
    /// Share of time the vCPUs are held back by auto-converge, 0...99.
    var throttlePercent = 0
    /// The measured stop-and-copy time, once switched over.
    var downtimeMilliseconds: Double?
    var elapsedMilliseconds = 0.0

    var isFinished: Bool {
        switch phase {
        case .completed, .failed, .cancelled: true
        default: false
        }
    }

    /// One line: phase, a bar of the first pass (then of the dirty set shrinking),
    /// bytes, rounds, dirty rate, expected downtime, throttle.
    package func line(vm: String, destination: String) -> String {
        let mib = { (b: Double) -> String in Self.decimal(b / 1_048_576) + " MiB" }
        switch phase {
        case .connecting: return "\(vm) -> \(destination): connecting"
        case .checking: return "\(vm) -> \(destination): the destination checks the configuration and plugins"
        case .completed:
            return "\(vm) -> \(destination): completed in \(Int(elapsedMilliseconds)) ms, \(round) round(s), \(mib(Double(bytesSent))) sent (\(zeroPages) zero, \(duplicatePages) duplicate pages), downtime \(Self.decimal(downtimeMilliseconds ?? 0)) ms"
        case .failed(let why): return "\(vm) -> \(destination): failed: \(why); \(vm) keeps running here"
        case .cancelled: return "\(vm) -> \(destination): cancelled; \(vm) keeps running here"
        case .copying, .stopped:
            let done = round == 0 && totalPages > 0 ? Double(firstPassPages) / Double(totalPages) : 1.0
            let width = 30, filled = Int(done * Double(width))
            let bar = "[" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled) + "]"
            let head = "\(vm) -> \(destination): \(bar) \(Int(done * 100))% round \(round), \(mib(Double(bytesSent))) sent, "
            let rates = "\(remainingPages) dirty pages, dirty rate \(mib(dirtyPagesPerSecond * 4096))/s, link \(mib(bandwidth))/s, "
            let tail = "expected downtime \(Self.decimal(expectedDowntimeMilliseconds)) ms, throttle \(throttlePercent)%"
            return head + rates + tail + (phase == .stopped ? ", stopped for switch-over" : "")
        }
    }

    /// `x` with one decimal (no Foundation here).
    static func decimal(_ x: Double) -> String {
        let tenths = Int((x * 10).rounded())
        return "\(tenths / 10).\(abs(tenths % 10))"
    }
}
