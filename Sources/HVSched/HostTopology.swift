import Glibc

/// The host's CPU topology as Linux exposes it in sysfs: packages (sockets), cores, SMT
/// siblings, NUMA nodes and the CPUs sharing each CPU's last-level cache. Read from a
/// configurable root so tests use a fixture tree; `hvhost sched topology` prints it and
/// the pools hand it to their policies (pool-local, ``PoolTopology``).
package struct HostTopology: Equatable, Sendable {
    package struct CPU: Equatable, Sendable {
        package var id: Int
        /// `topology/physical_package_id`.
        package var package: Int
        /// `topology/core_id` (unique only within its package).
        package var core: Int
        /// NUMA node (`node/nodeN/cpulist`); 0 on a host without NUMA information.
        package var node: Int
        /// `topology/thread_siblings_list`: the CPUs of this core, itself included.
        package var smtSiblings: [Int]
        /// The highest-level cache's `shared_cpu_list`, itself included.
        package var llcSharers: [Int]
        /// That cache's level and size as sysfs says it ("32768K"), when known.
        package var llcLevel: Int?
        package var llcSize: String?
    }

    package var cpus: [CPU]

    package struct ReadError: Error, CustomStringConvertible, Sendable {
        package let description: String
    }

    /// Reads `<root>/devices/system/cpu` and `<root>/devices/system/node`; the online CPUs
    /// only. `root` is "/sys" on a real host.
    package static func read(sysfsRoot root: String = "/sys") throws(ReadError) -> HostTopology {
        let cpuDir = root + "/devices/system/cpu"
        guard let onlineText = readText(cpuDir + "/online"), let online = SchedulerConfiguration.parseList(onlineText) else {
            throw ReadError(description: "\(cpuDir)/online: missing or not a CPU list (expected e.g. \"0-3\")")
        }
        var nodeOf: [Int: Int] = [:]
        let nodeDir = root + "/devices/system/node"
        for name in listDirectory(nodeDir) where name.hasPrefix("node") {
            guard let n = Int(name.dropFirst(4)), let text = readText("\(nodeDir)/\(name)/cpulist") else { continue }
            for c in SchedulerConfiguration.parseList(text) ?? [] { nodeOf[c] = n }
        }
        var cpus: [CPU] = []
        for c in online {
            let dir = "\(cpuDir)/cpu\(c)"
            func number(_ file: String) throws(ReadError) -> Int {
                guard let t = readText(dir + "/" + file), let v = Int(t) else {
                    throw ReadError(description: "\(dir)/\(file): missing or not a number")
                }
                return v
            }
            func list(_ file: String) throws(ReadError) -> [Int] {
                guard let t = readText(dir + "/" + file), let v = SchedulerConfiguration.parseList(t) else {
                    throw ReadError(description: "\(dir)/\(file): missing or not a CPU list")
                }
                return v
            }
            var llc: (level: Int, sharers: [Int], size: String?)?
            for index in listDirectory(dir + "/cache").filter({ $0.hasPrefix("index") }).sorted() {
                let base = "\(dir)/cache/\(index)"
                guard let level = readText(base + "/level").flatMap({ Int($0) }),
                      readText(base + "/type") != "Instruction",
                      let sharers = readText(base + "/shared_cpu_list").flatMap(SchedulerConfiguration.parseList) else { continue }
                if llc == nil || level > llc!.level { llc = (level, sharers, readText(base + "/size")) }
            }
            cpus.append(CPU(id: c, package: try number("topology/physical_package_id"), core: try number("topology/core_id"),
                            node: nodeOf[c] ?? 0, smtSiblings: try list("topology/thread_siblings_list"),
                            llcSharers: llc?.sharers ?? [c], llcLevel: llc?.level, llcSize: llc?.size))
        }
        return HostTopology(cpus: cpus)
    }

    package func cpu(_ id: Int) -> CPU? { cpus.first { $0.id == id } }

    /// Online CPUs ordered package, core, thread: SMT siblings side by side, the order
    /// `--pcpus host` gives its slots.
    package var slotOrder: [Int] {
        cpus.sorted { ($0.package, $0.core, $0.id) < ($1.package, $1.core, $1.id) }.map(\.id)
    }

    /// What `hvhost sched topology` prints: a summary line and one line per CPU.
    package var description: String {
        let packages = Set(cpus.map(\.package)).count
        let cores = Set(cpus.map { "\($0.package).\($0.core)" }).count
        let nodes = Set(cpus.map(\.node)).count
        func list(_ l: [Int]) -> String { SchedulerConfiguration.formatList(l) }
        var out = "\(cpus.count) CPU\(cpus.count == 1 ? "" : "s"), \(cores) core\(cores == 1 ? "" : "s"), \(packages) package\(packages == 1 ? "" : "s") (sockets), \(nodes) NUMA node\(nodes == 1 ? "" : "s")\n"
        out += "CPU  PACKAGE  CORE  NODE  SMT-SIBLINGS  LLC-SHARED-WITH\n"
        for c in cpus {
            let llc = list(c.llcSharers) + (c.llcLevel.map { " (L\($0)\(c.llcSize.map { " " + $0 } ?? ""))" } ?? "")
            out += [String(c.id).padding(4), String(c.package).padding(8), String(c.core).padding(5), String(c.node).padding(5),
                    list(c.smtSiblings).padding(13), llc].joined(separator: " ") + "\n"
        }
        return out
    }

    private static func readText(_ path: String) -> String? {
        guard let f = fopen(path, "r") else { return nil }
        defer { fclose(f) }
        var buf = [CChar](repeating: 0, count: 4096)
        guard fgets(&buf, Int32(buf.count), f) != nil else { return nil }
        var s = String(cString: buf)
        while let last = s.last, last == "\n" || last == " " { s.removeLast() }
        return s
    }

    private static func listDirectory(_ path: String) -> [String] {
        guard let d = opendir(path) else { return [] }
        defer { closedir(d) }
        var names: [String] = []
        while let e = readdir(d) {
            let name = withUnsafePointer(to: e.pointee.d_name) { $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) } }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }
}

private extension String {
    func padding(_ width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
}

/// A pool's slots as its policy sees the host (``SchedulerPolicy/setTopology(_:)``,
/// `hv_sched_topology` for a plugin): per pool-local slot, the host CPU it is pinned to
/// and where that CPU sits, and which other slots of the pool share its core (SMT) or
/// its last-level cache. An unpinned slot has no known place: its fields are -1 and it
/// shares nothing.
package struct PoolTopology: Equatable, Sendable {
    package struct Slot: Equatable, Sendable {
        package var hostCPU: Int32 = -1
        package var package: Int32 = -1
        package var core: Int32 = -1
        package var node: Int32 = -1
        /// The lowest CPU sharing the last-level cache: equal values share it.
        package var llc: Int32 = -1
        /// Bit i: pool-local slot i is on the same core (this slot excluded).
        package var smtSiblings: UInt64 = 0
        /// Bit i: pool-local slot i shares the last-level cache (this slot excluded).
        package var llcSharers: UInt64 = 0
    }

    package var slots: [Slot]

    /// One line per slot: its host CPU, place and the slots it shares a core / cache with.
    package var description: String {
        func bits(_ m: UInt64) -> String {
            let l = (0..<64).filter { m & (1 << UInt64($0)) != 0 }
            return l.isEmpty ? "-" : SchedulerConfiguration.formatList(l)
        }
        func v(_ x: Int32) -> String { x < 0 ? "-" : String(x) }
        var out = "SLOT  CPU  PACKAGE  CORE  NODE  SMT-SIBLING-SLOTS  LLC-SHARING-SLOTS"
        for (i, s) in slots.enumerated() {
            out += "\n" + [String(i).padding(5), (s.hostCPU < 0 ? "any" : String(s.hostCPU)).padding(4), v(s.package).padding(8),
                           v(s.core).padding(5), v(s.node).padding(5), bits(s.smtSiblings).padding(18), bits(s.llcSharers)].joined(separator: " ")
        }
        return out
    }

    /// The topology of slots pinned to `hostCPUs` (nil: unpinned), in pool-local order.
    package init(hostCPUs: [Int?], host: HostTopology?) {
        var slots = hostCPUs.map { cpu -> Slot in
            guard let cpu, let c = host?.cpu(cpu) else { return Slot(hostCPU: Int32(cpu ?? -1)) }
            return Slot(hostCPU: Int32(cpu), package: Int32(c.package), core: Int32(c.core), node: Int32(c.node),
                        llc: Int32(c.llcSharers.min() ?? cpu))
        }
        for i in slots.indices where slots[i].hostCPU >= 0 {
            guard let me = host?.cpu(Int(slots[i].hostCPU)) else { continue }
            for j in slots.indices where j != i && j < 64 && slots[j].hostCPU >= 0 {
                let other = Int(slots[j].hostCPU)
                // Two slots pinned to the same CPU are siblings too: they compete for it.
                if me.smtSiblings.contains(other) || other == me.id { slots[i].smtSiblings |= 1 << UInt64(j) }
                if me.llcSharers.contains(other) || other == me.id { slots[i].llcSharers |= 1 << UInt64(j) }
            }
        }
        self.slots = slots
    }
}
