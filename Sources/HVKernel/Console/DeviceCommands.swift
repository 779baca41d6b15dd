import HVPluginHost

/// `device <vm>` lists a VM's plugin devices; `device <vm> <dev>` lists a device's
/// commands; `device <vm> <dev> <command> [args…]` runs one through libffi under the
/// device lock, its words checked against the declared signature first.
extension ServiceConsole {
    func registerDeviceCommands(_ host: VMHost) {
        let usage = "device <vm> [<device> [<command> [args...]]]"
        register("device", summary: usage) { args in
            guard let name = args.first else { throw CommandError("usage: " + usage) }
            guard let vm = host.vm(named: name) else { throw CommandError("no VM named '\(name)'") }
            guard args.count >= 2 else {
                var lines = ["DEVICE\tMODEL\tCOMMANDS"]
                for d in vm.devices {
                    lines.append("\(d.context.prefix)\t\(d.modelName)\t\(d.declarations.commands.map(\.name).joined(separator: ","))")
                }
                return lines.joined(separator: "\n")
            }
            guard let device = vm.devices.first(where: { $0.context.prefix.lowercased() == args[1].lowercased() }) else {
                throw CommandError("\(name) has no device '\(args[1])'; devices: \(vm.devices.map(\.context.prefix).joined(separator: ", "))")
            }
            guard args.count >= 3 else {
                let commands = device.declarations.commands
                if commands.isEmpty { return "\(device.context.prefix) (\(device.modelName)) declares no commands" }
                return commands.map { $0.signature + ($0.help.map { "\t" + $0 } ?? "") }.joined(separator: "\n")
            }
            return try device.runCommand(args[2], words: Array(args.dropFirst(3))).rendered
        }
    }
}
