import HVSupport

/// Console commands about the host and its VMs.
extension ServiceConsole {
    package func registerHostCommands(_ host: VMHost) {
        registerNetCommands(host.services.switches)
        registerSuspendCommands(host)
        registerMemoryReclaimCommands(host)
        registerDeviceCommands(host)
        register("vms", summary: "list running VMs: name, memory, vCPUs, exits, state") { _ in
            var lines = ["NAME\tMEMORY\tVCPUS\tEXITS\tSTATE"]
            for vm in host.vms {
                // One row per VM whatever its name and stop reason hold.
                lines.append("\(vm.name.escapingControlCharacters)\t\(vm.configuration.memoryMiB) MiB\t\(vm.configuration.vcpuCount)\t\(vm.exitCount)\t\(vm.stateDescription.escapingControlCharacters)")
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
