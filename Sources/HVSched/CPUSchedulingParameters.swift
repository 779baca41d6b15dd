import HVSupport

/// Hyperthread sharing mode (`sched.cpu.htsharing`); raw values match
/// `hv_sched_params.htsharing`.
package enum HTSharing: UInt32, Sendable, CaseIterable, CustomStringConvertible {
    /// The vCPU may share a core with any other vCPU.
    case any = 0
    /// Only with a sibling vCPU of the same VM.
    case `internal` = 1
    /// Never: the core's other hyperthread stays idle.
    case none = 2

    package var description: String {
        switch self {
        case .any: "any"
        case .internal: "internal"
        case .none: "none"
        }
    }

    package init?(name: String) {
        switch name.lowercased() {
        case "any": self = .any
        case "internal": self = .internal
        case "none": self = .none
        default: return nil
        }
    }
}

/// Which logical CPUs a VM's vCPUs may run on (`sched.cpu.affinity`).
package enum CPUAffinity: Equatable, Sendable, CustomStringConvertible {
    case all
    /// Sorted, distinct logical CPU numbers (each below 64).
    case cpus([Int])

    /// The `hv_sched_params.affinity` bit mask; 0 means any.
    package var mask: UInt64 {
        switch self {
        case .all: 0
        case .cpus(let list): list.reduce(0) { $0 | (1 << UInt64($1)) }
        }
    }

    package var description: String {
        switch self {
        case .all: "all"
        case .cpus(let list): list.map(String.init).joined(separator: ",")
        }
    }
}

/// CPU resource controls of a VM (`sched.cpu.*` in a `.vmx`, the `vm` lines of a
/// simulator scenario): the scheduler's own value type, which the VM assembly fills from
/// the configuration.
package struct CPUSchedulingParameters: Equatable, Sendable {
    package var shares: ShareAllocation
    /// Reservation, percent of one logical CPU per vCPU (0...100).
    package var minPercent: Int
    /// Limit, percent of one logical CPU per vCPU (1...100; 100 = unlimited).
    package var maxPercent: Int
    package var affinity: CPUAffinity
    package var htSharing: HTSharing

    package init(shares: ShareAllocation = .normal, minPercent: Int = 0, maxPercent: Int = 100,
                affinity: CPUAffinity = .all, htSharing: HTSharing = .any) {
        self.shares = shares
        self.minPercent = minPercent
        self.maxPercent = maxPercent
        self.affinity = affinity
        self.htSharing = htSharing
    }

    /// Shares per vCPU for a named level: low 500, normal 1000, high 2000.
    package static func sharesPerVCPU(_ level: ShareAllocation) -> UInt32? {
        switch level {
        case .low: 500
        case .normal: 1000
        case .high: 2000
        case .custom: nil
        }
    }

    /// The VM's total shares: a named level times `vcpus`, or the explicit number.
    package func totalShares(vcpus: Int) -> UInt32 {
        switch shares {
        case .custom(let n): n
        default: Self.sharesPerVCPU(shares)! * UInt32(vcpus)
        }
    }

    /// Shares of each vCPU (`hv_sched_params.shares`): the total divided evenly, at least 1.
    package func sharesPerVCPU(vcpus: Int) -> UInt32 {
        max(1, totalShares(vcpus: vcpus) / UInt32(max(1, vcpus)))
    }
}
