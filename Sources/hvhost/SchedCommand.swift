import ArgumentParser
import HVSched

/// `hvhost sched topology`: the host's CPU topology as the scheduler reads it from sysfs,
/// and how pCPU slots map onto it.
struct SchedCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sched",
        abstract: "Scheduler information about this host.",
        subcommands: [Topology.self])

    struct Topology: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "topology",
            abstract: "Print the host's packages, cores, SMT siblings, NUMA nodes and shared caches, and the pCPU slots --pcpus makes of them.")

        @Option(name: .customLong("sysfs-root"), help: "Read this tree instead of /sys (a copy of a host's sysfs).")
        var sysfsRoot = "/sys"

        @Option(name: .customLong("pcpus"), help: "The slot spec to map, as for `hvhost run --pcpus` (default: host).")
        var pcpus = "host"

        func run() throws {
            let host: HostTopology
            do { host = try HostTopology.read(sysfsRoot: sysfsRoot) } catch {
                throw ValidationError("\(error)")
            }
            print(host.description, terminator: "")
            let config = try SchedulerConfiguration.parse(pcpus: pcpus, pools: [], hostCPUs: host.cpus.count, sysfsRoot: sysfsRoot)
            let pool = PoolTopology(hostCPUs: config.slots.map(\.hostCPU), host: host)
            print("\nslots (--pcpus \(pcpus)):")
            print(pool.description)
        }
    }
}
