/// A share setting: a named level or an explicit number (`sched.cpu.shares`,
/// `sched.mem.shares`). Shared by the CPU scheduler and the memory settings.
package enum ShareAllocation: Equatable, Sendable, CustomStringConvertible {
    case low
    case normal
    case high
    case custom(UInt32)

    package var description: String {
        switch self {
        case .low: "low"
        case .normal: "normal"
        case .high: "high"
        case .custom(let n): String(n)
        }
    }
}
