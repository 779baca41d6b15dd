import HVHostIO
import HVSupport

/// Live migration (VMotion) between hosts: outgoing migrations by VM name, and receiving
/// one VM.
extension VMHost {
    /// Starts migrating the running VM `name` to `destination` on its own thread; the
    /// returned source reports progress and can be cancelled.
    package func migrate(vmNamed name: String, to destination: MigrationAddress,
                         options: MigrationSource.Options) throws -> MigrationSource {
        guard isRunning(name), let vm = vm(named: name) else { throw MigrationError("no running VM named '\(name)'") }
        let source = MigrationSource(vm: vm, destination: destination, options: options, logger: logger)
        try outgoingMigrations.withLock { list in
            if let busy = list.first(where: { $0.vmName == name && !$0.progress.isFinished }) {
                throw MigrationError("\(name) is already migrating to \(busy.destination)")
            }
            list.removeAll { $0.vmName == name }
            list.append(source)
        }
        _ = HostThread.spawn(name: "migrate-\(name)") { source.run() }
        return source
    }

    /// The latest outgoing migration of each VM (finished ones until the next).
    package var migrations: [MigrationSource] { outgoingMigrations.withLock { $0 } }

    /// Listens on `address`, receives one VM and starts it here; then its NICs' switches
    /// announce the VM's MACs (a RARP each) so peers and physical switches relearn where
    /// it lives at once.
    @discardableResult
    package func receiveMigration(on address: MigrationAddress) throws -> VirtualMachine {
        let destination = try MigrationDestination(address: address)
        logger.info("waiting for an incoming migration on \(address)")
        let vm = try destination.receive(host: services, logger: logger, isRunning: isRunning)
        let started = try start(vm)
        let prefix = "\(started.name)."
        for sw in services.switches.switches {
            for port in sw.ports where port.name.hasPrefix(prefix) { sw.announce(port) }
        }
        return started
    }
}
