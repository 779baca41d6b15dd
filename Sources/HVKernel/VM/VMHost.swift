import Logging

/// One ESX-style host: the VMs running in this process and the host-wide services
/// they share (KVM, virtual switches, the disk I/O queue, the plugin catalog).
public final class VMHost: @unchecked Sendable {
    public let services: HostServices
    public let logger: Logger
    private let lock = HostLock()
    private var running: [VirtualMachine] = []

    public init(services: HostServices, logger: Logger) {
        self.services = services
        self.logger = logger
    }

    /// The VMs powered on in this host, in power-on order.
    public var vms: [VirtualMachine] { lock.withLock { running } }

    public func vm(named name: String) -> VirtualMachine? { vms.first { $0.name == name } }

    /// Builds and starts a VM. A VM that cannot be built changes nothing else.
    @discardableResult
    public func powerOn(_ configuration: VMConfiguration) throws -> VirtualMachine {
        if vm(named: configuration.displayName) != nil {
            throw PluginDeviceError(message: "\(configuration.path): a VM named '\(configuration.displayName)' is already running on this host")
        }
        let vm = try VirtualMachine(configuration: configuration, host: services, logger: logger)
        lock.withLock { running.append(vm) }
        vm.start()
        return vm
    }

    public func powerOffAll() {
        for vm in vms { vm.stop(.poweredOff) }
    }

    /// Waits for every VM powered on so far to stop; their reasons in power-on order.
    public func waitForAll() -> [VMStopReason] {
        vms.map { $0.waitUntilStopped() }
    }
}
