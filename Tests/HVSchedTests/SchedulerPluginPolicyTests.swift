import Foundation
import Logging
import PluginABI
import Testing
@testable import HVPluginHost
@testable import HVSched
import HVSupport

/// A C scheduler policy compiled at test time against the real header, one library per
/// misbehaviour (`-DBAD=n`): the pool must validate its picks and fall back.
enum SchedulerTestPolicies {
    /// The ABI headers, from this file's location (Tests/<target>/<file>).
    static let includeDir: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path + "/Sources/PluginABI/include"
    }()

    struct BuildError: Error, CustomStringConvertible {
        let description: String
    }

    static let source = #"""
        #define _POSIX_C_SOURCE 200809L
        #include "hvplugin.h"
        #include <time.h>
        #include <stdlib.h>
        #include <string.h>

        #ifndef BAD
        #define BAD 0
        #endif
        /* 1 unknown vCPU, 2 blocked vCPU, 3 ignores affinity, 4 zero slice, 5 10 s slice,
           6 always the lowest runnable id (starves the others), 7 ignores "running". */

        typedef struct { int32_t id, vm; hv_sched_params prm; int runnable, on; uint64_t ran; } tv;
        struct hv_sched_policy { uint32_t n; tv v[64]; uint32_t nv; int32_t cur[64]; uint32_t next; int32_t last_blocked; };

        static tv *find(hv_sched_policy *p, int32_t id) {
            for (uint32_t i = 0; i < p->nv; i++) if (p->v[i].id == id) return &p->v[i];
            return NULL;
        }
        static int t_init(hv_sched_policy **out, uint32_t n) {
        #ifdef INIT_FAIL
            (void)out; (void)n; return HV_ENOMEM;
        #else
            hv_sched_policy *p = calloc(1, sizeof *p);
            if (!p) return HV_ENOMEM;
            p->n = n; p->last_blocked = -1;
            for (int i = 0; i < 64; i++) p->cur[i] = -1;
            *out = p; return HV_OK;
        #endif
        }
        static void t_deinit(hv_sched_policy *p) { free(p); }
        static int t_add(hv_sched_policy *p, int32_t id, int32_t vm, const hv_sched_params *x) {
            if (p->nv == 64 || find(p, id)) return HV_EINVAL;
            tv *v = &p->v[p->nv++]; memset(v, 0, sizeof *v);
            v->id = id; v->vm = vm; v->prm = *x; v->on = -1; return HV_OK;
        }
        static void t_remove(hv_sched_policy *p, int32_t id) {
            tv *v = find(p, id); if (!v) return;
            if (v->on >= 0) p->cur[v->on] = -1;
            *v = p->v[--p->nv];
        }
        static void t_wake(hv_sched_policy *p, int32_t id, uint64_t now) { (void)now; tv *v = find(p, id); if (v) v->runnable = 1; }
        static void t_block(hv_sched_policy *p, int32_t id, uint64_t now) {
            (void)now; tv *v = find(p, id); if (!v) return;
            v->runnable = 0; if (v->on >= 0) p->cur[v->on] = -1; v->on = -1; p->last_blocked = id;
        }
        static void t_yield(hv_sched_policy *p, int32_t id, uint64_t now) {
            (void)now; tv *v = find(p, id); if (v && v->on >= 0) { p->cur[v->on] = -1; v->on = -1; }
        }
        static int allowed(const tv *v, uint32_t pcpu) { return v->prm.affinity == 0 || ((v->prm.affinity >> pcpu) & 1); }
        static void t_pick(hv_sched_policy *p, uint32_t pcpu, uint64_t now, hv_sched_pick *out) {
            (void)now;
        #ifdef HANG_AFTER
            /* From the (HANG_AFTER+1)-th pick on: never return (HANG_LOOP) or sleep 10 s. */
            static int picks;
            if (++picks > HANG_AFTER) {
        #ifdef HANG_LOOP
                for (volatile int spin = 1; spin;) {}
        #else
                struct timespec ten = { 10, 0 };
                nanosleep(&ten, NULL);
        #endif
            }
        #endif
            if (p->cur[pcpu] >= 0) { tv *o = find(p, p->cur[pcpu]); if (o) o->on = -1; p->cur[pcpu] = -1; }
            out->vcpu = -1; out->slice_ns = 0;
            if (BAD == 1 && p->nv > 0) { out->vcpu = 999; out->slice_ns = 5000000; return; }
            if (BAD == 2 && p->last_blocked >= 0) { out->vcpu = p->last_blocked; out->slice_ns = 5000000; return; }
            tv *pick = NULL;
            for (uint32_t k = 0; k < p->nv; k++) {
                uint32_t i = (BAD == 6) ? k : (p->next + k) % p->nv;
                tv *c = &p->v[i];
                if (!c->runnable) continue;
                if (BAD != 7 && c->on >= 0) continue;
                if (BAD != 3 && !allowed(c, pcpu)) continue;
                if (BAD == 6 && pick && pick->id < c->id) continue;
                if (BAD == 6) { if (!pick || c->id < pick->id) pick = c; continue; }
                pick = c; p->next = (i + 1) % p->nv; break;
            }
            if (!pick) return;
            pick->on = (int)pcpu; p->cur[pcpu] = pick->id;
            out->vcpu = pick->id;
            out->slice_ns = BAD == 4 ? 0 : BAD == 5 ? 10000000000ull : 5000000;
        }
        static void t_account(hv_sched_policy *p, int32_t id, uint64_t ran) {
            tv *v = find(p, id); if (v) v->ran += ran;
        #ifdef HANG_ACCOUNT
            /* The 3rd account call sleeps 10 s: a posted call that overruns. */
            static int accounts;
            if (++accounts == 3) { struct timespec ten = { 10, 0 }; nanosleep(&ten, NULL); }
        #endif
        }
        static int t_params(hv_sched_policy *p, int32_t id, const hv_sched_params *x) {
        #ifdef REFUSE_PARAMS
            (void)p; (void)id; (void)x; return HV_EINVAL;
        #else
            tv *v = find(p, id); if (!v) return HV_ENOENT; v->prm = *x; return HV_OK;
        #endif
        }
        static void t_dump(hv_sched_policy *p, char *buf, size_t len) {
            (void)p; if (len) { strncpy(buf, "testpol dump", len - 1); buf[len - 1] = 0; }
        }
        /* PREEMPT: asks to preempt slot 0 after every wake. OPS_V1: the table's struct_size
           is the v1 size, so the host must not see the preempt op set beyond it. */
        #ifdef PREEMPT
        static uint64_t t_preempt(hv_sched_policy *p, uint64_t now) { (void)p; (void)now; return 1; }
        #endif
        #ifdef OPS_V1
        #define OPS_SIZE offsetof(hv_sched_ops, preempt)
        #else
        #define OPS_SIZE sizeof(hv_sched_ops)
        #endif
        static const hv_sched_ops ops = {
            .struct_size = OPS_SIZE, .init = t_init, .deinit = t_deinit, .vcpu_add = t_add,
            .vcpu_remove = t_remove, .wake = t_wake, .block = t_block, .yield = t_yield, .pick_next = t_pick,
            .account = t_account, .set_params = t_params, .dump = t_dump,
        #ifdef PREEMPT
            .preempt = t_preempt,
        #endif
        };
        static const hv_sched_policy_desc desc = {
            .struct_size = sizeof(hv_sched_policy_desc), .name = POLICY_NAME, .description = "test policy", .ops = &ops,
        };
        static const hv_sched_policy_desc *const list[] = { &desc };
        static const hv_sched_factory factory = { sizeof(hv_sched_factory), HV_ABI_VERSION, 1, 0, list };
        static const void *get_factory(const char *id) { return strcmp(id, HV_FACTORY_SCHED_POLICY) == 0 ? &factory : NULL; }
        static const char *const ids[] = { HV_FACTORY_SCHED_POLICY, NULL };
        static const hv_plugin_entry entry = {
            .struct_size = sizeof(hv_plugin_entry), .abi_version = HV_ABI_VERSION, .id = "org.test.sched." POLICY_NAME,
            .name = "Scheduler Test Policy", .version = "1.0", .get_factory = get_factory, .factory_ids = ids,
        };
        const hv_plugin_entry *hv_plugin_entry_v1(void) { return &entry; }
        """#

    /// Variant → extra -D flags.
    static let variants: [String: [String]] = [
        "good": [],
        "unknown": ["-DBAD=1"],
        "blocked": ["-DBAD=2"],
        "affinity": ["-DBAD=3"],
        "zeroslice": ["-DBAD=4"],
        "hugeslice": ["-DBAD=5"],
        "starve": ["-DBAD=6"],
        "doublerun": ["-DBAD=7"],
        "refuseparams": ["-DREFUSE_PARAMS"],
        "initfail": ["-DINIT_FAIL"],
        "preempt": ["-DPREEMPT"],
        "preemptv1": ["-DPREEMPT", "-DOPS_V1"],
        "loop": ["-DHANG_AFTER=3", "-DHANG_LOOP"],
        "sleep": ["-DHANG_AFTER=3"],
        "hangaccount": ["-DHANG_ACCOUNT"],
    ]

    static let built: Result<[String: String], BuildError> = {
        let dir = NSTemporaryDirectory() + "hv-sched-pool-tests-\(getpid())"  // not the simulator fixtures' directory: both run in one process
        try? FileManager.default.removeItem(atPath: dir)
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try source.write(toFile: dir + "/testpol.c", atomically: true, encoding: .utf8)
        } catch {
            return .failure(.init(description: "cannot write \(dir): \(error)"))
        }
        var running: [(String, Process, Pipe)] = []
        for (name, flags) in variants {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/cc")
            p.arguments = ["-std=c99", "-Wall", "-Werror", "-shared", "-fPIC", "-I", includeDir,
                           "-DPOLICY_NAME=\"testpol-\(name)\""] + flags + [dir + "/testpol.c", "-o", dir + "/libtestpol-\(name).so"]
            let pipe = Pipe()
            p.standardOutput = pipe
            p.standardError = pipe
            do { try p.run() } catch { return .failure(.init(description: "cannot run cc: \(error)")) }
            running.append((name, p, pipe))
        }
        var libs: [String: String] = [:]
        var failures: [String] = []
        for (name, p, pipe) in running {
            let out = pipe.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            if p.terminationStatus != 0 { failures.append("\(name): \(String(decoding: out, as: UTF8.self))") }
            libs[name] = dir + "/libtestpol-\(name).so"
        }
        return failures.isEmpty ? .success(libs) : .failure(.init(description: "cc failed:\n" + failures.joined(separator: "\n")))
    }()

    /// Loads a variant and returns the source for its policy.
    static func source(_ variant: String) throws -> SchedulerPolicySource {
        let path = try built.get()[variant]!
        let plugin = try PluginLoader().load(path: path)
        let policy = try #require(plugin.schedPolicies.first)
        return .plugin(name: policy.name, pluginName: plugin.name, pluginPath: path, desc: policy.pointer)
    }
}

@Suite struct SchedulerPluginPolicyTests {
    @Test func goodPluginPolicyRunsVCPUsInTurn() throws {
        let policy = try SchedulerTestPolicies.source("good").instantiate(pcpuCount: 1)
        let rig = SchedulerPoolRig(policy: policy)
        try rig.join(1); try rig.join(2)
        #expect(rig.holder() == 1)
        var seen: [Int32] = []
        for _ in 0..<6 {
            rig.runSlice(5_000_000)
            seen.append(try #require(rig.holder()))
        }
        #expect(seen.filter { $0 == 1 }.count == 3 && seen.filter { $0 == 2 }.count == 3, "\(seen)")
        #expect(!rig.pool.isUsingFallback)
        #expect(rig.pool.snapshot().policyDump == "testpol dump")
    }

    /// `preempt` is read from a table whose struct_size covers it, and treated as NULL
    /// beyond a v1 table's struct_size even when the memory there holds a pointer.
    @Test(arguments: [("preempt", true), ("preemptv1", false)])
    func preemptOpIsUsedOnlyWhenStructSizeCoversIt(variant: String, used: Bool) throws {
        let policy = try SchedulerTestPolicies.source(variant).instantiate(pcpuCount: 1)
        #expect((policy as? SchedulerPluginPolicy)?.hasPreempt == used)
        let rig = SchedulerPoolRig(slots: 1, policy: policy)
        try rig.join(1)
        #expect(rig.kicks[1, default: 0] == 0, "nothing to preempt when slot 0 was free")
        rig.clock.advance(by: 1_000_000)
        try rig.join(2)                                     // add + wake: preempt is asked
        #expect(rig.kicks[1, default: 0] == (used ? 1 : 0))
        if used {
            rig.pool.endSlice(rig[1], ranNanoseconds: 1_000_000)
            let c = rig.pool.snapshot().counters
            #expect(c.wakePreemptions == 1 && c.preemptions == 1, "the slot is re-decided before the slice end")
        } else {
            #expect(rig.state(1) == .running(0))
        }
        #expect(!rig.pool.isUsingFallback)
    }

    /// Each misbehaviour: the pool logs a line naming the policy, the plugin and what it
    /// did, switches to the fallback and every vCPU keeps being scheduled.
    @Test(arguments: [
        ("unknown", "returned vCPU 999 from pick_next(pcpu 0), which is not in this pool"),
        ("blocked", "but it is blocked"),
        ("affinity", "which its affinity 0x2 does not allow"),
        ("zeroslice", "with a slice of 0 ns"),
        ("hugeslice", "with a slice of 10000000000 ns"),
        ("doublerun", "but it is running on pcpu"),
    ])
    func misbehavingPolicyIsReplacedByTheFallback(variant: String, expected: String) throws {
        let policy = try SchedulerTestPolicies.source(variant).instantiate(pcpuCount: 2)
        let rig = SchedulerPoolRig(slots: 2, policy: policy)
        // vCPU 1 may only run on slot 1, so "affinity" trips on slot 0 at once.
        try rig.join(1, affinity: variant == "affinity" ? 0b10 : 0)
        try rig.join(2)
        try rig.join(3)
        if variant == "blocked" {
            let running = try #require(rig.holder(0) ?? rig.holder(1))
            rig.pool.block(rig[running], ranNanoseconds: 1_000_000)     // the freed slot is re-decided
        }
        for _ in 0..<3 where !rig.pool.isUsingFallback { rig.runSlice(5_000_000) }
        #expect(rig.pool.isUsingFallback, "\(variant) was not caught")
        let log = rig.pool.fallbackLog.joined(separator: "\n")
        #expect(log.contains("pool 'test': scheduler policy 'testpol-\(variant)' from plugin 'Scheduler Test Policy'"), "\(log)")
        #expect(log.contains(expected), "\(log)")
        #expect(log.contains("switched to the built-in fallback policy"))
        // Everyone runnable gets a turn under the fallback.
        var ran = Set<Int32>()
        for _ in 0..<8 {
            for s in 0..<2 { if let h = rig.holder(s) { ran.insert(h) } }
            rig.runSlice()
        }
        let runnable = Set(([1, 2, 3] as [Int32]).filter { rig.state($0) != .blocked })
        #expect(runnable.isSubset(of: ran), "ran \(ran), runnable \(runnable)")
    }

    /// A `pick_next` that never returns (or sleeps 10 s) holds the pool for the call
    /// deadline only: the call is abandoned on the policy's thread, the pool switches to
    /// the fallback and both vCPUs keep being scheduled.
    @Test(arguments: ["loop", "sleep"])
    func policyCallPastItsDeadlineIsAbandonedForTheFallback(variant: String) throws {
        let policy = try SchedulerTestPolicies.source(variant).instantiate(pcpuCount: 1, callDeadline: 100_000_000)
        let rig = SchedulerPoolRig(policy: policy)
        try rig.join(1); try rig.join(2)                // pick 1 (slot 0 was free)
        rig.runSlice(); rig.runSlice()                  // picks 2 and 3
        #expect(!rig.pool.isUsingFallback)
        let started = VMClock.hostNanoseconds()
        rig.runSlice()                                  // pick 4 hangs
        let took = VMClock.hostNanoseconds() - started
        #expect(took < 2_000_000_000, "the pool waited \(took / 1_000_000) ms for the stuck call")
        #expect(rig.pool.isUsingFallback)
        let log = rig.pool.fallbackLog.joined()
        #expect(log.contains("scheduler policy 'testpol-\(variant)' from plugin 'Scheduler Test Policy'"), "\(log)")
        #expect(log.contains("did not return from pick_next(pcpu 0) within 100 ms (its thread is abandoned)"), "\(log)")
        #expect(DeadlineCallThread.abandonedCalls.contains { $0.contains("pick_next(pcpu 0) of scheduler policy 'testpol-\(variant)'") })
        var holders = Set<Int32>()
        for _ in 0..<4 { rig.runSlice(); holders.insert(try #require(rig.holder())) }
        #expect(holders == [1, 2])
    }

    /// An `account` (posted, not waited for) that sleeps is caught at the next decision:
    /// the pool names it and switches to the fallback within the deadline.
    @Test func aPostedCallPastItsDeadlineIsNamedAndAbandoned() throws {
        let policy = try SchedulerTestPolicies.source("hangaccount").instantiate(pcpuCount: 1, callDeadline: 100_000_000)
        let rig = SchedulerPoolRig(policy: policy)
        try rig.join(1); try rig.join(2)
        let started = VMClock.hostNanoseconds()
        for _ in 0..<6 where !rig.pool.isUsingFallback { rig.runSlice() }
        #expect(VMClock.hostNanoseconds() - started < 2_000_000_000)
        #expect(rig.pool.isUsingFallback)
        let log = rig.pool.fallbackLog.joined()
        #expect(log.contains("did not return from account("), "\(log)")
        var holders = Set<Int32>()
        for _ in 0..<4 { rig.runSlice(); holders.insert(try #require(rig.holder())) }
        #expect(holders == [1, 2])
    }

    /// The deadline does not trip on a policy that answers: 500 decisions on its thread.
    @Test func policyCallsUnderADeadlineKeepTheirPolicy() throws {
        let policy = try SchedulerTestPolicies.source("good").instantiate(pcpuCount: 1, callDeadline: 250_000_000)
        let rig = SchedulerPoolRig(policy: policy)
        try rig.join(1); try rig.join(2)
        var holders: [Int32] = []
        for _ in 0..<500 { rig.runSlice(); holders.append(try #require(rig.holder())) }
        #expect(!rig.pool.isUsingFallback, "\(rig.pool.fallbackLog)")
        #expect(Set(holders) == [1, 2])
        #expect(rig.pool.snapshot().policyDump == "testpol dump")
    }

    @Test func starvationPastTheWatchdogSwitchesToTheFallback() throws {
        let policy = try SchedulerTestPolicies.source("starve").instantiate(pcpuCount: 1)
        let rig = SchedulerPoolRig(policy: policy, watchdog: 500_000_000)
        try rig.join(1); try rig.join(2)
        for _ in 0..<40 {                       // 400 ms: within the watchdog
            rig.runSlice()
            #expect(rig.holder() == 1)
        }
        #expect(!rig.pool.isUsingFallback)
        for _ in 0..<25 { rig.runSlice() }      // past 500 ms (checked every 100 ms)
        #expect(rig.pool.isUsingFallback)
        let log = rig.pool.fallbackLog.joined()
        #expect(log.contains("'testpol-starve' from plugin 'Scheduler Test Policy'"), "\(log)")
        #expect(log.contains("left runnable vCPU 2 (VM 'vm2' vCPU 0) without a pCPU for"), "\(log)")
        var holders = Set<Int32>()
        for _ in 0..<4 { rig.runSlice(); holders.insert(rig.holder()!) }
        #expect(holders == [1, 2])
    }

    @Test func aCappedVCPUWaitingLongerIsNotStarvation() throws {
        let policy = try SchedulerTestPolicies.source("starve").instantiate(pcpuCount: 1)
        let rig = SchedulerPoolRig(policy: policy, watchdog: 500_000_000)
        try rig.join(1)
        try rig.join(2, maxPercent: 25)         // may legitimately wait 4× the watchdog
        for _ in 0..<150 { rig.runSlice() }     // 1.5 s
        #expect(!rig.pool.isUsingFallback)
        for _ in 0..<70 { rig.runSlice() }      // 2.2 s > 4 × 500 ms
        #expect(rig.pool.isUsingFallback)
    }

    @Test func anIdlePolicyWithNothingRunnableIsNotStarvation() throws {
        let policy = try SchedulerTestPolicies.source("good").instantiate(pcpuCount: 1)
        let rig = SchedulerPoolRig(policy: policy, watchdog: 100_000_000)
        let m = try rig.join(1)
        rig.pool.block(m, ranNanoseconds: 1000)
        for _ in 0..<50 { rig.runSlice() }
        #expect(!rig.pool.isUsingFallback)
        #expect(rig.holder() == nil)
        rig.pool.wake(m)
        #expect(rig.holder() == 1)
    }

    @Test func policySwapDrainsOldGrantsAndKeepsEveryVCPU() throws {
        let rig = SchedulerPoolRig(slots: 2)
        try rig.join(1); try rig.join(2); try rig.join(3)
        #expect(rig.holder(0) != nil && rig.holder(1) != nil)
        let before = rig.kicks.values.reduce(0, +)
        try rig.pool.replacePolicy(with: SchedulerTestPolicies.source("good"))
        #expect(rig.pool.policyName == "testpol-good")
        // Both holders were told to give their slots back; nothing is decided until they do.
        #expect(rig.kicks.values.reduce(0, +) == before + 2)
        let h0 = try #require(rig.holder(0)), h1 = try #require(rig.holder(1))
        #expect(rig[h0].flagged && rig[h1].flagged)
        rig.pool.endSlice(rig[h0], ranNanoseconds: 100)
        #expect(rig.holder(0) == nil, "no decision while slot 1 drains")
        rig.pool.endSlice(rig[h1], ranNanoseconds: 100)
        #expect(rig.holder(0) != nil && rig.holder(1) != nil)
        var ran = Set<Int32>()
        for _ in 0..<6 { rig.runSlice(5_000_000); ran.formUnion([rig.holder(0), rig.holder(1)].compactMap { $0 }) }
        #expect(ran == [1, 2, 3])
        #expect(!rig.pool.isUsingFallback)
        // And back to the built-in one.
        try rig.pool.replacePolicy(with: .fallback)
        #expect(rig.pool.policyName == "fallback")
    }

    @Test func aPolicyThatFailsToInitIsRefusedAndTheOldOneStays() throws {
        let rig = SchedulerPoolRig()
        try rig.join(1)
        #expect(throws: SchedulerPolicyError.self) {
            try rig.pool.replacePolicy(with: SchedulerTestPolicies.source("initfail"))
        }
        #expect(rig.pool.policyName == "fallback")
        #expect(rig.holder() == 1)
    }

    @Test func setParamsReachesThePolicyAndARefusalChangesNothing() throws {
        let refuse = try SchedulerTestPolicies.source("refuseparams").instantiate(pcpuCount: 1)
        let rig = SchedulerPoolRig(policy: refuse)
        let m = try rig.join(1)
        var p = m.params
        p.shares = 4000
        #expect(throws: SchedulerPolicyError.self) { try rig.pool.setParams(m, p) }
        #expect(rig.pool.locked { m.params.shares } == 1000)
        try rig.pool.replacePolicy(with: SchedulerTestPolicies.source("good"))
        try rig.pool.setParams(m, p)
        #expect(rig.pool.locked { m.params.shares } == 4000)
    }
}
