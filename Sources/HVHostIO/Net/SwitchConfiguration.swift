/// One uplink of a switch spec: a host interface opened as an AF_PACKET socket, or a TAP.
package struct UplinkSpec: Sendable, Equatable, CustomStringConvertible {
    package enum Kind: Sendable, Equatable { case packetSocket, tap }
    package let kind: Kind
    package let interface: String

    package init(kind: Kind, interface: String) {
        self.kind = kind
        self.interface = interface
    }

    package var description: String { kind == .tap ? "tap \(interface)" : interface }
}

/// A bad `--switch` or `--portgroup` spec; the message names the spec and what was expected.
package struct SwitchConfigurationError: Error, CustomStringConvertible {
    package let description: String
    package init(_ description: String) { self.description = description }
}

/// A switch with uplinks, from `--switch NAME:KEY=VALUE[:KEY=VALUE...]`:
/// `uplinks=IF[,IF...]` host interfaces (AF_PACKET; their order is the failover order),
/// `tap=NAME` a TAP device as a further uplink, `teaming=POLICY` a teaming policy by name
/// (default: the built-in explicit failover), `failback=yes|no` (default yes),
/// `notify=yes|no` notify switches with a RARP per moved MAC (default yes).
package struct SwitchConfiguration: Sendable, Equatable {
    package var name: String
    package var uplinks: [UplinkSpec] = []
    package var teaming: String?
    package var failback = true
    package var notifySwitches = true

    package init(name: String) { self.name = name }

    package static func parse(_ spec: String) throws(SwitchConfigurationError) -> SwitchConfiguration {
        let fields = spec.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        guard let name = fields.first, !name.isEmpty else {
            throw SwitchConfigurationError("--switch '\(spec)': expected NAME:uplinks=IF[,IF...][:teaming=POLICY][:failback=yes|no][:notify=yes|no]")
        }
        var config = SwitchConfiguration(name: name)
        func flag(_ key: String, _ value: String) throws(SwitchConfigurationError) -> Bool {
            switch value {
            case "yes", "true", "1": return true
            case "no", "false", "0": return false
            default: throw SwitchConfigurationError("--switch '\(spec)': \(key) is yes or no, got '\(value)'")
            }
        }
        for field in fields.dropFirst() {
            guard let eq = field.firstIndex(of: "="), !field[field.index(after: eq)...].isEmpty else {
                throw SwitchConfigurationError("--switch '\(spec)': '\(field)' is not KEY=VALUE")
            }
            let key = String(field[..<eq]), value = String(field[field.index(after: eq)...])
            switch key {
            case "uplinks":
                for name in value.split(separator: ",", omittingEmptySubsequences: false) {
                    guard !name.isEmpty else { throw SwitchConfigurationError("--switch '\(spec)': empty uplink name in '\(value)'") }
                    config.uplinks.append(UplinkSpec(kind: .packetSocket, interface: String(name)))
                }
            case "tap": config.uplinks.append(UplinkSpec(kind: .tap, interface: value))
            case "teaming": config.teaming = value
            case "failback": config.failback = try flag(key, value)
            case "notify": config.notifySwitches = try flag(key, value)
            default:
                throw SwitchConfigurationError("--switch '\(spec)': unknown key '\(key)' (expected uplinks, tap, teaming, failback, notify)")
            }
        }
        guard !config.uplinks.isEmpty else {
            throw SwitchConfigurationError("--switch '\(spec)': no uplink (uplinks=IF[,IF...] or tap=NAME)")
        }
        let names = config.uplinks.map(\.interface)
        if let twice = names.first(where: { n in names.filter { $0 == n }.count > 1 }) {
            throw SwitchConfigurationError("--switch '\(spec)': uplink '\(twice)' is listed twice")
        }
        return config
    }
}

/// A port group, from `--portgroup NAME:SWITCH:VLAN`: VMs whose `ethernetN.networkName`
/// is NAME attach to SWITCH with VLAN id VLAN (0 none, 1-4094 tagged on the uplinks and
/// untagged toward the VM, 4095 tags pass through to the guest).
package struct PortGroupConfiguration: Sendable, Equatable {
    package let name: String
    package let switchName: String
    package let vlan: UInt16

    package init(name: String, switchName: String, vlan: UInt16) {
        self.name = name
        self.switchName = switchName
        self.vlan = vlan
    }

    package static func parse(_ spec: String) throws(SwitchConfigurationError) -> PortGroupConfiguration {
        let f = spec.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        guard f.count == 3, !f[0].isEmpty, !f[1].isEmpty else {
            throw SwitchConfigurationError("--portgroup '\(spec)': expected NAME:SWITCH:VLAN")
        }
        guard let vlan = UInt16(f[2]), vlan <= 4095 else {
            throw SwitchConfigurationError("--portgroup '\(spec)': VLAN is 0..4095 (0 none, 4095 guest tagging), got '\(f[2])'")
        }
        return PortGroupConfiguration(name: f[0], switchName: f[1], vlan: vlan)
    }
}
