import HVHostIO

/// Console commands for the virtual switches: `net switches`, `net ports`, `net link`,
/// `net uplinks`, `net team`, `net shape`.
extension ServiceConsole {
    private static let netUsage = "net switches | net ports [switch] | net link <vm> <ethernetN>|<uplink> up|down | net uplinks [switch] | net team <switch> | net shape <vm> <ethernetN> [<average bit/s> <peak bit/s> <burst bytes> | off]"

    func registerNetCommands(_ switches: SwitchRegistry) {
        register("net", summary: Self.netUsage) { args in
            func port(_ vm: String, _ nic: String) throws -> VirtualPort {
                let name = "\(vm).\(nic)"
                guard let port = switches.switches.lazy.flatMap(\.ports).first(where: { $0.name == name }) else {
                    throw CommandError("no port '\(name)' on any switch")
                }
                return port
            }
            switch args.first {
            case "switches":
                var lines = ["SWITCH\tPORTS\tUPLINKS"]
                for s in switches.switches {
                    lines.append("\(s.name)\t\(s.ports.count)\t\(s.uplinks.map(\.description).joined(separator: ","))")
                }
                return lines.joined(separator: "\n")
            case "ports":
                let only = args.count > 1 ? args[1...].joined(separator: " ") : nil
                var lines = ["SWITCH\tPORT\tMAC\tLINK\tTXFRAMES\tTXBYTES\tRXFRAMES\tRXBYTES\tTXDROPS\tRXDROPS\tVLAN\tSHAPED"]
                for s in switches.switches where only == nil || s.name == only {
                    for p in s.ports {
                        let c = p.counters
                        lines.append("\(s.name)\t\(p.name)\t\(p.mac)\t\(p.isLinkUp ? "up" : "down")\t" +
                                     "\(c.txFrames)\t\(c.txBytes)\t\(c.rxFrames)\t\(c.rxBytes)\t\(c.txDrops)\t\(c.rxDrops)\t\(p.vlan)\t\(c.txShaped)")
                    }
                }
                return lines.joined(separator: "\n")
            case "uplinks":
                let only = args.count > 1 ? args[1] : nil
                var lines = ["SWITCH\tUPLINK\tLINK\tTXFRAMES\tTXBYTES\tRXFRAMES\tRXBYTES\tTXERRORS\tRXFILTERED"]
                for s in switches.switches where only == nil || s.name == only {
                    for u in s.uplinks {
                        let c = u.counters
                        lines.append("\(s.name)\t\(u)\t\(u.isLinkUp ? "up" : "down")\t\(c.txFrames)\t\(c.txBytes)\t" +
                                     "\(c.rxFrames)\t\(c.rxBytes)\t\(c.txErrors)\t\(c.rxFiltered)")
                    }
                }
                return lines.joined(separator: "\n")
            case "team":
                guard args.count == 2, let s = switches.switches.first(where: { $0.name == args[1] }) else {
                    throw CommandError("usage: net team <switch with uplinks>")
                }
                let t = s.teamStatus
                var lines = ["\(s.name): policy '\(t.policy)' (\(t.origin)), failback \(s.configuration?.failback ?? true ? "yes" : "no"), " +
                             "notify \(s.configuration?.notifySwitches ?? true ? "yes" : "no"), \(t.failovers) failover(s), \(t.notifications) RARP(s)",
                             "UPLINK\tSTATE\tPORTS"]
                for m in t.members { lines.append("\(m.uplink)\t\(m.state)\t\(m.ports)") }
                return lines.joined(separator: "\n")
            case "link":
                guard args.count == 4 || args.count == 3, ["up", "down"].contains(args[args.count - 1]) else {
                    throw CommandError("usage: net link <vm> <ethernetN> up|down (a vNIC), net link <uplink> up|down (an uplink)")
                }
                if args.count == 3 {
                    // An uplink's link is its host interface's carrier: report it, never fake it.
                    guard let u = switches.switches.lazy.flatMap(\.uplinks).first(where: { $0.interfaceName == args[1] }) else {
                        throw CommandError("no uplink '\(args[1])' on any switch")
                    }
                    return "\(u): carrier \(u.isLinkUp ? "up" : "down") (set by the host interface; use `ip link set \(u.interfaceName) \(args[2])`)"
                }
                let p = try port(args[1], args[2])
                p.setLink(up: args[3] == "up")
                return "\(p.name): link \(args[3])"
            case "shape":
                guard args.count >= 3 else { throw CommandError("usage: " + Self.netUsage) }
                let p = try port(args[1], args[2])
                if args.count == 3 {
                    guard let s = p.shaping else { return "\(p.name): not shaped" }
                    return "\(p.name): \(s.parameters); passed \(s.passedFrames) frames/\(s.passedBytes) B, dropped \(s.droppedFrames) frames, unused allowance \(s.unusedBytes) B"
                }
                if args.count == 4, args[3] == "off" {
                    p.setShaping(nil)
                    return "\(p.name): shaping off"
                }
                guard args.count == 6, let avg = UInt64(args[3]), let peak = UInt64(args[4]), let burst = UInt64(args[5]) else {
                    throw CommandError("usage: net shape <vm> <ethernetN> <average bit/s> <peak bit/s> <burst bytes> | off")
                }
                do {
                    let parameters = try ShapingParameters(averageBitsPerSecond: avg, peakBitsPerSecond: peak, burstBytes: burst)
                    p.setShaping(parameters)
                    return "\(p.name): \(parameters)"
                } catch {
                    throw CommandError("\(error)")
                }
            default:
                throw CommandError("usage: " + Self.netUsage)
            }
        }
    }
}
