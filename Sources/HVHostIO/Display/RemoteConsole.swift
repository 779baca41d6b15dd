import HVSupport

/// What a VM offers its remote consoles (VNC and the browser): its screen, its input
/// path, a name and an optional VNC password. Connections come and go; the feed
/// shares the screen's damage among them.
package final class RemoteConsole: @unchecked Sendable {
    /// Connections beyond this are refused, so clients cannot make unbounded threads.
    static let maxConnections = 16

    package let name: String
    let display: DisplaySurface
    let input: InputRouter
    /// VNC authentication's password (its first 8 bytes count); nil: no authentication.
    let password: String?
    let feed: DisplayDamageFeed
    private let lock = HostLock()
    private var connections: [RFBConnection] = []

    package init(name: String, display: DisplaySurface, input: InputRouter, password: String?) {
        self.name = name
        self.display = display
        self.input = input
        self.password = password
        feed = DisplayDamageFeed(surface: display)
    }

    /// Serves one client on its own threads; false (the transport shut) when full.
    @discardableResult
    func serve(_ transport: any RFBTransport) -> Bool {
        let connection = RFBConnection(transport: transport, console: self)
        let admitted = lock.withLock {
            guard connections.count < Self.maxConnections else { return false }
            connections.append(connection)
            return true
        }
        guard admitted else { transport.shutdown(); return false }
        connection.start { [weak self] c in
            self?.lock.withLock { self?.connections.removeAll { $0 === c } }
        }
        return true
    }

    package var connectionCount: Int { lock.withLock { connections.count } }

    /// Drops every client (the VM is going away).
    package func disconnectAll() {
        for c in lock.withLock({ connections }) { c.close() }
    }
}
