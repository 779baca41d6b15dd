import HVHostIO
import Glibc
import HVMemory
import HVSupport
import Logging

/// One ESX-style host: the VMs running in this process and the host-wide services
/// they share (KVM, virtual switches, the disk I/O queue, the plugin catalog).
/// A VM whose guest asks for a reset is rebuilt from its configuration and powered on
/// again, like pressing reset: the guest boots anew. A VM can be suspended to a file and
/// resumed from it, in this host or another.
package final class VMHost: @unchecked Sendable {
    let services: HostServices
    let logger: Logger
    private let lock = HostLock()
    private var slots: [Slot] = []
    private var shuttingDown = false
    /// The browser console serving this host's VMs, when `hvhost` runs one.
    package var webConsole: WebConsoleServer? {
        get { lock.withLock { webConsoleServer } }
        set { lock.withLock { webConsoleServer = newValue } }
    }
    private var webConsoleServer: WebConsoleServer?
    /// The latest outgoing migration of each VM (`VMHost+Migration`).
    let outgoingMigrations = HostLocked<[MigrationSource]>([])

    /// A configured VM across resets: its current incarnation and the thread watching it.
    private final class Slot {
        let configuration: VMConfiguration
        var vm: VirtualMachine
        var watcher: pthread_t?
        var outcome: VMStopReason?
        var resets = 0
        /// Host ns of the resets inside the configuration's reset-limit window.
        var recentResets: [UInt64] = []
        init(configuration: VMConfiguration, vm: VirtualMachine) {
            self.configuration = configuration
            self.vm = vm
        }
    }

    package init(services: HostServices, logger: Logger) {
        self.services = services
        self.logger = logger
    }

    /// The VMs powered on in this host (current incarnations), in power-on order.
    package var vms: [VirtualMachine] { lock.withLock { slots.map(\.vm) } }

    /// The latest VM with this name (a running one if there is one).
    func vm(named name: String) -> VirtualMachine? {
        lock.withLock {
            let named = slots.filter { $0.vm.name == name }
            return (named.last { $0.outcome == nil } ?? named.last)?.vm
        }
    }

    func isRunning(_ name: String) -> Bool {
        lock.withLock { slots.contains { $0.outcome == nil && $0.vm.name == name } }
    }

    /// Builds and starts a VM. A VM that cannot be built changes nothing else.
    @discardableResult
    package func powerOn(_ configuration: VMConfiguration) throws -> VirtualMachine {
        if isRunning(configuration.displayName) {
            throw VMError("\(configuration.path): a VM named '\(configuration.displayName)' is already running on this host")
        }
        try admitMemory(configuration)
        let vm = try VirtualMachine(configuration: configuration, host: services, logger: logger)
        return try start(vm)
    }

    /// Recreates a suspended VM from its file and continues it; its NICs join this host's
    /// switches of the same names. The file is checked (format, checksum, configuration,
    /// devices) before anything is created.
    @discardableResult
    package func resume(from path: String) throws -> VirtualMachine {
        let image = try SuspendImage(path: path)
        let configuration = try image.configuration()
        if isRunning(configuration.displayName) {
            throw SuspendError("\(path): a VM named '\(configuration.displayName)' is already running on this host")
        }
        try admitMemory(configuration)
        let vm: VirtualMachine
        do {
            vm = try VirtualMachine(configuration: configuration, host: services, logger: logger, restoring: image)
        } catch let e as SuspendError {
            throw e
        } catch {
            throw SuspendError("\(path): \(error)")
        }
        return try start(vm)
    }

    /// Suspends the running VM `name` to `path` (see `VirtualMachine.suspend(to:)`).
    func suspend(vmNamed name: String, to path: String) throws {
        guard isRunning(name), let vm = vm(named: name) else { throw VMError("no running VM named '\(name)'") }
        try vm.suspend(to: path)
    }

    func start(_ vm: VirtualMachine) throws -> VirtualMachine {
        let slot = Slot(configuration: vm.configuration, vm: vm)
        let accepted: Bool = lock.withLock {
            guard !shuttingDown else { return false }
            slots.append(slot)
            slot.watcher = HostThread.spawn(name: "watch-\(vm.name)") { [self] in watch(slot) }
            return true
        }
        guard accepted else {
            vm.stop(.poweredOff)
            vm.waitUntilStopped()
            throw VMError("\(vm.name): this host is powering off")
        }
        vm.start()
        registerMemory(vm)
        return vm
    }

    /// Memory admission control: the VM's reservation plus overhead must fit the budget.
    private func admitMemory(_ configuration: VMConfiguration) throws {
        try services.memory?.admit(name: configuration.displayName, memoryMiB: configuration.memoryMiB,
                                   vcpus: configuration.vcpuCount, parameters: configuration.memoryScheduling)
    }

    /// Hands a started VM to the memory scheduler and its page-sharing scanner.
    private func registerMemory(_ vm: VirtualMachine) {
        guard let scheduler = services.memory else { return }
        let member = scheduler.sharing?.attach(vm.memory, name: vm.name) { [weak vm] body in
            if let vm { vm.withVCPUsOutOfGuest(body) } else { body() }
        }
        if let scanner = scheduler.sharing, let member { vm.sharing.withLock { $0 = (scanner, member) } }
        scheduler.register(
            .init(name: vm.name, memoryPages: Int(vm.memory.size / GuestMemory.pageSize), vcpus: vm.configuration.vcpuCount,
                  residentPages: { [weak vm] in vm?.residentPages() ?? 0 },
                  sampleWrittenPages: { [weak vm] in vm?.sampleWrittenPages() }, sharing: member),
            memoryMiB: vm.configuration.memoryMiB, parameters: vm.configuration.memoryScheduling)
    }

    /// Waits for the slot's VM to stop; a guest reset rebuilds and restarts it.
    private func watch(_ slot: Slot) {
        while true {
            var reason = slot.vm.waitUntilStopped()
            if reason == .guestReset, let loop = resetLoop(slot) {
                reason = .failure(loop)
                logger.error("\(slot.vm.name): \(reason)")
            }
            if reason == .guestReset, !lock.withLock({ shuttingDown }) {
                do {
                    let fresh = try VirtualMachine(configuration: slot.configuration, host: services, logger: logger,
                                                   afterGuestReset: true)
                    let started: Bool = lock.withLock {
                        guard !shuttingDown else { return false }
                        slot.vm = fresh
                        slot.resets += 1
                        return true
                    }
                    if started {
                        logger.info("\(fresh.name): reset by the guest; booting again (reset \(slot.resets))")
                        fresh.start()
                        registerMemory(fresh)
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
            services.memory?.unregister(name: slot.vm.name)
            lock.withLock { slot.outcome = reason }
            return
        }
    }

    /// Counts a guest reset; the reason to give up when it completes the configured
    /// number within the window (a guest that resets at once would otherwise reboot ~100
    /// times a second forever).
    private func resetLoop(_ slot: Slot) -> String? {
        guard let limit = slot.configuration.resetLimit else { return nil }
        let now = VMClock.hostNanoseconds()
        let window = UInt64(limit.seconds) * 1_000_000_000
        slot.recentResets = slot.recentResets.filter { now &- $0 < window } + [now]
        guard slot.recentResets.count >= limit.count else { return nil }
        return "guest reset loop: \(slot.recentResets.count) resets within \(limit.seconds) s (hv.resetLimit \(limit)); powered off"
    }

    package func powerOffAll() {
        let current: [VirtualMachine] = lock.withLock {
            shuttingDown = true
            return slots.map(\.vm)
        }
        for vm in current { vm.stop(.poweredOff) }
    }

    /// Waits until every VM has stopped for good, including VMs resumed meanwhile;
    /// their reasons in power-on order.
    package func waitForAll() -> [VMStopReason] {
        var joined = 0
        while true {
            let all = lock.withLock { slots }
            guard joined < all.count else { return lock.withLock { all.map { $0.outcome ?? .poweredOff } } }
            for slot in all[joined...] { if let t = slot.watcher { pthread_join(t, nil) } }
            joined = all.count
        }
    }
}
