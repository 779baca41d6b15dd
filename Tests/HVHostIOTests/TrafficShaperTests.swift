import XCTest
@testable import HVHostIO

/// The token buckets on a synthetic clock: a burst passes at the peak rate, the long-term
/// rate is the average.
final class TrafficShaperTests: XCTestCase {
    func testBurstPassesAtPeakThenTheAverageHolds() throws {
        // 10 Mbit/s average, 40 Mbit/s peak, 150 kB burst; 1500-byte frames offered every 100 µs (120 Mbit/s).
        let p = try ShapingParameters(averageBitsPerSecond: 10_000_000, peakBitsPerSecond: 40_000_000, burstBytes: 150_000)
        var shaper = TrafficShaper(p, now: 0)
        var passed: [UInt64] = []   // times of passed frames, ns
        var t: UInt64 = 0
        while t < 10_000_000_000 {
            if shaper.admit(1500, now: t) { passed.append(t) }
            t += 100_000
        }
        // Burst phase: the first 100 frames (150 kB) go at about the peak rate (1500 B per 300 µs).
        let burstSpan = Double(passed[99] - passed[0]) / 1e9
        let burstRate = 99 * 1500 * 8 / burstSpan
        XCTAssertEqual(burstRate, 40_000_000, accuracy: 4_000_000, "burst at \(burstRate) bit/s")
        // Over 10 s: burst + average × time.
        let total = Double(passed.count * 1500)
        XCTAssertEqual(total, 150_000 + 10_000_000 / 8 * 10, accuracy: 1500 * 2)
        // The last 5 s alone: the average.
        let late = passed.filter { $0 >= 5_000_000_000 }.count
        XCTAssertEqual(Double(late * 1500 * 8) / 5, 10_000_000, accuracy: 10_000_000 * 0.01)
    }

    func testParametersAreChecked() {
        XCTAssertThrowsError(try ShapingParameters(averageBitsPerSecond: 0, peakBitsPerSecond: 1, burstBytes: 2000))
        XCTAssertThrowsError(try ShapingParameters(averageBitsPerSecond: 2000, peakBitsPerSecond: 1000, burstBytes: 2000))
        XCTAssertThrowsError(try ShapingParameters(averageBitsPerSecond: 1000, peakBitsPerSecond: 1000, burstBytes: 100))
    }
}
