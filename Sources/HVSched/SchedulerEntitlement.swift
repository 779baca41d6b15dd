/// ESX-style CPU entitlement: what each vCPU should get, in percent of one pCPU.
///
/// Active vCPUs (runnable now, or recently) divide the pool's capacity by shares after
/// reservations, within their limits: entitlement_i = clamp(λ · shares_i, min_i, max_i)
/// with λ chosen so the entitlements add up to the capacity (or every vCPU sits at its
/// max). Idle vCPUs are entitled to nothing, so their share is redistributed. When the
/// reservations alone exceed the capacity they are scaled down to fit.
enum SchedulerEntitlement {
    struct Demand: Sendable {
        var shares: Double
        var minPercent: Double
        var maxPercent: Double
        var active: Bool
        init(shares: Double, minPercent: Double, maxPercent: Double, active: Bool) {
            self.shares = shares
            self.minPercent = minPercent
            self.maxPercent = maxPercent
            self.active = active
        }
    }

    /// The same water-filling as the simulator (``SchedSimEntitlement/divide(_:capacity:)``),
    /// in percent, over the active vCPUs only, each demanding a whole pCPU.
    static func compute(capacity: Double, demands: [Demand]) -> [Double] {
        let active = demands.indices.filter { demands[$0].active }
        var result = [Double](repeating: 0, count: demands.count)
        guard !active.isEmpty, capacity > 0 else { return result }
        let claims = active.map { i in
            SchedSimEntitlement.Claim(shares: max(demands[i].shares, 1e-9),
                                      min: max(demands[i].minPercent, 0) / 100,
                                      max: max(demands[i].maxPercent, 0) / 100, demand: 1)
        }
        for (i, share) in zip(active, SchedSimEntitlement.divide(claims, capacity: capacity / 100)) {
            result[i] = share.rate * 100
        }
        return result
    }
}
