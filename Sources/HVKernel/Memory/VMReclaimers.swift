import HVMemory
import HVSupport
import Logging

/// The balloon of the host's VMs as the memory scheduler's first reclaimer. An operator
/// may also set a floor per VM (console `mem balloon VM SIZE`): the balloon then holds at
/// least that much whatever the scheduler asks.
package final class BalloonReclaimer: MemoryReclaimer, @unchecked Sendable {
    package let kind = MemoryReclaimKind.balloon
    private weak var host: VMHost?
    private let floors = HostLocked<[String: Int]>([:])

    package init(host: VMHost) { self.host = host }

    package func setReclaimTarget(vm name: String, pages: Int) {
        guard let vm = host?.vm(named: name), !vm.isStopping else { return }
        vm.balloon.setTarget(pages: max(pages, floors.withLock { $0[name] ?? 0 }))
    }

    package func reclaimedPages(vm name: String) -> Int { host?.vm(named: name)?.balloon.stats.size ?? 0 }

    /// The operator's floor for `vm` (0 removes it); applies at once.
    func setFloor(vm: VirtualMachine, pages: Int) {
        floors.withLock { $0[vm.name] = pages > 0 ? pages : nil }
        vm.balloon.setTarget(pages: pages)
    }
}

/// Host swap of the host's VMs as the memory scheduler's last resort. It only ever
/// swaps out: a swapped page comes back when the guest touches it (or by console
/// `mem swapin`), as in ESX, never merely because the target fell.
package final class SwapReclaimer: MemoryReclaimer, @unchecked Sendable {
    package let kind = MemoryReclaimKind.swap
    /// Pages one step swaps out at most, so the vCPUs stay out of guest mode briefly.
    static let stepPages = 8192
    private weak var host: VMHost?
    private let logger: Logger

    package init(host: VMHost, logger: Logger) {
        self.host = host
        self.logger = logger
    }

    package func setReclaimTarget(vm name: String, pages: Int) {
        guard let vm = host?.vm(named: name), !vm.isStopping else { return }
        let held = vm.memoryUse.swap.swapped
        guard pages > held else { return }
        do {
            try vm.swapOut(bytes: UInt64(min(pages - held, Self.stepPages)) * GuestMemory.pageSize)
        } catch {
            logger.error("\(name): host swap: \(error)")
        }
    }

    package func reclaimedPages(vm name: String) -> Int { host?.vm(named: name)?.memoryUse.swap.swapped ?? 0 }
}
