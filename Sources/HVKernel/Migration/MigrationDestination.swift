import Glibc
import HVHostIO
import HVMemory
import HVSupport
import Logging

/// The receiving side of a live migration: listens on its address, takes one source,
/// checks the configuration and plugins before anything is copied (the verdict the
/// source waits for), receives memory into fresh guest RAM while the VM still runs on
/// the source, then the VM's state, builds the VM from it and, on the source's "go",
/// hands it over to be started. See `MigrationStream` for the protocol.
final class MigrationDestination {
    let address: MigrationAddress
    private let listener: Int32

    init(address: MigrationAddress) throws {
        self.address = address
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw MigrationError("socket: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var sa = address.socketAddress
        let rc = withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0, listen(fd, 1) == 0 else {
            let e = errno
            close(fd)
            throw MigrationError("cannot listen on \(address): \(String(cString: strerror(e)))")
        }
        listener = fd
    }

    deinit { close(listener) }

    /// Stops waiting for a source (from another thread).
    func stopListening() { shutdown(listener, Int32(SHUT_RDWR)) }

    /// Waits for a source and receives one VM. `isRunning` tells whether a VM of that
    /// name runs here already. The VM comes back built but not started, after "go".
    func receive(host: HostServices, logger: Logger, isRunning: (String) -> Bool) throws -> VirtualMachine {
        var peerAddress = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let fd = withUnsafeMutablePointer(to: &peerAddress) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { accept(listener, $0, &length) }
        }
        guard fd >= 0 else { throw MigrationError("no migration arrived on \(address): \(String(cString: strerror(errno)))") }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        var text = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
        inet_ntop(AF_INET, &peerAddress.sin_addr, &text, socklen_t(INET_ADDRSTRLEN))
        let peer = "\(String(cString: text)):\(UInt16(bigEndian: peerAddress.sin_port))"
        let s = MigrationStream(fd: fd, peer: peer)
        let origin = "incoming migration from \(peer)"
        logger.info("\(origin) on \(address)")

        try s.receiveHeader()
        let configuration = try SuspendSections.configuration(from: s.receive("config").payload, file: origin)
        let manifest = try MigrationManifest(s.receive("manifest").payload, context: "\(origin): section 'manifest'")
        var refusal = manifest.refusal(for: configuration, resolve: host.resolveModel)
        if isRunning(configuration.displayName) {
            refusal = "a VM named '\(configuration.displayName)' is already running on this host"
        }
        try s.sendVerdict(refusal)
        if let refusal { throw MigrationError("\(origin): refused \(configuration.displayName): \(refusal)") }
        logger.info("\(origin): accepted \(configuration.displayName) (\(configuration.memoryMiB) MiB, \(configuration.vcpuCount) vCPU); receiving memory")

        let memory = try GuestMemory(size: configuration.memoryBytes, name: "\(configuration.displayName)-ram")
        var sections: [(name: String, version: UInt32, payload: [UInt8])] = []
        var pages = 0
        while true {
            let section = try s.receive()
            if section.name == "end" { break }
            if section.name == "pages" {
                pages += try MigrationPageBatch.apply(section.payload, to: memory, from: peer)
                continue
            }
            let known = SuspendSections.known.contains(section.name) || section.name.hasPrefix("vcpu.")
                || section.name.hasPrefix("device:")
            guard known, section.name != "config" else { throw MigrationError("\(origin): unexpected section '\(section.name)'") }
            sections.append(section)
        }
        let image = MigrationImage(path: origin, sections: sections, memory: memory)
        let vm: VirtualMachine
        do {
            vm = try VirtualMachine(configuration: configuration, host: host, logger: logger, restoring: image)
        } catch {
            try? s.sendVerdict("cannot build \(configuration.displayName) from the received state: \(error)")
            throw MigrationError("\(origin): cannot build \(configuration.displayName): \(error)")
        }
        try s.sendVerdict(String?.none)
        _ = try s.receive("go")
        logger.info("\(origin): \(configuration.displayName) switched over (\(pages) pages received)")
        return vm
    }
}

/// The state an incoming migration received: the sections, and guest RAM already holding
/// the pages.
final class MigrationImage: SavedMachineState {
    let path: String
    let sections: [(name: String, version: UInt32, payload: [UInt8])]
    private var memory: GuestMemory?

    init(path: String, sections: [(name: String, version: UInt32, payload: [UInt8])], memory: GuestMemory) {
        self.path = path
        self.sections = sections
        self.memory = memory
    }

    func section(_ name: String, maxVersion: UInt32) throws -> (version: UInt32, payload: [UInt8]) {
        let found = sections.filter { $0.name == name }
        guard found.count == 1, let s = found.first else {
            throw MigrationError("\(path): " + (found.isEmpty ? "no '\(name)' section" : "section '\(name)' appears \(found.count) times"))
        }
        guard s.version <= maxVersion else {
            throw MigrationError("\(path): section '\(name)' version \(s.version); this hvhost reads up to version \(maxVersion)")
        }
        return (s.version, s.payload)
    }

    func restoredMemory(size: UInt64, name: String) throws -> GuestMemory {
        guard let memory, memory.size == size else { throw MigrationError("\(path): the received memory does not fit \(size) bytes") }
        self.memory = nil
        return memory
    }
}
