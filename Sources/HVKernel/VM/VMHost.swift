import Glibc
import Logging

/// One ESX-style host: the VMs running in this process and the host-wide services
/// they share (KVM, virtual switches, the disk I/O queue, the plugin catalog).
/// A VM whose guest asks for a reset is rebuilt from its configuration and powered on
/// again, like pressing reset: the guest boots anew.
public final class VMHost: @unchecked Sendable {
    public let services: HostServices
    public let logger: Logger
    private let lock = HostLock()
    private var slots: [Slot] = []
    private var shuttingDown = false

    /// A configured VM across resets: its current incarnation and the thread watching it.
    private final class Slot {
        let configuration: VMConfiguration
        var vm: VirtualMachine
        var watcher: pthread_t?
        var outcome: VMStopReason?
        var resets = 0
        init(configuration: VMConfiguration, vm: VirtualMachine) {
            self.configuration = configuration
            self.vm = vm
        }
    }

    public init(services: HostServices, logger: Logger) {
        self.services = services
        self.logger = logger
    }

    /// The VMs powered on in this host (current incarnations), in power-on order.
    public var vms: [VirtualMachine] { lock.withLock { slots.map(\.vm) } }

    public func vm(named name: String) -> VirtualMachine? { vms.first { $0.name == name } }

    /// Builds and starts a VM. A VM that cannot be built changes nothing else.
    @discardableResult
    public func powerOn(_ configuration: VMConfiguration) throws -> VirtualMachine {
        if vm(named: configuration.displayName) != nil {
            throw VMError("\(configuration.path): a VM named '\(configuration.displayName)' is already running on this host")
        }
        let vm = try VirtualMachine(configuration: configuration, host: services, logger: logger)
        let slot = Slot(configuration: configuration, vm: vm)
        lock.withLock { slots.append(slot) }
        vm.start()
        slot.watcher = HostThread.spawn(name: "watch-\(vm.name)") { [self] in watch(slot) }
        return vm
    }

    /// Waits for the slot's VM to stop; a guest reset rebuilds and restarts it.
    private func watch(_ slot: Slot) {
        while true {
            var reason = slot.vm.waitUntilStopped()
            if reason == .guestReset, !lock.withLock({ shuttingDown }) {
                do {
                    let fresh = try VirtualMachine(configuration: slot.configuration, host: services, logger: logger)
                    let started: Bool = lock.withLock {
                        guard !shuttingDown else { return false }
                        slot.vm = fresh
                        slot.resets += 1
                        return true
                    }
                    if started {
                        logger.info("\(fresh.name): reset by the guest; booting again (reset \(slot.resets))")
                        fresh.start()
                        continue
                    }
                } catch {
                    reason = .failure("reset by the guest, but it cannot power on again: \(error)")
                    logger.error("\(slot.vm.name): \(reason)")
                }
            }
            if reason == .guestReset {
                // The operator powered the host off while this VM was resetting.
                reason = .poweredOff
                logger.info("\(slot.vm.name): \(reason)")
            }
            lock.withLock { slot.outcome = reason }
            return
        }
    }

    public func powerOffAll() {
        let current: [VirtualMachine] = lock.withLock {
            shuttingDown = true
            return slots.map(\.vm)
        }
        for vm in current { vm.stop(.poweredOff) }
    }

    /// Waits for every VM powered on so far to stop for good; their reasons in power-on order.
    public func waitForAll() -> [VMStopReason] {
        let all = lock.withLock { slots }
        for slot in all { if let t = slot.watcher { pthread_join(t, nil) } }
        return lock.withLock { all.map { $0.outcome ?? .poweredOff } }
    }
}
