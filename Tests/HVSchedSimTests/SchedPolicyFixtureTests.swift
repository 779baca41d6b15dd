import Foundation
import PluginABI
import Testing
@testable import HVPluginHost
@testable import HVSched
@testable import HVSchedSim

/// The scheduler-policy plugins of Plugins/SchedPolicies, compiled once per test process
/// with the host `cc` (C99, -Wall -Wextra -Werror, nothing but hvplugin.h) into a
/// temporary directory and loaded through the real catalog, so the tests exercise the
/// sources as they are and the ABI exactly as hvhost uses it.
enum SchedPolicyFixtures {
    static let repoRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    static let pluginsDir = repoRoot + "/Plugins/SchedPolicies"
    static let scenariosDir = pluginsDir + "/scenarios"

    struct FixtureError: Error, CustomStringConvertible { let description: String }

    /// name → source, relative to Plugins/SchedPolicies.
    static let sources = [
        "SchedPropShare": "PropShare/propshare.c",
        "SchedRoundRobin": "RoundRobin/roundrobin.c",
        "SchedCosched": "Cosched/cosched.c",
    ]

    static let built: Result<PluginCatalog, FixtureError> = build()

    static func catalog() throws -> PluginCatalog { try built.get() }

    private static func build() -> Result<PluginCatalog, FixtureError> {
        // Directories left by test processes that no longer run.
        let tmp = NSTemporaryDirectory(), prefix = "hv-sched-tests-"
        for name in (try? FileManager.default.contentsOfDirectory(atPath: tmp)) ?? [] where name.hasPrefix(prefix) {
            guard let pid = Int32(name.dropFirst(prefix.count)), pid != getpid() else { continue }
            if kill(pid, 0) != 0, errno == ESRCH { try? FileManager.default.removeItem(atPath: tmp + name) }
        }
        let dir = tmp + prefix + "\(getpid())"
        try? FileManager.default.removeItem(atPath: dir)
        do { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) } catch {
            return .failure(FixtureError(description: "cannot create \(dir): \(error)"))
        }
        var jobs: [(String, Process, Pipe)] = []
        for (name, src) in sources.sorted(by: { $0.key < $1.key }) {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/cc")
            p.arguments = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC",
                           "-I", repoRoot + "/Sources/PluginABI/include", pluginsDir + "/" + src,
                           "-o", dir + "/lib\(name).so"]
            let pipe = Pipe()
            p.standardOutput = pipe
            p.standardError = pipe
            do { try p.run() } catch { return .failure(FixtureError(description: "cannot run cc: \(error)")) }
            jobs.append((name, p, pipe))
        }
        var failures: [String] = []
        for (name, p, pipe) in jobs {
            let out = pipe.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            if p.terminationStatus != 0 { failures.append("\(name): \(String(decoding: out, as: UTF8.self))") }
        }
        guard failures.isEmpty else { return .failure(FixtureError(description: failures.joined(separator: "\n"))) }
        let catalog = PluginCatalog(searchPath: PluginSearchPath(directories: [dir]))
        guard catalog.failures.isEmpty else {
            return .failure(FixtureError(description: catalog.failures.map(\.description).joined(separator: "\n")))
        }
        return .success(catalog)
    }

    /// A fresh instance of `name` for `pcpus` pCPUs.
    static func policy(_ name: String, pcpus: Int) throws -> SchedulerPolicy {
        try SchedSimulator.loadPolicy(named: name, pcpus: pcpus, resolve: catalog().schedulerPolicySource(named:))
    }

    /// Parses `text` and simulates it with `policy` (default: the scenario's, else propshare).
    static func simulate(_ text: String, policy: String? = nil, seed: UInt64 = 1, name: String = "test.sched")
        throws -> SchedSimResult
    {
        let scenario = try SchedSimScenario.parse(text, name: name)
        return try simulate(scenario, policy: policy, seed: seed)
    }

    static func simulate(_ scenario: SchedSimScenario, policy: String? = nil, seed: UInt64 = 1) throws -> SchedSimResult {
        let instance = try self.policy(policy ?? scenario.policy ?? "propshare", pcpus: scenario.pcpus)
        return try SchedSimulator(scenario: scenario, policy: instance, seed: seed).run()
    }

    /// A ready-made scenario from Plugins/SchedPolicies/scenarios.
    static func scenario(_ file: String) throws -> SchedSimScenario {
        try SchedSimFiles.loadScenario(scenariosDir + "/" + file)
    }

    static func vm(_ r: SchedSimResult, _ name: String) -> SchedSimResult.VMSummary {
        r.vms.first { $0.name == name }!
    }

    /// Window rows of VM `name` whose window ends in (from, to] seconds.
    static func windows(_ r: SchedSimResult, _ name: String, from: Double, to: Double) -> [SchedSimResult.WindowRow] {
        let vi = r.scenario.vms.firstIndex { $0.name == name }!
        return r.windows.filter { $0.vm == vi && Double($0.end) / 1e9 > from && Double($0.end) / 1e9 <= to }
    }
}

@Suite struct SchedPolicyFixtureTests {
    @Test func pluginsOfferEveryPolicyByName() throws {
        let catalog = try SchedPolicyFixtures.catalog()
        #expect(catalog.schedPolicyNames == ["cosched-relaxed", "cosched-strict", "propshare", "roundrobin"])
        #expect(catalog.conflicts.isEmpty)
        for name in catalog.schedPolicyNames {
            #expect(name.allSatisfy { ($0 >= "a" && $0 <= "z") || ($0 >= "0" && $0 <= "9") || $0 == "-" || $0 == "_" })
            let info = try catalog.schedPolicyInfo(named: name)
            #expect(info.policy.description?.isEmpty == false)
            #expect(info.policy.ops.pointee.yield != nil && info.policy.ops.pointee.dump != nil)
        }
        // One library offers both co-scheduling modes.
        #expect(try catalog.schedPolicyInfo(named: "cosched-strict").plugin.path
                == catalog.schedPolicyInfo(named: "cosched-relaxed").plugin.path)
    }

    @Test func everyPolicyRefusesBadParametersAndDuplicates() throws {
        for name in ["propshare", "roundrobin", "cosched-strict", "cosched-relaxed"] {
            let p = try SchedPolicyFixtures.policy(name, pcpus: 2)
            defer { p.shutdown() }
            #expect(throws: SchedulerPolicyError.self) { try p.addVCPU(1, vm: 1, params: SchedulerParams(shares: 0)) }
            #expect(throws: SchedulerPolicyError.self) {
                try p.addVCPU(1, vm: 1, params: SchedulerParams(minPercent: 60, maxPercent: 50))
            }
            try p.addVCPU(1, vm: 1, params: SchedulerParams())
            #expect(throws: SchedulerPolicyError.self) { try p.addVCPU(1, vm: 1, params: SchedulerParams()) }
            #expect(throws: SchedulerPolicyError.self) { try p.setParams(99, params: SchedulerParams()) }
            #expect(p.dump()?.isEmpty == false)
        }
    }

    @Test func addedVCPUsWaitForWakeAndBlockedOnesAreNeverPicked() throws {
        for name in ["propshare", "roundrobin", "cosched-strict", "cosched-relaxed"] {
            let p = try SchedPolicyFixtures.policy(name, pcpus: 1)
            defer { p.shutdown() }
            try p.addVCPU(7, vm: 1, params: SchedulerParams())
            #expect(p.pickNext(pcpu: 0, now: 0).vcpu == -1, "\(name) picked a vCPU before its wake")
            p.wake(7, now: 0)
            let pick = p.pickNext(pcpu: 0, now: 0)
            #expect(pick.vcpu == 7)
            #expect(SchedSimulator.validSlices.contains(pick.sliceNanoseconds))
            p.account(7, ranNanoseconds: 1_000_000)
            p.block(7, now: 1_000_000)
            #expect(p.pickNext(pcpu: 0, now: 1_000_000).vcpu == -1, "\(name) picked a blocked vCPU")
            // A pCPU outside the pool is never given anything.
            p.wake(7, now: 2_000_000)
            #expect(p.pickNext(pcpu: 5, now: 2_000_000).vcpu == -1)
        }
    }

    @Test func coschedRefusesAThirdVCPU() throws {
        let p = try SchedPolicyFixtures.policy("cosched-strict", pcpus: 4)
        defer { p.shutdown() }
        try p.addVCPU(1, vm: 9, params: SchedulerParams())
        try p.addVCPU(2, vm: 9, params: SchedulerParams())
        #expect(throws: SchedulerPolicyError.self) { try p.addVCPU(3, vm: 9, params: SchedulerParams()) }
    }

    @Test func readyMadeScenariosAllRunCleanly() throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: SchedPolicyFixtures.scenariosDir)
            .filter { $0.hasSuffix(".sched") }.sorted()
        #expect(files.count >= 8)
        for f in files {
            let r = try SchedPolicyFixtures.simulate(try SchedPolicyFixtures.scenario(f))
            #expect(r.counters.invalidPicks == 0, "\(f): \(r.problems)")
            #expect(r.counters.affinityViolations == 0, "\(f)")
            #expect(r.counters.htViolationNs == 0, "\(f)")
        }
    }
}
