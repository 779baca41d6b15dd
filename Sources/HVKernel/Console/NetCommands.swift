import HVHostIO

/// Console commands for the virtual switches: `net switches`, `net ports`, `net link`.
extension ServiceConsole {
    func registerNetCommands(_ switches: SwitchRegistry) {
        register("net", summary: "net switches | net ports [switch] | net link <vm> <ethernetN> up|down") { args in
            switch args.first {
            case "switches":
                var lines = ["SWITCH\tPORTS"]
                for s in switches.switches { lines.append("\(s.name)\t\(s.ports.count)") }
                return lines.joined(separator: "\n")
            case "ports":
                let only = args.count > 1 ? args[1...].joined(separator: " ") : nil
                var lines = ["SWITCH\tPORT\tMAC\tLINK\tTXFRAMES\tTXBYTES\tRXFRAMES\tRXBYTES\tTXDROPS\tRXDROPS"]
                for s in switches.switches where only == nil || s.name == only {
                    for p in s.ports {
                        let c = p.counters
                        lines.append("\(s.name)\t\(p.name)\t\(p.mac)\t\(p.isLinkUp ? "up" : "down")\t" +
                                     "\(c.txFrames)\t\(c.txBytes)\t\(c.rxFrames)\t\(c.rxBytes)\t\(c.txDrops)\t\(c.rxDrops)")
                    }
                }
                return lines.joined(separator: "\n")
            case "link":
                guard args.count == 4, ["up", "down"].contains(args[3]) else {
                    throw CommandError("usage: net link <vm> <ethernetN> up|down")
                }
                let name = "\(args[1]).\(args[2])"
                guard let port = switches.switches.lazy.flatMap(\.ports).first(where: { $0.name == name }) else {
                    throw CommandError("no port '\(name)' on any switch")
                }
                port.setLink(up: args[3] == "up")
                return "\(name): link \(args[3])"
            default:
                throw CommandError("usage: net switches | net ports [switch] | net link <vm> <ethernetN> up|down")
            }
        }
    }
}
