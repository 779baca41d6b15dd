import Foundation
import HVKernel
import HVPluginHost
import HVSched
import XCTest

/// Real VMs under the CPU scheduler on one pCPU slot (`--pcpus 1`): shares, min, max,
/// re-division at power-off, policy swaps at run time, the fallback replacing a bad
/// policy, and a 2-vCPU guest. The `burn` guest prints `burn: <units>` at every RTC
/// second change; its RTC follows the host's wall clock, so the lines of all VMs mark
/// the same wall-clock seconds and progress is compared over the same window.
final class SchedulingTests: XCTestCase {
    // MARK: Shares, min, max

    func testSharesDivideOneSlotOneToTwoToOne() throws {
        let env = try SchedulingEnv.require(policies: ["propshare"])
        let shares = ["a": "1000", "b": "2000", "c": "1000"]
        let vms = shares.keys.sorted().map { env.burn("share-\($0)", ["sched.cpu.shares": shares[$0]!]) }
        var rates: [String: Double] = [:]
        var top = ""
        let r = env.run(["--pcpus", "1", "--pool", "default:0:propshare"], vms) { run in
            try run.waitForBurnLines(["share-a", "share-b", "share-c"])
            top = HostHarness.hvhostRun(["top", "--socket", run.socket, "--interval", "0.5", "--count", "1"], timeout: 20).stdout
            rates = try run.burnRates(["share-a", "share-b", "share-c"], seconds: 10)
        }
        XCTAssertEqual(r.status, 0, r.stderr)
        let a = try XCTUnwrap(rates["share-a"]), b = try XCTUnwrap(rates["share-b"]), c = try XCTUnwrap(rates["share-c"])
        let total = a + b + c
        print("1:2:1 on one slot: units/s a \(a) b \(b) c \(c); fractions \(a / total) \(b / total) \(c / total)")
        for (name, got, want) in [("a", a / total, 0.25), ("b", b / total, 0.5), ("c", c / total, 0.25)] {
            XCTAssertLessThanOrEqual(abs(got - want) / want, 0.03, "share-\(name) got \(got) of the progress, want \(want) ± 3 %")
        }
        XCTAssertTrue(top.contains("share-b") && top.contains("50.0"), "hvhost top shows entitlements:\n\(top)")
    }

    func testReservationGetsItsMinimumUnderContention() throws {
        let env = try SchedulingEnv.require(policies: ["propshare"])
        let vms = [env.burn("min-a", ["sched.cpu.min": "50"]), env.burn("min-b"), env.burn("min-c")]
        var rates: [String: Double] = [:]
        var cpu: [String: Double] = [:]
        let r = env.run(["--pcpus", "1", "--pool", "default:0:propshare"], vms) { run in
            try run.waitForBurnLines(["min-a", "min-b", "min-c"])
            let before = try run.stats()
            rates = try run.burnRates(["min-a", "min-b", "min-c"], seconds: 4)
            cpu = try run.cpuPercent(since: before)
        }
        XCTAssertEqual(r.status, 0, r.stderr)
        let total = rates.values.reduce(0, +)
        let a = try XCTUnwrap(rates["min-a"]) / total
        let cpuShare = try XCTUnwrap(cpu["min-a"]) / cpu.values.reduce(0, +)
        print("min 50 % among three normal VMs: progress fraction \(a), CPU fraction \(cpuShare), %USED \(cpu)")
        XCTAssertGreaterThanOrEqual(a, 0.495, "min-a made \(a) of the progress; its reservation is 50 %")
        XCTAssertGreaterThanOrEqual(cpuShare, 0.495, "min-a used \(cpuShare) of the CPU time")
    }

    func testLimitCapsAVMOnAnIdleHost() throws {
        let env = try SchedulingEnv.require(policies: ["propshare"])
        let vm = env.burn("max-a", ["sched.cpu.max": "25"])
        var used: Double = -1, ran: Double = -1
        let r = env.run(["--pcpus", "1", "--pool", "default:0:propshare"], [vm]) { run in
            try run.waitForBurnLines(["max-a"])
            let before = try run.stats()
            Thread.sleep(forTimeInterval: 3)
            used = try XCTUnwrap(run.cpuPercent(since: before)["max-a"])
            ran = try XCTUnwrap(run.runPercent(since: before)["max-a"])
        }
        XCTAssertEqual(r.status, 0, r.stderr)
        print("max 25 % alone on one slot: %USED \(used), %RUN \(ran)")
        XCTAssertLessThanOrEqual(used, 26.5, "a VM limited to 25 % used \(used) % of an otherwise idle pCPU")
        // Wall time holding the slot also counts each slice's preemption latency, and
        // grows when the host's cores are busy (the policy accounts CPU time), so only
        // a sanity bound here.
        XCTAssertLessThanOrEqual(ran, 35, "a VM limited to 25 % held the pCPU \(ran) % of the time")
        XCTAssertGreaterThanOrEqual(ran, 20, "the limited VM still runs (\(ran) %)")
    }

    // MARK: Dynamic re-division, tuning and policy swaps

    func testPoweringOneVMOffReDividesWithinASecond() throws {
        let env = try SchedulingEnv.require(policies: [])
        let pool = env.has("propshare") ? "default:0:propshare" : "default:0"
        let vms = ["a", "b", "c"].map { env.burn("div-\($0)") }
        var before: [String: Double] = [:], after: [String: Double] = [:]
        var leftWithin: Double = -1
        var entitlements: [String: Double] = [:]
        let r = env.run(["--pcpus", "1", "--pool", pool], vms) { run in
            try run.waitForBurnLines(["div-a", "div-b", "div-c"])
            let s0 = try run.stats()
            Thread.sleep(forTimeInterval: 1)
            before = try run.runPercent(since: s0)
            let off = Date()
            XCTAssertTrue(try run.console("poweroff div-c").contains("powering off"))
            // The vCPU leaves its pool as soon as its thread stops.
            while try run.stats().keys.contains("div-c") && Date().timeIntervalSince(off) < 2 {
                Thread.sleep(forTimeInterval: 0.01)
            }
            leftWithin = Date().timeIntervalSince(off)
            let s1 = try run.stats()
            Thread.sleep(forTimeInterval: max(0.2, 1 - leftWithin))
            after = try run.runPercent(since: s1)
            entitlements = try run.stats().mapValues(\.entitlement)
        }
        XCTAssertEqual(r.status, 0, r.stderr)
        print("re-division: before \(before), after \(after) (c left after \(leftWithin) s), entitlements \(entitlements)")
        XCTAssertLessThan(leftWithin, 1, "div-c's vCPU left the pool \(leftWithin) s after poweroff")
        for vm in ["div-a", "div-b"] {
            let b = try XCTUnwrap(before[vm]), a = try XCTUnwrap(after[vm])
            XCTAssertEqual(b, 33.3, accuracy: 5, "\(vm): %RUN \(b) among three equal VMs")
            XCTAssertEqual(a, 50, accuracy: 5, "\(vm): %RUN \(b) → \(a) within a second of powering div-c off")
            XCTAssertEqual(try XCTUnwrap(entitlements[vm]), 50, accuracy: 0.1)
        }
    }

    func testSwappingPoliciesAndTuningWhileVMsRun() throws {
        let env = try SchedulingEnv.require(policies: ["propshare", "roundrobin"])
        let vms = ["a", "b", "c"].map { env.burn("swap-\($0)") }
        var phases: [(String, [String: Double])] = []
        var replies: [String] = []
        var finalStats: [String: SchedulingRun.VCPU] = [:]
        let r = env.run(["--pcpus", "1", "--pool", "default:0:propshare"], vms) { run in
            try run.waitForBurnLines(["swap-a", "swap-b", "swap-c"])
            for policy in ["roundrobin", "fallback", "propshare"] {
                replies.append(try run.console("sched policy default \(policy)"))
                let s = try run.stats()
                Thread.sleep(forTimeInterval: 0.7)
                phases.append((policy, try run.runPercent(since: s)))
            }
            replies.append(try run.console("sched set swap-b shares=high min=10 max=90"))
            replies.append(try run.console("sched pools"))
            Thread.sleep(forTimeInterval: 0.3)
            finalStats = try run.stats()
            replies.append(try run.console("vms"))
        }
        XCTAssertEqual(r.status, 0, r.stderr)
        let text = replies.joined(separator: "\n")
        print(text)
        XCTAssertTrue(text.contains("now running policy 'roundrobin'"), text)
        XCTAssertTrue(text.contains("now running policy 'fallback' (built in)"), text)
        XCTAssertTrue(text.contains("now running policy 'propshare'"), text)
        XCTAssertTrue(text.contains("swap-b: shares=2000 min=10% max=90% per vCPU"), text)
        XCTAssertEqual(text.components(separatedBy: "\trunning").count - 1, 3, "every VM still runs:\n\(text)")
        for (policy, used) in phases {
            for vm in ["swap-a", "swap-b", "swap-c"] {
                XCTAssertGreaterThan(used[vm] ?? 0, 20, "\(vm) held the pCPU under \(policy): \(used)")
            }
        }
        XCTAssertEqual(finalStats["swap-b"]?.shares, 2000)
        XCTAssertEqual(finalStats["swap-b"]?.entitlement ?? 0, 50, accuracy: 0.1)
        XCTAssertTrue(r.stderr.contains("scheduler policy 'propshare'") && r.stderr.contains("replaced by 'roundrobin'"), r.stderr)
        XCTAssertFalse(r.stderr.contains("switched to the built-in fallback"), r.stderr)
    }

    // MARK: Misbehaving policies

    func testBadPoliciesAreReplacedByTheFallbackAndVMsKeepRunning() throws {
        let env = try SchedulingEnv.require(policies: [])
        let plugin = try SchedulingEnv.buildBadPolicies()
        let vms = [env.burn("bad-u1", ["hv.sched.pool": "p1"], seconds: 3), env.burn("bad-u2", ["hv.sched.pool": "p1"], seconds: 3),
                   env.burn("bad-s1", ["hv.sched.pool": "p2"], seconds: 3), env.burn("bad-s2", ["hv.sched.pool": "p2"], seconds: 3)]
        var pools = ""
        let r = env.run(["--plugin-path", plugin, "--pcpus", "2", "--pool", "p1:0:bad-unknown", "--pool", "p2:1:bad-starve",
                         "--sched-watchdog-ms", "300"], vms, powerOff: false) { run in
            try run.waitForBurnLines(["bad-u1", "bad-u2", "bad-s1", "bad-s2"])
            pools = try run.console("sched pools")
        }
        XCTAssertEqual(r.status, 0, "every VM finished its run:\n\(r.stderr)")
        XCTAssertTrue(r.stderr.contains("pool 'p1': scheduler policy 'bad-unknown' from plugin 'Scheduling Test Policies' ("), r.stderr)
        XCTAssertTrue(r.stderr.contains("returned vCPU 4242 from pick_next(pcpu 0), which is not in this pool; switched to the built-in fallback policy"), r.stderr)
        XCTAssertTrue(r.stderr.contains("pool 'p2': scheduler policy 'bad-starve' from plugin 'Scheduling Test Policies' ("), r.stderr)
        XCTAssertTrue(r.stderr.contains("without a pCPU for"), r.stderr)
        XCTAssertTrue(pools.contains("p1\t0\tany\tfallback") && pools.contains("p2\t1\tany\tfallback"), pools)
        for vm in ["bad-u1", "bad-u2", "bad-s1", "bad-s2"] {
            XCTAssertTrue(env.log(vm).contains("burn: done"), "\(vm): \(env.log(vm))")
        }
    }

    /// A policy whose pick_next never returns (bad-loop, stopped from the console) or
    /// sleeps 10 s (bad-sleep, stopped by SIGTERM): the pool waits out one call deadline,
    /// switches to the fallback, both the culprit pool's VM and the other pool's VM keep
    /// burning, and hvhost stops in bounded time naming the abandoned call.
    func testStuckPolicyCallsAreAbandonedAndTheHostStillStops() throws {
        let env = try SchedulingEnv.require(policies: [])
        let plugin = try SchedulingEnv.buildBadPolicies()
        for policy in ["bad-loop", "bad-sleep"] {
            let vms = [env.burn("\(policy)-vm", ["hv.sched.pool": "p1"]), env.burn("\(policy)-other", ["hv.sched.pool": "p2"])]
            let names = ["\(policy)-vm", "\(policy)-other"]
            var stopRequested = Date.distantFuture
            let r = env.run(["--plugin-path", plugin, "--pcpus", "2", "--pool", "p1:0:\(policy)", "--pool", "p2:1",
                             "--sched-call-deadline-ms", "200"], vms, powerOff: policy == "bad-loop") { run in
                try run.waitForBurnLines(names)
                let deadline = Date().addingTimeInterval(20)
                while !(try run.console("sched pools")).contains("p1\t0\tany\tfallback") {
                    guard Date() < deadline else { throw FixtureBuildError(message: "pool p1 never switched to the fallback") }
                    Thread.sleep(forTimeInterval: 0.1)
                }
                let before = names.map { run.units($0) ?? 0 }
                let progress = Date().addingTimeInterval(20)
                while zip(names, before).contains(where: { (run.units($0) ?? 0) <= $1 }) {
                    guard Date() < progress else { throw FixtureBuildError(message: "burn counters stopped: \(before) → \(names.map { run.units($0) ?? 0 })") }
                    Thread.sleep(forTimeInterval: 0.1)
                }
                stopRequested = Date()
                if policy == "bad-sleep" { kill(run.pid, SIGTERM) }
            }
            XCTAssertFalse(r.timedOut, r.stderr)
            XCTAssertLessThan(Date().timeIntervalSince(stopRequested), 15, "\(policy): hvhost took too long to stop")
            XCTAssertEqual(r.status, 0, "\(policy): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains("pool 'p1': scheduler policy '\(policy)' from plugin 'Scheduling Test Policies' ("), r.stderr)
            XCTAssertTrue(r.stderr.contains("did not return from pick_next(pcpu 0) within 200 ms (its thread is abandoned); switched to the built-in fallback policy"), r.stderr)
            XCTAssertTrue(r.stderr.contains("exiting with an abandoned plugin call: pick_next(pcpu 0) of scheduler policy '\(policy)'"), r.stderr)
        }
    }

    // MARK: vSMP

    func testTwoVCPUGuestStartsItsAPAndPassesOnTwoSlotsAndOnOne() throws {
        let env = try SchedulingEnv.require(policies: [], guest: "smp")
        let two = HostHarness.vmx("smp-two", guest: "smp", extra: ["numvcpus": "2", "hv.sched.pool": "two",
                                                                    "hv.serial": "file:\(env.dir)/smp-two.log"])
        let one = HostHarness.vmx("smp-one", guest: "smp", extra: ["numvcpus": "2", "hv.sched.pool": "one",
                                                                    "hv.serial": "file:\(env.dir)/smp-one.log"])
        try? FileManager.default.removeItem(atPath: "\(env.dir)/smp-two.log")
        try? FileManager.default.removeItem(atPath: "\(env.dir)/smp-one.log")
        let r = HostHarness.hvhostRun(["run", "--pcpus", "3", "--pool", "two:0-1", "--pool", "one:2", two, one], timeout: 60)
        XCTAssertFalse(r.timedOut, r.stderr)
        XCTAssertEqual(r.status, 0, r.stderr)
        for name in ["smp-two", "smp-one"] {
            let log = env.log(name)
            XCTAssertTrue(log.contains("online") && log.contains("smp: 2 CPUs, ipi ok"), "\(name):\n\(log)")
            XCTAssertTrue(r.stderr.contains("\(name): guest exit code 0"), r.stderr)
        }
    }

    /// Both co-scheduling modes run a real 2-vCPU guest (AP start-up, shared counter, IPIs).
    func testCoschedulingPoliciesRunATwoVCPUGuest() throws {
        let env = try SchedulingEnv.require(policies: ["cosched-strict", "cosched-relaxed"], guest: "smp")
        for policy in ["cosched-strict", "cosched-relaxed"] {
            let name = "smp-\(policy)"
            let vmx = HostHarness.vmx(name, guest: "smp", extra: ["numvcpus": "2", "hv.serial": "file:\(env.dir)/\(name).log"])
            try? FileManager.default.removeItem(atPath: "\(env.dir)/\(name).log")
            let r = HostHarness.hvhostRun(["run", "--pcpus", "2", "--pool", "default:0-1:\(policy)"] + env.pluginArgs + [vmx], timeout: 60)
            XCTAssertEqual(r.status, 1, r.stderr)
            XCTAssertTrue(env.log(name).contains("smp: 2 CPUs, ipi ok, counter 40000"), env.log(name))
            XCTAssertFalse(r.stderr.contains("fallback"), "the policy itself scheduled the VM:\n\(r.stderr)")
        }
    }
}

// MARK: - Harness

/// What the scheduling tests need: KVM, hvhost, the burn guest, and the named policy
/// plugins on hvhost's search path (skips visibly otherwise).
struct SchedulingEnv {
    let dir: String
    let pluginArgs: [String]
    let available: Set<String>

    func has(_ policy: String) -> Bool { available.contains(policy) }

    static func require(policies: [String], guest: String = "burn") throws -> SchedulingEnv {
        try HostHarness.requireHost()
        guard FileManager.default.fileExists(atPath: HostHarness.guest(guest)) else {
            throw XCTSkip("the \(guest) guest is not built yet (guests/\(guest)); scheduling test skipped")
        }
        // hvhost finds plugins next to itself; the harness builds the rest.
        let hvhostDir = (HostHarness.hvhost as NSString).deletingLastPathComponent
        var dirs = [hvhostDir, HostHarness.pluginDir]
        dirs = dirs.filter { FileManager.default.fileExists(atPath: $0) }
        let catalog = PluginCatalog(searchPath: PluginSearchPath(directories: dirs))
        let names = Set(catalog.schedPolicyNames)
        let missing = policies.filter { !names.contains($0) }
        guard missing.isEmpty else {
            throw XCTSkip("scheduler policy plugin(s) \(missing.joined(separator: ", ")) not built yet (searched \(dirs.joined(separator: ", "))); scheduling test skipped")
        }
        let dir = HostHarness.workDir + "/sched"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        // hvhost searches its own directory anyway: pass only the others.
        let extra = dirs.filter { dir in dir != hvhostDir && catalog.plugins.contains { $0.path.hasPrefix(dir + "/") } }
        return SchedulingEnv(dir: dir, pluginArgs: extra.flatMap { ["--plugin-path", $0] }, available: names)
    }

    /// A burn VM (64 MiB) logging to `<dir>/<name>.log`; runs until powered off unless
    /// `seconds` is given.
    func burn(_ name: String, _ extra: [String: String] = [:], seconds: Int = 0) -> String {
        try? FileManager.default.removeItem(atPath: "\(dir)/\(name).log")
        var lines = ["hv.serial": "file:\(dir)/\(name).log", "hv.cmdline": "seconds=\(seconds)"]
        lines.merge(extra) { $1 }
        return HostHarness.vmx(name, guest: "burn", extra: lines)
    }

    func log(_ name: String) -> String { (try? String(contentsOfFile: "\(dir)/\(name).log", encoding: .utf8)) ?? "" }

    /// Runs hvhost with a console, calls `body` while it runs, then powers every VM off
    /// (unless `powerOff` is false: the VMs end by themselves).
    func run(_ args: [String], _ vmx: [String], powerOff: Bool = true,
             _ body: @escaping (SchedulingRun) throws -> Void) -> HostHarness.Result {
        let socket = dir + "/console-\(UUID().uuidString.prefix(8)).sock"
        return HostHarness.hvhostRun(["run", "--console", socket] + pluginArgs + args + vmx, timeout: 90) { p in
            let run = SchedulingRun(env: self, socket: socket, pid: p.processIdentifier)
            for _ in 0..<300 where !FileManager.default.fileExists(atPath: socket) { usleep(10_000) }
            do { try body(run) } catch { XCTFail("\(error)") }
            if powerOff {
                for name in (try? run.stats().keys.sorted()) ?? [] { _ = try? run.console("poweroff \(name)") }
            }
        }
    }

    /// A C plugin with bad policies: `bad-unknown` (round robin that returns vCPU 4242
    /// from its 50th pick on), `bad-starve` (always the lowest runnable id), `bad-loop`
    /// and `bad-sleep` (round robin whose 50th pick_next never returns / sleeps 10 s).
    static func buildBadPolicies() throws -> String {
        let dir = HostHarness.workDir + "/sched-bad"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let source = #"""
            #define _POSIX_C_SOURCE 200809L
            #include "hvplugin.h"
            #include <stdlib.h>
            #include <string.h>
            #include <time.h>
            typedef struct { int32_t id; int runnable, on; } bv;
            struct hv_sched_policy { int starve, hang; bv v[64]; uint32_t nv, next; int32_t cur[64]; uint64_t picks; };
            static bv *find(hv_sched_policy *p, int32_t id) {
                for (uint32_t i = 0; i < p->nv; i++) if (p->v[i].id == id) return &p->v[i];
                return NULL;
            }
            static int init_common(hv_sched_policy **out, int starve) {
                hv_sched_policy *p = calloc(1, sizeof *p); if (!p) return HV_ENOMEM;
                p->starve = starve; for (int i = 0; i < 64; i++) p->cur[i] = -1; *out = p; return HV_OK;
            }
            static int init_unknown(hv_sched_policy **o, uint32_t n) { (void)n; return init_common(o, 0); }
            static int init_starve(hv_sched_policy **o, uint32_t n) { (void)n; return init_common(o, 1); }
            static int init_loop(hv_sched_policy **o, uint32_t n) { (void)n; int rc = init_common(o, 0); if (rc == HV_OK) (*o)->hang = 1; return rc; }
            static int init_sleep(hv_sched_policy **o, uint32_t n) { (void)n; int rc = init_common(o, 0); if (rc == HV_OK) (*o)->hang = 2; return rc; }
            static void fini(hv_sched_policy *p) { free(p); }
            static int add(hv_sched_policy *p, int32_t id, int32_t vm, const hv_sched_params *x) {
                (void)vm; (void)x; if (p->nv == 64) return HV_ENOSPC;
                p->v[p->nv].id = id; p->v[p->nv].runnable = 0; p->v[p->nv].on = -1; p->nv++; return HV_OK;
            }
            static void rm(hv_sched_policy *p, int32_t id) {
                bv *v = find(p, id); if (!v) return; if (v->on >= 0) p->cur[v->on] = -1; *v = p->v[--p->nv];
            }
            static void wake(hv_sched_policy *p, int32_t id, uint64_t t) { (void)t; bv *v = find(p, id); if (v) v->runnable = 1; }
            static void block(hv_sched_policy *p, int32_t id, uint64_t t) {
                (void)t; bv *v = find(p, id); if (!v) return; v->runnable = 0; if (v->on >= 0) p->cur[v->on] = -1; v->on = -1;
            }
            static void pick(hv_sched_policy *p, uint32_t pcpu, uint64_t t, hv_sched_pick *out) {
                (void)t;
                if (p->cur[pcpu] >= 0) { bv *o = find(p, p->cur[pcpu]); if (o) o->on = -1; p->cur[pcpu] = -1; }
                out->vcpu = -1; out->slice_ns = 5000000;
                if (p->hang == 1 && ++p->picks >= 50) for (volatile int spin = 1; spin;) {}
                if (p->hang == 2 && ++p->picks >= 50) { struct timespec ten = { 10, 0 }; nanosleep(&ten, NULL); }
                if (!p->starve && !p->hang && ++p->picks >= 50) { out->vcpu = 4242; return; }
                bv *best = NULL;
                for (uint32_t k = 0; k < p->nv; k++) {
                    bv *c = &p->v[p->starve ? k : (p->next + k) % p->nv];
                    if (!c->runnable || c->on >= 0) continue;
                    if (p->starve) { if (!best || c->id < best->id) best = c; continue; }
                    best = c; p->next = (p->next + k + 1) % p->nv; break;
                }
                if (!best) { out->slice_ns = 0; return; }
                best->on = (int)pcpu; p->cur[pcpu] = best->id; out->vcpu = best->id;
            }
            static void account(hv_sched_policy *p, int32_t id, uint64_t r) { (void)p; (void)id; (void)r; }
            static int params(hv_sched_policy *p, int32_t id, const hv_sched_params *x) { (void)p; (void)id; (void)x; return HV_OK; }
            static const hv_sched_ops ops_unknown = { sizeof(hv_sched_ops), init_unknown, fini, add, rm, wake, block, NULL, pick, account, params, NULL };
            static const hv_sched_ops ops_starve = { sizeof(hv_sched_ops), init_starve, fini, add, rm, wake, block, NULL, pick, account, params, NULL };
            static const hv_sched_ops ops_loop = { sizeof(hv_sched_ops), init_loop, fini, add, rm, wake, block, NULL, pick, account, params, NULL };
            static const hv_sched_ops ops_sleep = { sizeof(hv_sched_ops), init_sleep, fini, add, rm, wake, block, NULL, pick, account, params, NULL };
            static const hv_sched_policy_desc d_loop = { sizeof(hv_sched_policy_desc), 0, "bad-loop", "pick_next never returns from its 50th call on", &ops_loop };
            static const hv_sched_policy_desc d_sleep = { sizeof(hv_sched_policy_desc), 0, "bad-sleep", "pick_next sleeps 10 s from its 50th call on", &ops_sleep };
            static const hv_sched_policy_desc d_unknown = { sizeof(hv_sched_policy_desc), 0, "bad-unknown", "returns an unknown vCPU", &ops_unknown };
            static const hv_sched_policy_desc d_starve = { sizeof(hv_sched_policy_desc), 0, "bad-starve", "starves all but one vCPU", &ops_starve };
            static const hv_sched_policy_desc *const list[] = { &d_unknown, &d_starve, &d_loop, &d_sleep };
            static const hv_sched_factory factory = { sizeof(hv_sched_factory), HV_ABI_VERSION, 4, 0, list };
            static const void *get_factory(const char *id) { return strcmp(id, HV_FACTORY_SCHED_POLICY) == 0 ? &factory : NULL; }
            static const char *const ids[] = { HV_FACTORY_SCHED_POLICY, NULL };
            static const hv_plugin_entry entry = { sizeof(hv_plugin_entry), HV_ABI_VERSION, "org.test.sched.bad",
                "Scheduling Test Policies", "1.0", NULL, NULL, NULL, get_factory, ids };
            const hv_plugin_entry *hv_plugin_entry_v1(void) { return &entry; }
            """#
        try source.write(toFile: dir + "/badpolicies.c", atomically: true, encoding: .utf8)
        let r = HostHarness.run("/usr/bin/cc", ["-std=c99", "-Wall", "-Werror", "-shared", "-fPIC",
                                                "-I", HostHarness.repoRoot + "/Sources/PluginABI/include",
                                                "-o", dir + "/libbadpolicies.so", dir + "/badpolicies.c"], timeout: 60)
        guard r.status == 0 else { throw FixtureBuildError(message: "cc badpolicies.c failed: \(r.stderr)") }
        return dir
    }
}

/// A running hvhost: its console and its VMs' serial logs.
struct SchedulingRun {
    let env: SchedulingEnv
    let socket: String
    let pid: Int32

    struct VCPU {
        var time: Double
        var cpu: Double
        var run: Double
        var ready: Double
        var entitlement: Double
        var shares: Double
    }

    func console(_ line: String) throws -> String { try ServiceConsole.request(line, at: socket) }

    /// `sched stats raw` summed per VM (cumulative ns; entitlement in percent).
    func stats() throws -> [String: VCPU] {
        var out: [String: VCPU] = [:]
        for row in VCPUStats.parseRaw(try console("sched stats raw")) {
            guard let vm = row.fields["vm"] else { continue }
            var v = out[vm] ?? VCPU(time: 0, cpu: 0, run: 0, ready: 0, entitlement: 0, shares: 0)
            v.time = row.number("time") ?? 0
            v.cpu += row.number("cpu") ?? 0
            v.run += row.number("run") ?? 0
            v.ready += row.number("ready") ?? 0
            v.entitlement += row.number("ent") ?? 0
            v.shares += row.number("shares") ?? 0
            out[vm] = v
        }
        return out
    }

    /// Each VM's vCPU-thread CPU time (%USED) since `before`, percent of the wall time.
    func cpuPercent(since before: [String: VCPU]) throws -> [String: Double] {
        try percent(\.cpu, since: before)
    }

    /// Each VM's time holding a pCPU slot (%RUN) since `before`, percent of the wall time:
    /// what the policy gave it, whatever else the host's cores were doing.
    func runPercent(since before: [String: VCPU]) throws -> [String: Double] {
        try percent(\.run, since: before)
    }

    private func percent(_ key: KeyPath<VCPU, Double>, since before: [String: VCPU]) throws -> [String: Double] {
        var out: [String: Double] = [:]
        for (vm, now) in try stats() {
            guard let then = before[vm], now.time > then.time else { continue }
            out[vm] = (now[keyPath: key] - then[keyPath: key]) / (now.time - then.time) * 100
        }
        return out
    }

    /// The last `burn: <units>` count each log shows.
    func units(_ vm: String) -> Double? {
        env.log(vm).split(separator: "\n").reversed().lazy.compactMap { line -> Double? in
            guard line.hasPrefix("burn: "), let n = Double(line.dropFirst(6)) else { return nil }
            return n
        }.first
    }

    func waitForBurnLines(_ vms: [String], timeout: TimeInterval = 20) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while vms.contains(where: { units($0) == nil }) {
            guard Date() < deadline else {
                throw FixtureBuildError(message: "no burn progress from \(vms.filter { units($0) == nil }) after \(timeout) s")
            }
            Thread.sleep(forTimeInterval: 0.1)
        }
    }

    /// Units per second of each VM over `seconds` whole wall-clock seconds: the counts
    /// printed at two RTC second changes `seconds` apart (read 0.4 s after each change,
    /// when every VM has had its turn to notice it).
    func burnRates(_ vms: [String], seconds: Int) throws -> [String: Double] {
        func sleepToSecondPlus(_ offset: Double) {
            var ts = timespec()
            clock_gettime(CLOCK_REALTIME, &ts)
            let frac = Double(ts.tv_nsec) / 1e9
            Thread.sleep(forTimeInterval: (1 - frac) + offset)
        }
        sleepToSecondPlus(0.4)
        let start = vms.map { units($0) }
        for _ in 0..<seconds { sleepToSecondPlus(0.4) }
        var out: [String: Double] = [:]
        for (vm, u0) in zip(vms, start) {
            guard let u0, let u1 = units(vm) else { continue }
            out[vm] = (u1 - u0) / Double(seconds)
        }
        return out
    }
}
