import Synchronization

/// The host's virtual switches by name (ESX port-group style: names are case-sensitive).
/// One per host; thread-safe.
package final class SwitchRegistry: Sendable {
    private struct State {
        var byName: [String: VirtualSwitch] = [:]
        var order: [VirtualSwitch] = []
    }

    private let state = Mutex(State())

    package init() {}

    /// The switch called `name`, created (internal-only, no uplink) on first use.
    package func virtualSwitch(named name: String) -> VirtualSwitch {
        state.withLock { s in
            if let existing = s.byName[name] { return existing }
            let created = VirtualSwitch(name: name)
            s.byName[name] = created
            s.order.append(created)
            return created
        }
    }

    /// The switch called `name` if it already exists (for callers that must not create
    /// one, e.g. an attach that reports "no such network").
    func existingSwitch(named name: String) -> VirtualSwitch? {
        state.withLock { $0.byName[name] }
    }

    /// All switches, in creation order.
    package var switches: [VirtualSwitch] { state.withLock { $0.order } }
}
