/// ESX-style CPU entitlement: what each vCPU should get, in percent of one pCPU.
///
/// Active vCPUs (runnable now, or recently) divide the pool's capacity by shares after
/// reservations, within their limits: entitlement_i = clamp(λ · shares_i, min_i, max_i)
/// with λ chosen so the entitlements add up to the capacity (or every vCPU sits at its
/// max). Idle vCPUs are entitled to nothing, so their share is redistributed. When the
/// reservations alone exceed the capacity they are scaled down to fit.
public enum SchedulerEntitlement {
    public struct Demand: Sendable {
        public var shares: Double
        public var minPercent: Double
        public var maxPercent: Double
        public var active: Bool
        public init(shares: Double, minPercent: Double, maxPercent: Double, active: Bool) {
            self.shares = shares
            self.minPercent = minPercent
            self.maxPercent = maxPercent
            self.active = active
        }
    }

    public static func compute(capacity: Double, demands: [Demand]) -> [Double] {
        let active = demands.indices.filter { demands[$0].active }
        var result = [Double](repeating: 0, count: demands.count)
        guard !active.isEmpty, capacity > 0 else { return result }
        // Each vCPU can use at most one pCPU.
        let hi = demands.map { min(max($0.maxPercent, 0), 100) }
        var lo = demands.map { min(max($0.minPercent, 0), 100) }
        for i in demands.indices { lo[i] = min(lo[i], hi[i]) }
        let reserved = active.reduce(0) { $0 + lo[$1] }
        if reserved >= capacity {
            let scale = capacity / reserved
            for i in active { result[i] = lo[i] * scale }
            return result
        }
        if active.reduce(0, { $0 + hi[$1] }) <= capacity {
            for i in active { result[i] = hi[i] }
            return result
        }
        func total(_ lambda: Double) -> Double {
            active.reduce(0) { $0 + min(max(lambda * max(demands[$1].shares, 1e-9), lo[$1]), hi[$1]) }
        }
        var a = 0.0, b = 1.0
        while total(b) < capacity { b *= 2 }
        for _ in 0..<100 {
            let mid = (a + b) / 2
            if total(mid) < capacity { a = mid } else { b = mid }
        }
        for i in active { result[i] = min(max(b * max(demands[i].shares, 1e-9), lo[i]), hi[i]) }
        return result
    }
}
