import Foundation
import HVSupport
import Logging
import Testing
@testable import HVSched

/// The host topology from sysfs: a fixture tree (2 sockets × 2 cores × 2 threads,
/// Linux-style numbering where cpu N and N+4 are SMT siblings, one NUMA node and L3 per
/// socket) and this machine's /sys; how slots map onto it.
@Suite struct HostTopologyTests {
    static let fixture: String = {
        var url = URL(fileURLWithPath: #filePath)
        url.deleteLastPathComponent()
        return url.path + "/Fixtures/sysfs-2socket-smt"
    }()

    @Test func readsTheTwoSocketSMTFixture() throws {
        let t = try HostTopology.read(sysfsRoot: Self.fixture)
        #expect(t.cpus.map(\.id) == Array(0..<8))
        #expect(t.cpus.map(\.package) == [0, 0, 1, 1, 0, 0, 1, 1])
        #expect(t.cpus.map(\.core) == [0, 1, 0, 1, 0, 1, 0, 1])
        #expect(t.cpus.map(\.node) == [0, 0, 1, 1, 0, 0, 1, 1])
        #expect(t.cpu(1)?.smtSiblings == [1, 5])
        #expect(t.cpu(6)?.llcSharers == [2, 3, 6, 7] && t.cpu(6)?.llcLevel == 3 && t.cpu(6)?.llcSize == "30720K")
        #expect(t.slotOrder == [0, 4, 1, 5, 2, 6, 3, 7])
        #expect(t.description.hasPrefix("8 CPUs, 4 cores, 2 packages (sockets), 2 NUMA nodes\n"))
    }

    @Test func hostSlotsArePinnedAndSiblingsComeFromTheTopology() throws {
        let config = try SchedulerConfiguration.parse(pcpus: "host", pools: ["a:0-3:propshare", "b:4-7"], sysfsRoot: Self.fixture)
        #expect(config.slots.map(\.hostCPU) == [0, 4, 1, 5, 2, 6, 3, 7])
        let host = try HostTopology.read(sysfsRoot: Self.fixture)
        let all = PoolTopology(hostCPUs: config.slots.map(\.hostCPU), host: host)
        // Slots 2k/2k+1 are siblings here because `host` orders them so ...
        #expect(all.slots.map(\.smtSiblings) == [0b10, 0b1, 0b1000, 0b100, 0b10_0000, 0b1_0000, 0b1000_0000, 0b100_0000])
        #expect(all.slots[0].llcSharers == 0b1110 && all.slots[4].node == 1 && all.slots[4].package == 1)
        // ... but with the kernel's numbering pinned as is, cpu0's sibling is slot 4.
        let plain = try SchedulerConfiguration.parse(pcpus: "8@0-7", pools: [], hostCPUs: 8)
        let p = PoolTopology(hostCPUs: plain.slots.map(\.hostCPU), host: host)
        #expect(p.slots[0].smtSiblings == 1 << 4 && p.slots[5].smtSiblings == 1 << 1)
        #expect(p.slots[2].llcSharers == (1 << 3) | (1 << 6) | (1 << 7))
        // A pool sees only its own slots, pool-locally numbered (pool b = cpus 2,6,3,7).
        let b = PoolTopology(hostCPUs: [2, 6, 3, 7], host: host)
        #expect(b.slots.map(\.smtSiblings) == [0b10, 0b1, 0b1000, 0b100])
        #expect(b.slots.map(\.hostCPU) == [2, 6, 3, 7])
        // Unpinned slots have no place.
        let loose = PoolTopology(hostCPUs: [nil, nil], host: host)
        #expect(loose.slots.allSatisfy { $0.hostCPU == -1 && $0.smtSiblings == 0 && $0.core == -1 })
    }

    @Test func readsThisMachine() throws {
        let t = try HostTopology.read()
        #expect(t.cpus.count == HostThread.hostCPUCount)
        for c in t.cpus {
            #expect(c.smtSiblings.contains(c.id) && c.llcSharers.contains(c.id))
            // sysfs agrees with itself: siblings name each other and share the package.
            for s in c.smtSiblings { #expect(t.cpu(s)?.smtSiblings == c.smtSiblings && t.cpu(s)?.package == c.package) }
        }
        let config = try SchedulerConfiguration.parse(pcpus: "host", pools: [])
        #expect(config.slots.compactMap(\.hostCPU).sorted() == t.cpus.map(\.id))
        // Every host CPU's slot lists exactly its other SMT threads as siblings.
        let pool = PoolTopology(hostCPUs: config.slots.map(\.hostCPU), host: t)
        for (i, slot) in pool.slots.enumerated() {
            let cpu = try #require(t.cpu(Int(slot.hostCPU)))
            let want = cpu.smtSiblings.filter { $0 != cpu.id }.compactMap { s in config.slots.firstIndex { $0.hostCPU == s } }
            #expect(slot.smtSiblings == want.reduce(UInt64(0)) { $0 | 1 << UInt64($1) }, "slot \(i)")
        }
    }

    @Test func missingOrMalformedSysfsIsAClearError() throws {
        let dir = NSTemporaryDirectory() + "hv-topology-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(throws: HostTopology.ReadError.self) { try HostTopology.read(sysfsRoot: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/devices/system/cpu/cpu0/topology", withIntermediateDirectories: true)
        try "0\n".write(toFile: dir + "/devices/system/cpu/online", atomically: true, encoding: .utf8)
        try "x\n".write(toFile: dir + "/devices/system/cpu/cpu0/topology/physical_package_id", atomically: true, encoding: .utf8)
        do {
            _ = try HostTopology.read(sysfsRoot: dir)
            Issue.record("a malformed package id was accepted")
        } catch {
            #expect(error.description.contains("cpu0/topology/physical_package_id"))
        }
        #expect(throws: (any Error).self) { try SchedulerConfiguration.parse(pcpus: "host", pools: [], sysfsRoot: dir) }
    }

    /// The pool hands the topology to every policy instance it makes.
    @Test func thePoolTellsItsPolicyTheTopology() throws {
        final class Recording: SchedulerPolicy {
            var seen: [PoolTopology] = []
            var name: String { "rec" }
            var origin: String { "test" }
            var isFallback: Bool { false }
            func addVCPU(_ vcpu: Int32, vm: Int32, params: SchedulerParams) throws {}
            func removeVCPU(_ vcpu: Int32) {}
            func wake(_ vcpu: Int32, now: UInt64) {}
            func block(_ vcpu: Int32, now: UInt64) {}
            func yield(_ vcpu: Int32, now: UInt64) {}
            func pickNext(pcpu: UInt32, now: UInt64) -> SchedulerPick { .idle }
            func account(_ vcpu: Int32, ranNanoseconds: UInt64) {}
            func setParams(_ vcpu: Int32, params: SchedulerParams) throws {}
            func setTopology(_ topology: PoolTopology) { seen.append(topology) }
            func dump() -> String? { nil }
            func shutdown() {}
        }
        var config = try SchedulerConfiguration.parse(pcpus: "host", pools: [], sysfsRoot: Self.fixture)
        config.hostTopology = try HostTopology.read(sysfsRoot: Self.fixture)
        config.pools = [.init(name: "p", slots: [0, 1, 2], policy: "rec")]
        let rec = Recording()
        let source = SchedulerPolicySource(name: "rec", plugin: ("test", "/dev/null")) { _, _ in rec }
        let s = try Scheduler(configuration: config, resolvePolicy: { _ in source }, logger: Logger(label: "test"))
        defer { s.stop() }
        #expect(rec.seen.count == 1)
        #expect(rec.seen.first?.slots.map(\.hostCPU) == [0, 4, 1])
        #expect(rec.seen.first?.slots.map(\.smtSiblings) == [0b10, 0b1, 0])
    }
}
