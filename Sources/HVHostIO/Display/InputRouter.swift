import HVSupport

/// A device that takes input events. Each method returns whether it took the event;
/// one that did not (no such input, or the guest has not enabled it) lets the router
/// offer the event to the next client.
package protocol InputClient: AnyObject {
    func key(scancode: UInt32, pressed: Bool) -> Bool
    func pointer(_ event: PointerEvent) -> Bool
}

/// A VM's input path: the host's consoles send keyboard and pointer events here; the
/// router offers each one to the attached devices in attach order until one takes it.
/// Events are delivered on the sending thread; `detach` waits out deliveries in
/// flight, so a detached client is never called again.
package final class InputRouter: @unchecked Sendable {
    private let lock = HostLock()
    private var clients: [any InputClient] = []
    private var inFlight = 0

    package init() {}

    package func attach(_ client: any InputClient) {
        lock.withLock { clients.append(client) }
    }

    package func hasClient(where matches: (any InputClient) -> Bool) -> Bool {
        lock.withLock { clients.contains(where: matches) }
    }

    package func detach(_ client: any InputClient) {
        lock.withLock {
            clients.removeAll { $0 === client }
            while inFlight > 0 { lock.wait() }
        }
    }

    /// A key press or release (`Scancode`); true when a device took it.
    @discardableResult
    func sendKey(scancode: UInt32, pressed: Bool) throws(InputError) -> Bool {
        guard Scancode.isValid(scancode) else {
            throw InputError(message: "scancode 0x\(String(scancode, radix: 16)) is not a set-1 make code (0x01-0x7f, 0xe001-0xe07f, 0xe11d)")
        }
        guard pressed || scancode != Scancode.pause else { throw InputError(message: "Pause (0xe11d) has no release") }
        return deliver { $0.key(scancode: scancode, pressed: pressed) }
    }

    /// A pointer event; true when a device took it.
    @discardableResult
    func sendPointer(_ event: PointerEvent) -> Bool {
        deliver { $0.pointer(event) }
    }

    private func deliver(_ offer: (any InputClient) -> Bool) -> Bool {
        let targets: [any InputClient] = lock.withLock {
            inFlight += 1
            return clients
        }
        defer {
            lock.withLock {
                inFlight -= 1
                if inFlight == 0 { lock.broadcast() }
            }
        }
        return targets.contains(where: offer)
    }
}
