/// A share setting: a named level or an explicit number (`sched.*.shares`).
public enum ShareAllocation: Equatable, Sendable, CustomStringConvertible {
    case low
    case normal
    case high
    case custom(UInt32)

    public var description: String {
        switch self {
        case .low: "low"
        case .normal: "normal"
        case .high: "high"
        case .custom(let n): String(n)
        }
    }
}

/// Hyperthread sharing mode (`sched.cpu.htsharing`); raw values match
/// `hv_sched_params.htsharing`.
public enum HTSharing: UInt32, Sendable, CaseIterable, CustomStringConvertible {
    /// The vCPU may share a core with any other vCPU.
    case any = 0
    /// Only with a sibling vCPU of the same VM.
    case `internal` = 1
    /// Never: the core's other hyperthread stays idle.
    case none = 2

    public var description: String {
        switch self {
        case .any: "any"
        case .internal: "internal"
        case .none: "none"
        }
    }

    init?(name: String) {
        switch name.lowercased() {
        case "any": self = .any
        case "internal": self = .internal
        case "none": self = .none
        default: return nil
        }
    }
}

/// Which logical CPUs a VM's vCPUs may run on (`sched.cpu.affinity`).
public enum CPUAffinity: Equatable, Sendable, CustomStringConvertible {
    case all
    /// Sorted, distinct logical CPU numbers (each below 64).
    case cpus([Int])

    /// The `hv_sched_params.affinity` bit mask; 0 means any.
    public var mask: UInt64 {
        switch self {
        case .all: 0
        case .cpus(let list): list.reduce(0) { $0 | (1 << UInt64($1)) }
        }
    }

    public var description: String {
        switch self {
        case .all: "all"
        case .cpus(let list): list.map(String.init).joined(separator: ",")
        }
    }
}

/// CPU resource controls of a VM (`sched.cpu.*`).
public struct CPUSchedulingParameters: Equatable, Sendable {
    public var shares: ShareAllocation
    /// Reservation, percent of one logical CPU per vCPU (0...100).
    public var minPercent: Int
    /// Limit, percent of one logical CPU per vCPU (1...100; 100 = unlimited).
    public var maxPercent: Int
    public var affinity: CPUAffinity
    public var htSharing: HTSharing

    public init(shares: ShareAllocation = .normal, minPercent: Int = 0, maxPercent: Int = 100,
                affinity: CPUAffinity = .all, htSharing: HTSharing = .any) {
        self.shares = shares
        self.minPercent = minPercent
        self.maxPercent = maxPercent
        self.affinity = affinity
        self.htSharing = htSharing
    }

    /// Shares per vCPU for a named level: low 500, normal 1000, high 2000.
    public static func sharesPerVCPU(_ level: ShareAllocation) -> UInt32? {
        switch level {
        case .low: 500
        case .normal: 1000
        case .high: 2000
        case .custom: nil
        }
    }

    /// The VM's total shares: a named level times `vcpus`, or the explicit number.
    public func totalShares(vcpus: Int) -> UInt32 {
        switch shares {
        case .custom(let n): n
        default: Self.sharesPerVCPU(shares)! * UInt32(vcpus)
        }
    }

    /// Shares of each vCPU (`hv_sched_params.shares`): the total divided evenly, at least 1.
    public func sharesPerVCPU(vcpus: Int) -> UInt32 {
        max(1, totalShares(vcpus: vcpus) / UInt32(max(1, vcpus)))
    }
}

/// Memory resource controls of a VM (`sched.mem.*`), sizes in MiB.
public struct MemorySchedulingParameters: Equatable, Sendable {
    public var shares: ShareAllocation
    /// Guaranteed memory (0...max).
    public var minMiB: Int
    /// Upper bound (...memsize); defaults to memsize.
    public var maxMiB: Int

    public init(shares: ShareAllocation = .normal, minMiB: Int = 0, maxMiB: Int) {
        self.shares = shares
        self.minMiB = minMiB
        self.maxMiB = maxMiB
    }

    /// Shares per MiB of configured memory for a named level: low 5, normal 10, high 20.
    public static func sharesPerMiB(_ level: ShareAllocation) -> UInt32? {
        switch level {
        case .low: 5
        case .normal: 10
        case .high: 20
        case .custom: nil
        }
    }

    /// The VM's memory shares: a named level times `memoryMiB`, or the explicit number.
    public func totalShares(memoryMiB: Int) -> UInt32 {
        switch shares {
        case .custom(let n): n
        default: Self.sharesPerMiB(shares)! * UInt32(memoryMiB)
        }
    }
}
