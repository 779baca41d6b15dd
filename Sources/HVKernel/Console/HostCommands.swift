import HVSupport

/// Console commands about the host and its VMs.
extension ServiceConsole {
    package func registerHostCommands(_ host: VMHost) {
        registerNetCommands(host.services.switches)
        registerSuspendCommands(host)
        registerMigrateCommands(host)
        registerDeviceCommands(host)
        registerScreenshotCommands(host)
        register("vms", summary: "list running VMs: name, memory, vCPUs, exits, state") { _ in
            var lines = ["NAME\tMEMORY\tVCPUS\tEXITS\tSTATE"]
            for vm in host.vms {
                // One row per VM whatever its name and stop reason hold.
                lines.append("\(vm.name.escapingControlCharacters)\t\(vm.configuration.memoryMiB) MiB\t\(vm.configuration.vcpuCount)\t\(vm.exitCount)\t\(vm.stateDescription.escapingControlCharacters)")
            }
            return lines.joined(separator: "\n")
        }
        register("consoles", summary: "list each VM's remote consoles: VNC address, browser URL") { _ in
            var lines = ["NAME\tVNC\tBROWSER"]
            let web = host.webConsole
            for vm in host.vms {
                let vnc = vm.vncServer.map { "\($0.address):\($0.port)\(vm.configuration.remoteDisplay.password == nil ? "" : " (password)")" } ?? "-"
                lines.append("\(vm.name.escapingControlCharacters)\t\(vnc)\t\(web?.url(for: vm.name) ?? "-")")
            }
            return lines.joined(separator: "\n")
        }
        register("poweroff", summary: "poweroff VM: power a VM off") { args in
            guard let name = args.first else { throw CommandError("usage: poweroff <vm>") }
            guard let vm = host.vm(named: name) else { throw CommandError("no VM named '\(name)'") }
            vm.stop(.poweredOff)
            return "\(name): powering off"
        }
    }
}
