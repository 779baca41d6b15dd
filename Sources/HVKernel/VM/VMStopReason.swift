/// Why a VM stopped running.
package enum VMStopReason: Equatable, Sendable, CustomStringConvertible {
    /// The guest wrote `value` to the debug-exit port (QEMU isa-debug-exit semantics).
    case debugExit(UInt8)
    /// The operator powered the VM off (SIGINT/SIGTERM, console).
    case poweredOff
    /// The guest asked the platform to reset (i8042 pulse); `VMHost` boots it again.
    case guestReset
    /// The CPU shut down: a triple fault.
    case tripleFault(String)
    /// The VMkernel could not continue the guest.
    case failure(String)
    /// Suspended to this file (`hvhost resume` continues it).
    case suspended(String)
    /// Moved to another host by live migration (the destination address).
    case migrated(String)

    package var description: String {
        switch self {
        case .debugExit(let v): return "guest exit code \(v) (status \((Int(v) << 1) | 1))"
        case .poweredOff: return "powered off"
        case .guestReset: return "reset by the guest"
        case .tripleFault(let regs): return "triple fault: the guest's CPU shut down (\(regs))"
        case .failure(let why): return "failed: \(why)"
        case .suspended(let path): return "suspended to \(path)"
        case .migrated(let destination): return "migrated to \(destination)"
        }
    }

    /// Process exit status when this VM is the only one: QEMU's `(value << 1) | 1` for a
    /// debug exit, 0 for a clean power-off, 2 when the VM failed.
    package var exitStatus: Int32 {
        switch self {
        case .debugExit(let v): return (Int32(v) << 1) | 1
        case .poweredOff, .guestReset, .suspended, .migrated: return 0
        case .tripleFault, .failure: return 2
        }
    }
}
