/// What each vCPU is entitled to, ESX style: proportional to shares among the active
/// vCPUs, at least its reservation (min) and at most its limit (max) or what it asks for
/// (its demand), and work-conserving (what one cannot use goes to the others in
/// proportion to their shares). A vCPU with htsharing `none` occupies a whole core
/// while it runs, so each of its seconds costs two pCPU-seconds of capacity (on pools of
/// two or more pCPUs). Affinity and htsharing `internal` are not modelled.
package enum SchedSimEntitlement {
    package struct Claim: Equatable, Sendable {
        package var shares: Double
        /// Reservation and limit, in pCPUs (0.5 = 50 % of one pCPU).
        var min: Double
        package var max: Double
        /// What the workload would use if it could, in pCPUs (1 for CPU-bound).
        package var demand: Double
        /// Capacity one second of its running uses, in pCPU-seconds (2 for a vCPU that
        /// keeps its core's other hyperthread idle).
        var cost: Double

        package init(shares: Double, min: Double, max: Double, demand: Double, cost: Double = 1) {
            self.shares = shares
            self.min = min
            self.max = max
            self.demand = demand
            self.cost = cost
        }
    }

    package struct Share: Equatable, Sendable {
        /// Entitled rate in pCPUs.
        package var rate: Double
        /// True when shares decide the rate (not the reservation, limit or demand): such
        /// vCPUs are the ones pairwise fairness is measured between.
        package var byShares: Bool
    }

    /// Water-filling over `capacity` pCPUs: the level λ with
    /// Σ costᵢ·clamp(sharesᵢ·λ, lowᵢ, highᵢ) = capacity, where lowᵢ = min and
    /// highᵢ = min(max, demand, 1 pCPU).
    package static func divide(_ claims: [Claim], capacity: Double) -> [Share] {
        let hi = claims.map { Swift.min($0.max, $0.demand, 1) }
        let lo = zip(claims, hi).map { Swift.min($0.0.min, $0.1) }
        let cost = claims.map { Swift.max($0.cost, 1e-9) }
        if zip(hi, cost).reduce(0, { $0 + $1.0 * $1.1 }) <= capacity {
            return hi.map { Share(rate: $0, byShares: false) }
        }
        let loSum = zip(lo, cost).reduce(0, { $0 + $1.0 * $1.1 })
        if loSum >= capacity {
            return lo.map { Share(rate: loSum > 0 ? $0 * capacity / loSum : 0, byShares: false) }
        }
        func total(_ level: Double) -> Double {
            var t = 0.0
            for i in claims.indices { t += cost[i] * Swift.min(Swift.max(claims[i].shares * level, lo[i]), hi[i]) }
            return t
        }
        var a = 0.0
        var b = 0.0
        for i in claims.indices where claims[i].shares > 0 { b = Swift.max(b, hi[i] / claims[i].shares) }
        for _ in 0..<200 {
            let mid = (a + b) / 2
            if total(mid) < capacity { a = mid } else { b = mid }
        }
        let level = (a + b) / 2
        return claims.indices.map { i in
            let raw = claims[i].shares * level
            let rate = Swift.min(Swift.max(raw, lo[i]), hi[i])
            let eps = 1e-9
            return Share(rate: rate, byShares: raw > lo[i] + eps && raw < hi[i] - eps)
        }
    }
}

/// Fixed-point text for CSV and tables, the same bytes on every run (no locale, no
/// Foundation).
package enum SchedSimFormat {
    /// `value` rounded to `decimals` places: fixed(1.0/3, 3) = "0.333".
    package static func fixed(_ value: Double, _ decimals: Int) -> String {
        guard value.isFinite else { return "nan" }
        var scale = 1.0
        for _ in 0..<decimals { scale *= 10 }
        let scaled = (abs(value) * scale).rounded()
        guard scaled < 9e18 else { return value < 0 ? "-inf" : "inf" }
        let n = Int64(scaled)
        let negative = value < 0 && n != 0
        let p = Int64(scale)
        var s = String(n / p)
        if decimals > 0 {
            var frac = String(n % p)
            frac = String(repeating: "0", count: decimals - frac.count) + frac
            s += "." + frac
        }
        return negative ? "-" + s : s
    }

    /// A CSV field: quoted when it holds a comma, quote or newline.
    package static func csv(_ field: String) -> String {
        guard field.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" }) else { return field }
        var out = "\""
        for c in field { out += c == "\"" ? "\"\"" : String(c) }
        return out + "\""
    }
}
