/// Overflow-free conversions between VM-clock nanoseconds and device clock ticks.
package enum TimeScale {
    /// `value * multiplier / divisor`, rounded down, saturating at `UInt64.max`.
    package static func scale(_ value: UInt64, by multiplier: UInt64, over divisor: UInt64) -> UInt64 {
        guard divisor != 0 else { return UInt64.max }
        let product = value.multipliedFullWidth(by: multiplier)
        if product.high >= divisor { return UInt64.max }
        return divisor.dividingFullWidth(product).quotient
    }

    /// `value * multiplier / divisor`, rounded up, saturating at `UInt64.max`.
    package static func scaleUp(_ value: UInt64, by multiplier: UInt64, over divisor: UInt64) -> UInt64 {
        guard divisor != 0 else { return UInt64.max }
        let product = value.multipliedFullWidth(by: multiplier)
        if product.high >= divisor { return UInt64.max }
        let (q, r) = divisor.dividingFullWidth(product)
        return r == 0 ? q : (q == UInt64.max ? q : q + 1)
    }

    /// A deadline `delta` ns after `base`, kept far from overflow so that timer
    /// arithmetic elsewhere (`deadline + offset`) cannot wrap.
    package static func deadline(_ base: UInt64, plus delta: UInt64) -> UInt64 {
        let limit: UInt64 = 1 << 62
        let d = min(delta, limit)
        return base >= limit ? base : min(base &+ d, limit)
    }
}
