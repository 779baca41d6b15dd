import HVSupport

/// Memory resource controls of a VM (`sched.mem.*`), sizes in MiB.
package struct MemorySchedulingParameters: Equatable, Sendable {
    package var shares: ShareAllocation
    /// Guaranteed memory (0...max).
    package var minMiB: Int
    /// Upper bound (...memsize); defaults to memsize.
    package var maxMiB: Int

    package init(shares: ShareAllocation = .normal, minMiB: Int = 0, maxMiB: Int) {
        self.shares = shares
        self.minMiB = minMiB
        self.maxMiB = maxMiB
    }

    /// Shares per MiB of configured memory for a named level: low 5, normal 10, high 20.
    package static func sharesPerMiB(_ level: ShareAllocation) -> UInt32? {
        switch level {
        case .low: 5
        case .normal: 10
        case .high: 20
        case .custom: nil
        }
    }

    /// The VM's memory shares: a named level times `memoryMiB`, or the explicit number.
    package func totalShares(memoryMiB: Int) -> UInt32 {
        switch shares {
        case .custom(let n): n
        default: Self.sharesPerMiB(shares)! * UInt32(memoryMiB)
        }
    }
}
