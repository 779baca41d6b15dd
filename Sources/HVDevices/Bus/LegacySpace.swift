import HVMemory
import HVSupport

/// Why a legacy claim was refused.
package enum LegacyClaimError: Error, CustomStringConvertible, Equatable {
    /// Outside what devices may claim; `allowed` says what is.
    case notAllowed(name: String, space: LegacySpace.Space, base: UInt64, size: UInt64, allowed: String)
    /// Overlaps a region already on the bus (a chipset device or another claim); the
    /// bus's message names both.
    case conflict(String)

    package var description: String {
        switch self {
        case let .notAllowed(name, space, base, size, allowed):
            return "\(space) region '\(name)' at 0x\(String(base, radix: 16)) (+0x\(String(size, radix: 16))) is not allowed: \(allowed)"
        case let .conflict(message):
            return message
        }
    }
}

/// The fixed, ISA-style decoding devices claim (VGA ports and its 0xA0000 window, the
/// VMware backdoor port): each claim is a region on the VM's port or MMIO bus, so it
/// collides with the chipset, the PCI configuration ports and other claims. Memory
/// windows lie in the legacy hole, and the VM leaves them out of guest RAM when it
/// maps memory (`memoryWindows`). Claims happen while devices are created, on the
/// control thread; the lock covers a release racing a late query.
package final class LegacySpace: @unchecked Sendable {
    package enum Space: String, Sendable, CustomStringConvertible {
        case port, memory
        package var description: String { rawValue }
    }

    /// Where memory windows may be claimed: the VGA/BIOS hole below 1 MiB.
    static let memoryHole: Range<UInt64> = 0xA0000..<0x10_0000
    /// Port space, less the PCI I/O window the firmware assigns BARs from.
    static let portSpace: Range<UInt64> = 0..<0x1_0000
    static let reservedPorts: Range<UInt64> =
        PCIHostBridge.ioWindow.lowerBound..<(PCIHostBridge.ioWindow.upperBound + 1)

    private struct Claim {
        let space: Space
        let range: Range<UInt64>
        let device: any BusDevice
    }

    private let portBus: AddressBus
    private let mmioBus: AddressBus
    private let lock = HostLock()
    private var claims: [Claim] = []

    package init(portBus: AddressBus, mmioBus: AddressBus) {
        self.portBus = portBus
        self.mmioBus = mmioBus
    }

    /// Puts `device` on the bus of `space` at `base`..<`base + size`.
    package func claim(_ space: Space, base: UInt64, size: UInt64, name: String,
                      device: any BusDevice) throws(LegacyClaimError) {
        func refuse(_ allowed: String) -> LegacyClaimError {
            .notAllowed(name: name, space: space, base: base, size: size, allowed: allowed)
        }
        let (end, overflow) = base.addingReportingOverflow(size)
        guard size > 0, !overflow else { throw refuse("the size must be positive") }
        switch space {
        case .port:
            guard end <= Self.portSpace.upperBound else { throw refuse("ports end at 0xffff") }
            guard !(base..<end).overlaps(Self.reservedPorts) else {
                throw refuse("ports 0xc000-0xffff are the PCI I/O window")
            }
        case .memory:
            guard base >= Self.memoryHole.lowerBound, end <= Self.memoryHole.upperBound else {
                throw refuse("memory windows must lie in 0xa0000-0xfffff")
            }
            guard base % GuestMemory.pageSize == 0, size % GuestMemory.pageSize == 0 else {
                throw refuse("memory windows must be 4 KiB-aligned and a multiple of 4 KiB")
            }
        }
        let conflict: String? = lock.withLock {
            do {
                try (space == .port ? portBus : mmioBus).register(base: base, size: size, name: name, device: device)
            } catch {
                return "\(error)"
            }
            claims.append(Claim(space: space, range: base..<end, device: device))
            return nil
        }
        if let conflict { throw .conflict(conflict) }
    }

    /// Takes every claim of `device` off its bus.
    package func release(_ device: any BusDevice) {
        lock.withLock {
            for c in claims where c.device === device {
                (c.space == .port ? portBus : mmioBus).unregister(base: c.range.lowerBound, device: device)
            }
            claims.removeAll { $0.device === device }
        }
    }

    /// The claimed memory windows, which are not RAM.
    package var memoryWindows: [Range<UInt64>] {
        lock.withLock { claims.filter { $0.space == .memory }.map(\.range) }
    }
}
