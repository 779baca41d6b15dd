import Glibc

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny, fast generator whose whole state is one
/// 64-bit word, so a simulation seeded the same way draws the same numbers on every run
/// and platform. Not for cryptography.
struct SplitMix64: RandomNumberGenerator, Sendable {
    private(set) var state: UInt64

    init(seed: UInt64) { state = seed }

    /// An independent stream for (seed, a, b): used per vCPU so that one vCPU's draws
    /// do not depend on when the others draw.
    init(seed: UInt64, stream a: UInt64, _ b: UInt64) {
        var mixer = SplitMix64(seed: seed ^ 0x6A09_E667_F3BC_C909)
        let s1 = mixer.next() ^ (a &* 0x9E37_79B9_7F4A_7C15)
        var mixer2 = SplitMix64(seed: s1)
        state = mixer2.next() ^ (b &* 0xC2B2_AE3D_27D4_EB4F)
    }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 random bits.
    mutating func nextUnit() -> Double {
        Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0)
    }

    /// A length around `mean` ns drawn from `dist`, at least 1 µs.
    mutating func draw(mean: UInt64, _ dist: SchedSimScenario.Distribution) -> UInt64 {
        let m = Double(mean)
        let value: Double
        switch dist {
        case .fixed: return max(1_000, mean)
        case .uniform: value = m * (0.5 + nextUnit())
        case .exp: value = -m * Glibc.log(1 - nextUnit())
        }
        return max(1_000, UInt64(min(value, 1e15).rounded()))
    }
}
