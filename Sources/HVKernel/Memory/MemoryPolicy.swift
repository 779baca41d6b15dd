/// Memory allocation targets by shares-per-page with the idle memory tax (Waldspurger,
/// "Memory Resource Management in VMware ESX Server", OSDI 2002, §5): pure arithmetic,
/// in 4 KiB pages, so it is unit tested apart from any VM.
///
/// Each VM is guaranteed its reservation (`sched.mem.min`); the memory left over is
/// divided in proportion to shares per page adjusted for idleness. A VM with shares S
/// whose sampled active fraction is f pays for idle pages k = 1/(1−τ) times (τ the tax
/// rate, 75 % by default): its weight is S / (f + k·(1 − f)). A VM never gets more than
/// it wants (what it has touched, capped by `sched.mem.max`); what it does not take is
/// divided among the others (work conserving).
package enum MemoryPolicy {
    /// One VM as the policy sees it.
    package struct Client: Equatable, Sendable {
        package var name: String
        package var shares: UInt32
        /// Reservation, pages.
        package var minPages: Int
        /// Limit (`sched.mem.max`), pages.
        package var maxPages: Int
        /// Pages the VM would use without reclaim: touched pages, including those that
        /// shared, ballooned or swapped now stand for.
        package var wantedPages: Int
        /// Fraction of its pages the guest wrote in the last sampling period, 0...1.
        package var activeFraction: Double

        package init(name: String, shares: UInt32, minPages: Int, maxPages: Int, wantedPages: Int, activeFraction: Double) {
            self.name = name
            self.shares = shares
            self.minPages = minPages
            self.maxPages = maxPages
            self.wantedPages = wantedPages
            self.activeFraction = activeFraction
        }

        /// Upper end of the target: what it wants, within max, never below min.
        var ceiling: Int { max(minPages, min(maxPages, wantedPages)) }
    }

    /// Shares per page are proportional to this: S / (f + k(1 − f)), k = 1 / (1 − τ).
    package static func weight(shares: UInt32, activeFraction: Double, idleTax: Double) -> Double {
        let tax = min(max(idleTax, 0), 0.99)
        let f = min(max(activeFraction, 0), 1)
        let k = 1 / (1 - tax)
        return Double(shares) / (f + k * (1 - f))
    }

    /// Targets (pages) for `clients` sharing `availablePages` of host memory (the budget
    /// less overheads). Reservations come first (admission control keeps their sum
    /// within the budget); the surplus is water-filled by weight, each VM capped at its
    /// ceiling. Without pressure every VM's target is its ceiling.
    package static func targets(for clients: [Client], availablePages: Int, idleTax: Double) -> [Int] {
        let floors = clients.map { min($0.minPages, $0.ceiling) }
        let ceilings = clients.map(\.ceiling)
        let wanted = ceilings.reduce(0, +)
        guard wanted > availablePages else { return ceilings }
        var surplus = Double(max(0, availablePages - floors.reduce(0, +)))
        var targets = floors.map(Double.init)
        var open = Set(clients.indices.filter { ceilings[$0] > floors[$0] })
        let weights = clients.map { weight(shares: $0.shares, activeFraction: $0.activeFraction, idleTax: idleTax) }
        // Divide the surplus by weight; a VM that reaches its ceiling leaves, and the
        // rest is divided again among the others.
        while surplus > 0.5, !open.isEmpty {
            let total = open.reduce(0.0) { $0 + weights[$1] }
            guard total > 0 else { break }
            var capped: [Int] = []
            var handed = 0.0
            for i in open {
                let room = Double(ceilings[i]) - targets[i]
                let give = surplus * weights[i] / total
                if give >= room {
                    targets[i] += room
                    handed += room
                    capped.append(i)
                }
            }
            if capped.isEmpty {
                for i in open { targets[i] += surplus * weights[i] / total }
                surplus = 0
            } else {
                surplus -= handed
                open.subtract(capped)
            }
        }
        return targets.map { Int($0.rounded(.down)) }
    }

    /// How the pages a VM must give up are split between the mechanisms: the balloon
    /// is asked first (up to `balloonLimitPages`, ESX's 65 % of memsize); swap covers
    /// what the balloon has not delivered when it stalled or the VM has no balloon.
    package struct ReclaimSplit: Equatable, Sendable {
        package var balloonPages: Int
        package var swapPages: Int
    }

    /// `excessPages`: what the VM consumes above its target plus what reclaimers
    /// already hold (the total that must be held away from it).
    package static func split(excessPages: Int, balloonLimitPages: Int, balloonHeld: Int, balloonStalled: Bool) -> ReclaimSplit {
        let need = max(0, excessPages)
        let balloon = min(need, max(0, balloonLimitPages))
        let uncovered = need - min(balloonHeld, balloon)
        let swap = balloonStalled ? uncovered : max(0, need - balloon)
        return ReclaimSplit(balloonPages: balloon, swapPages: swap)
    }
}
