import Synchronization

/// The host's virtual switches by name (ESX port-group style: names are case-sensitive).
/// One per host; thread-safe.
package final class SwitchRegistry: Sendable {
    private struct State {
        var byName: [String: VirtualSwitch] = [:]
        var order: [VirtualSwitch] = []
        var portGroups: [String: PortGroupConfiguration] = [:]
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

    /// Makes the switch of `configuration` with its uplinks (see `VirtualSwitch`). Call
    /// before VMs attach: a name already in use is an error.
    package func addSwitch(_ configuration: SwitchConfiguration, policy: TeamingPolicy?,
                           log: @escaping @Sendable (String) -> Void) throws -> VirtualSwitch {
        if existingSwitch(named: configuration.name) != nil {
            throw SwitchConfigurationError("--switch: switch '\(configuration.name)' is defined twice")
        }
        let made = try VirtualSwitch(configuration: configuration, policy: policy, log: log)
        state.withLock { s in
            s.byName[made.name] = made
            s.order.append(made)
        }
        return made
    }

    /// Adds a port group: a network name that attaches to `switchName` with a VLAN id.
    package func addPortGroup(_ group: PortGroupConfiguration) throws(SwitchConfigurationError) {
        try state.withLock { s throws(SwitchConfigurationError) in
            guard s.portGroups[group.name] == nil, s.byName[group.name] == nil || group.name == group.switchName else {
                throw SwitchConfigurationError("--portgroup: '\(group.name)' is already a port group or another switch")
            }
            s.portGroups[group.name] = group
        }
    }

    /// The switch and VLAN a vNIC's `networkName` attaches to: a port group's, or else the
    /// switch of that name (made internal-only on first use) with no VLAN.
    package func attachment(forNetwork name: String) -> (virtualSwitch: VirtualSwitch, vlan: UInt16) {
        if let group = state.withLock({ $0.portGroups[name] }) {
            return (virtualSwitch(named: group.switchName), group.vlan)
        }
        return (virtualSwitch(named: name), 0)
    }

    /// The port groups, by name.
    package var portGroups: [PortGroupConfiguration] {
        state.withLock { $0.portGroups.values.sorted { $0.name < $1.name } }
    }

    /// Stops every switch's uplinks (host shutdown).
    package func shutdown() {
        for s in switches { s.shutdown() }
    }

    /// All switches, in creation order.
    package var switches: [VirtualSwitch] { state.withLock { $0.order } }
}
