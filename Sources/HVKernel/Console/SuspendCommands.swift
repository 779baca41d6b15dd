import Glibc

/// `suspend VM FILE` and `resume FILE` (paths as the host process sees them;
/// `hvhost console` makes relative paths absolute before sending them).
extension ServiceConsole {
    func registerSuspendCommands(_ host: VMHost) {
        register("suspend", summary: "suspend VM FILE: save a VM's state to FILE and power it off") { args in
            guard args.count == 2 else { throw CommandError("usage: suspend <vm> <file>") }
            try host.suspend(vmNamed: args[0], to: args[1])
            var st = stat()
            let size = stat(args[1], &st) == 0 ? " (\(st.st_size >> 10) KiB)" : ""
            return "\(args[0]): suspended to \(args[1])\(size)"
        }
        register("resume", summary: "resume FILE: continue a suspended VM in this host") { args in
            guard args.count == 1 else { throw CommandError("usage: resume <file>") }
            let vm = try host.resume(from: args[0])
            return "\(vm.name): resumed from \(args[0])"
        }
    }
}
