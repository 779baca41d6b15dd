/// ESX's outbound traffic shaping parameters for one vNIC port.
package struct ShapingParameters: Sendable, Equatable, CustomStringConvertible {
    /// Long-term rate, bits per second.
    package let averageBitsPerSecond: UInt64
    /// Rate while a burst drains, bits per second (>= average).
    package let peakBitsPerSecond: UInt64
    /// Bytes that may go above the average rate (at up to the peak rate) after a quiet spell.
    package let burstBytes: UInt64

    package init(averageBitsPerSecond: UInt64, peakBitsPerSecond: UInt64, burstBytes: UInt64) throws(SwitchConfigurationError) {
        guard averageBitsPerSecond > 0 else { throw SwitchConfigurationError("shaping: the average rate must be above 0 bit/s") }
        guard peakBitsPerSecond >= averageBitsPerSecond else {
            throw SwitchConfigurationError("shaping: the peak rate (\(peakBitsPerSecond) bit/s) is below the average (\(averageBitsPerSecond) bit/s)")
        }
        guard burstBytes >= UInt64(TrafficShaper.largestStandardFrame) else {
            throw SwitchConfigurationError("shaping: the burst size must hold one frame (\(TrafficShaper.largestStandardFrame) bytes), got \(burstBytes)")
        }
        self.averageBitsPerSecond = averageBitsPerSecond
        self.peakBitsPerSecond = peakBitsPerSecond
        self.burstBytes = burstBytes
    }

    package var description: String {
        "average \(averageBitsPerSecond) bit/s, peak \(peakBitsPerSecond) bit/s, burst \(burstBytes) B"
    }
}

/// Two token buckets in series, as the VMkernel shapes a port's outbound traffic: the burst
/// bucket (`burstBytes` deep, filled at the average rate) bounds the long-term rate and how
/// much may go above it; the peak bucket (1 ms of the peak rate deep, at least one frame)
/// bounds how fast a burst drains. A frame passes when both hold its size; otherwise it
/// is dropped (the guest sees a sent frame, as on a congested wire).
package struct TrafficShaper: Sendable {
    static let largestStandardFrame = 1518

    package let parameters: ShapingParameters
    private let peakDepth: Double
    private var burstTokens: Double
    private var peakTokens: Double
    private var lastRefill: UInt64
    package private(set) var passedFrames: UInt64 = 0
    package private(set) var passedBytes: UInt64 = 0
    package private(set) var droppedFrames: UInt64 = 0
    /// Allowance the port left unused: average-rate tokens that found the burst bucket full
    /// (the port sent less than its average, e.g. while its vCPU did not run).
    package private(set) var unusedBytes: UInt64 = 0

    package init(_ parameters: ShapingParameters, now: UInt64) {
        self.parameters = parameters
        peakDepth = max(Double(Self.largestStandardFrame), Double(parameters.peakBitsPerSecond) / 8 / 1000)
        burstTokens = Double(parameters.burstBytes)
        peakTokens = peakDepth
        lastRefill = now
    }

    /// Whether a frame of `bytes` may go now (`now` in monotonic nanoseconds); takes its tokens.
    package mutating func admit(_ bytes: Int, now: UInt64) -> Bool {
        if now > lastRefill {
            let seconds = Double(now - lastRefill) / 1e9
            let filled = burstTokens + seconds * Double(parameters.averageBitsPerSecond) / 8
            if filled > Double(parameters.burstBytes) { unusedBytes &+= UInt64(filled - Double(parameters.burstBytes)) }
            burstTokens = min(Double(parameters.burstBytes), filled)
            peakTokens = min(peakDepth, peakTokens + seconds * Double(parameters.peakBitsPerSecond) / 8)
            lastRefill = now
        }
        let n = Double(bytes)
        guard burstTokens >= n, peakTokens >= n else {
            droppedFrames &+= 1
            return false
        }
        burstTokens -= n
        peakTokens -= n
        passedFrames &+= 1
        passedBytes &+= UInt64(bytes)
        return true
    }
}
