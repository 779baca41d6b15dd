/// `migrate VM tcp:HOST:PORT [OPTION=VALUE …]`, `migrate status [VM]`, `migrate cancel VM`:
/// live migration to another hvhost (`hvhost run --incoming tcp:HOST:PORT`).
extension ServiceConsole {
    func registerMigrateCommands(_ host: VMHost) {
        let usage = "usage: migrate <vm> tcp:HOST:PORT [downtime-ms=N] [bandwidth-mib=N] [auto-converge=yes|no] [max-rounds=N] [allow-remote=yes|no] | migrate status [vm] | migrate cancel <vm>"
        register("migrate", summary: "migrate VM tcp:HOST:PORT [downtime-ms=N] [bandwidth-mib=N] [auto-converge=yes|no]: live-migrate a VM; migrate status|cancel") { args in
            guard let first = args.first else { throw CommandError(usage) }
            switch first {
            case "status":
                let all = host.migrations.filter { args.count < 2 || $0.vmName == args[1] }
                guard !all.isEmpty else {
                    throw CommandError(args.count < 2 ? "no migrations" : "no migration of '\(args[1])'")
                }
                return all.map(\.statusLine).joined(separator: "\n")
            case "cancel":
                guard args.count == 2 else { throw CommandError(usage) }
                guard let m = host.migrations.last(where: { $0.vmName == args[1] && !$0.progress.isFinished }) else {
                    throw CommandError("'\(args[1])' is not migrating")
                }
                guard m.cancel() else { throw CommandError("\(args[1]) is switching over to \(m.destination); too late to cancel") }
                return "\(args[1]): cancelling the migration to \(m.destination)"
            default:
                guard args.count >= 2 else { throw CommandError(usage) }
                var options = MigrationSource.Options()
                var allowRemote = false
                for option in args.dropFirst(2) {
                    let kv = option.split(separator: "=", maxSplits: 1).map(String.init)
                    guard kv.count == 2 else { throw CommandError("'\(option)' is not OPTION=VALUE; \(usage)") }
                    switch (kv[0], kv[1]) {
                    case ("downtime-ms", let v):
                        guard let n = Double(v), n > 0 else { throw CommandError("downtime-ms=\(v): expected milliseconds > 0") }
                        options.downtimeMilliseconds = n
                    case ("bandwidth-mib", let v):
                        guard let n = Double(v), n > 0 else { throw CommandError("bandwidth-mib=\(v): expected MiB/s > 0") }
                        options.bandwidthLimit = n * 1_048_576
                    case ("max-rounds", let v):
                        guard let n = Int(v), n >= 0 else { throw CommandError("max-rounds=\(v): expected a count >= 0") }
                        options.maximumRounds = n
                    case ("auto-converge", "yes"): options.autoConverge = true
                    case ("auto-converge", "no"): options.autoConverge = false
                    case ("allow-remote", "yes"): allowRemote = true
                    case ("allow-remote", "no"): allowRemote = false
                    default: throw CommandError("unknown option '\(option)'; \(usage)")
                    }
                }
                let destination = try MigrationAddress(args[1], allowRemote: allowRemote)
                let m = try host.migrate(vmNamed: first, to: destination, options: options)
                return "\(m.vmName): migrating to \(destination)"
            }
        }
    }
}
