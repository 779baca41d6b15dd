import Foundation
import HVSched
import XCTest

/// The plugin author's kit against a running host: declared keys in `validate`, typed
/// commands through libffi on the service console (`device`, `sched tune`, `sched cmd`).
final class PluginKitTests: XCTestCase {
    /// A typo'd key under a device's prefix warns with file:line and the declared key; a
    /// bad value for a declared key is a problem; the edu model declares its keys.
    func testValidateChecksDeviceKeysAgainstTheModelsDeclarations() throws {
        try HostHarness.requireHost()
        let path = HostHarness.workDir + "/declared-keys.vmx"
        try """
            displayName = "keys"
            memsize = "64"
            hv.kernel = "\(HostHarness.guest("hello"))"
            hv.device0.present = "TRUE"
            hv.device0.model = "edu"
            hv.device0.computeDelayUs = "20"
            hv.device0.dmaMaks = "0xffff"
            sched.cpu.sharez = "high"

            """.write(toFile: path, atomically: true, encoding: .utf8)
        let ok = HostHarness.hvhostRun(["validate", "--plugin-path", HostHarness.pluginDir, path])
        XCTAssertEqual(ok.status, 0, "undeclared keys only warn: \(ok.stderr)")
        XCTAssertTrue(ok.stderr.contains("\(path):7: hv.device0.dmaMaks: warning: model 'edu' declares no key 'dmaMaks'; did you mean 'hv.device0.dmaMask'?"), ok.stderr)
        XCTAssertTrue(ok.stderr.contains("\(path):8: sched.cpu.sharez: warning: the VMkernel reads no key 'sched.cpu.sharez'; did you mean 'sched.cpu.shares'?"), ok.stderr)
        XCTAssertFalse(ok.stderr.contains("computeDelayUs"), "a declared key with a good value is quiet: \(ok.stderr)")

        try (String(contentsOfFile: path, encoding: .utf8) + "hv.device0.dmaDelayUs = \"20000000\"\n")
            .write(toFile: path, atomically: true, encoding: .utf8)
        let bad = HostHarness.hvhostRun(["validate", "--plugin-path", HostHarness.pluginDir, path])
        XCTAssertEqual(bad.status, 2, bad.stderr)
        XCTAssertTrue(bad.stderr.contains("\(path):9: hv.device0.dmaDelayUs = \"20000000\": 20000000 is out of range, expected an unsigned integer from 0 to 10000000 (declared by model 'edu')"), bad.stderr)

        let keys = HostHarness.hvhostRun(["plugins", "--plugin-path", HostHarness.pluginDir, "--keys", "edu"])
        XCTAssertEqual(keys.status, 0, keys.stderr)
        XCTAssertTrue(keys.stdout.contains("hv.deviceN.computeDelayUs  uint 0..10000000  default \"10\""), keys.stdout)
        XCTAssertTrue(keys.stdout.contains("read(offset: uint32) -> uint32"), keys.stdout)
    }

    /// Every argument and result type reaches the plugin through libffi and comes back
    /// typed; wrong counts and types are refused with the signature and never reach it
    /// (the plugin counts the calls that did).
    func testDeviceCommandsCarryEveryArgumentTypeAndRefuseBadWords() throws {
        let env = try SchedulingEnv.require(policies: ["propshare"])
        let dir = HostHarness.workDir + "/argprobe-plugins"
        _ = try HostHarness.buildFixturePlugin("argprobe.c", into: dir)
        let vmx = env.burn("cmds", ["hv.device0.present": "TRUE", "hv.device0.model": "argprobe",
                                    "hv.device1.present": "TRUE", "hv.device1.model": "edu",
                                    "ethernet0.present": "TRUE"])
        var replies: [String: String] = [:]
        let commands = [
            "ints -128 -32768 -2147483648 -9000000000000000000",
            "uints 255 65535 4294967295 18446744073709551615",
            "mix 1.25 yes hello", "mix -0.5 off x",
            "i8 -128", "u8 255", "i16 -32768", "u16 65535", "u32 0xffffffff", "not false",
            // refusals
            "i8 128", "u8 -1", "u16 65536", "ints 1 2", "mix 1 maybe s", "mix nan true s", "not", "nope",
            "reg",
        ]
        let r = env.run(["--pcpus", "1", "--pool", "default:0:propshare", "--plugin-path", dir], [vmx]) { run in
            try run.waitForBurnLines(["cmds"])
            for c in commands { replies[c] = try run.console("device cmds hv.device0 " + c) }
            for c in ["hv.device1 regs", "hv.device1 read 0", "ethernet0 csr 88", "ethernet0 counters", "hv.device9 regs"] {
                replies[c] = try run.console("device cmds " + c)
            }
        }
        XCTAssertEqual(r.status, 0, r.stderr)
        let expect: [String: String] = [
            "ints -128 -32768 -2147483648 -9000000000000000000": "= -9000000002147516544",
            "uints 255 65535 4294967295 18446744073709551615": "= \(UInt64(255) &+ 65535 &+ 4294967295 &+ UInt64.max)",
            "mix 1.25 yes hello": "s=hello flag=1 len=4096\n= 2.5",
            "mix -0.5 off x": "s=x flag=0 len=4096\n= -1.0",
            "i8 -128": "= 127", "u8 255": "= 0", "i16 -32768": "= 32767", "u16 65535": "= 0",
            "u32 0xffffffff": "= 0", "not false": "= true",
            "i8 128": "error: i8: '128' is not a valid int8 for arg0; usage: i8(arg0: int8) -> int8",
            "u8 -1": "error: u8: '-1' is not a valid uint8 for arg0; usage: u8(arg0: uint8) -> uint8",
            "u16 65536": "error: u16: '65536' is not a valid uint16 for arg0; usage: u16(arg0: uint16) -> uint16",
            "ints 1 2": "error: ints takes 4 arguments, got 2; usage: ints(arg0: int8, arg1: int16, arg2: int32, arg3: int64) -> int64",
            "mix 1 maybe s": "error: mix: 'maybe' is not a valid bool for flag; usage: mix(x: double, flag: bool, s: string) -> double + text",
            "mix nan true s": "error: mix: 'nan' is not a valid double for x; usage: mix(x: double, flag: bool, s: string) -> double + text",
            "not": "error: not takes 1 argument, got 0; usage: not(arg0: bool) -> bool",
            // Four calls reached the plugin's counting commands (ints, uints, mix twice).
            "reg": "reg 0x0 calls 4",
            "hv.device1 read 0": "= 16777453",   // edu's ID register, 0x010000ed
            "ethernet0 csr 88": "= \(0x1003)",    // PCnet-PCI II chip id, low half
        ]
        for (command, reply) in expect {
            XCTAssertEqual(replies[command]?.trimmingCharacters(in: .newlines), reply, command)
        }
        XCTAssertTrue(replies["nope"]?.hasPrefix("error: hv.device0 (argprobe) has no command 'nope'; commands: ints(") ?? false)
        XCTAssertTrue(replies["hv.device1 regs"]?.hasPrefix("id 0x010000ed liveness 0x00000000") ?? false, replies["hv.device1 regs"] ?? "")
        XCTAssertTrue(replies["ethernet0 counters"]?.hasPrefix("framesSent 0 framesReceived 0") ?? false, replies["ethernet0 counters"] ?? "")
        XCTAssertTrue(replies["hv.device9 regs"]?.hasPrefix("error: cmds has no device 'hv.device9'") ?? false)
    }

    /// `sched tune` sets propshare's quantum while two CPU-bound VMs share one pCPU: the
    /// slice length the host measures follows it, both as slot time per grant
    /// (`sched stats raw`) and as the time between the pool's scheduling decisions
    /// (`sched pools`; propshare's slices end on the quantum's grid, so this one holds
    /// even when a loaded host is late to preempt). Values outside the declared range, of
    /// the wrong type, or that the policy refuses are reported and change nothing.
    func testPropShareQuantumTunedLiveChangesTheMeasuredSlice() throws {
        let env = try SchedulingEnv.require(policies: ["propshare"])
        let vms = [env.burn("tune-a"), env.burn("tune-b")]
        var slices: [(perGrant: Double, perDecision: Double)] = []
        var replies: [String] = []
        let r = env.run(["--pcpus", "1", "--pool", "default:0:propshare"], vms) { run in
            try run.waitForBurnLines(["tune-a", "tune-b"])
            func decisions() throws -> Double {
                let row = try run.console("sched pools").split(separator: "\n").first { $0.hasPrefix("default\t") }
                let fields = row.map { $0.split(separator: "\t", omittingEmptySubsequences: false) } ?? []
                return fields.count > 8 ? Double(fields[8]) ?? 0 : 0
            }
            func slice(over seconds: Double) throws -> (Double, Double) {
                let before = try VCPUStats.parseRaw(run.console("sched stats raw")), d0 = try decisions()
                Thread.sleep(forTimeInterval: seconds)
                let after = try VCPUStats.parseRaw(run.console("sched stats raw")), d1 = try decisions()
                func total(_ rows: [VCPUStats.RawRow], _ key: String) -> Double { rows.compactMap { $0.number(key) }.reduce(0, +) }
                let grants = total(after, "grants") - total(before, "grants")
                let wall = (after.first?.number("time") ?? 0) - (before.first?.number("time") ?? 0)
                return (grants > 0 ? (total(after, "run") - total(before, "run")) / grants / 1e6 : 0,
                        d1 > d0 ? wall / (d1 - d0) / 1e6 : 0)
            }
            slices.append(try slice(over: 2))
            for line in ["sched tune default quantum_ms 50", "sched tune default quantum_ms 2000",
                         "sched tune default quantum_ms 7", "sched tune default quantum_ms ten",
                         "sched tune default quantom_ms 5", "sched tune default"] {
                replies.append(try run.console(line).trimmingCharacters(in: .newlines))
            }
            Thread.sleep(forTimeInterval: 0.2)
            slices.append(try slice(over: 2))
            replies.append(try run.console("sched cmd default state").trimmingCharacters(in: .newlines))
        }
        XCTAssertEqual(r.status, 0, r.stderr)
        print("measured slice (ms, per grant / per decision): \(slices)\n" + replies.joined(separator: "\n"))
        XCTAssertEqual(replies[0], "quantum_ms = 50")
        XCTAssertEqual(replies[1], "error: quantum_ms = 2000: 2000 is out of range, expected an unsigned integer from 1 to 1000")
        XCTAssertTrue(replies[2].hasPrefix("error: scheduler policy 'propshare' refused quantum_ms = 7: HV_EINVAL (-22)"), replies[2])
        XCTAssertEqual(replies[3], "error: quantum_ms = ten: not an unsigned integer, expected an unsigned integer from 1 to 1000")
        XCTAssertTrue(replies[4].hasPrefix("error: scheduler policy 'propshare' has no tunable 'quantom_ms'; did you mean 'quantum_ms'?"), replies[4])
        XCTAssertTrue(replies[5].contains("tunable quantum_ms (uint 1..1000, default 10)"), replies[5])
        XCTAssertTrue(replies[6].contains("quantum 50 ms"), replies[6])
        XCTAssertEqual(slices.count, 2)
        guard slices.count == 2 else { return }
        // Decisions come at the grid points, 10 ms then 50 ms apart (a host too loaded to
        // preempt in time skips a grid point now and then, never adds one).
        XCTAssertGreaterThanOrEqual(slices[0].perDecision, 8, "quantum 10 ms")
        XCTAssertLessThan(slices[0].perDecision, 25, "quantum 10 ms")
        XCTAssertGreaterThanOrEqual(slices[1].perDecision, 40, "after quantum_ms 50")
        XCTAssertGreaterThan(slices[1].perDecision, slices[0].perDecision * 2)
        // Slot time per grant: at least one quantum (more when the same vCPU is picked
        // again or a loaded host preempts late).
        XCTAssertGreaterThanOrEqual(slices[0].perGrant, 9)
        XCTAssertGreaterThanOrEqual(slices[1].perGrant, 45)
        XCTAssertGreaterThan(slices[1].perGrant, slices[0].perGrant)
    }
}

final class PluginCheckTests: XCTestCase {
    struct Check: Decodable { let subject: String; let rule: String; let status: String; let detail: String }
    struct Report: Decodable { let path: String; let passed: Bool; let checks: [Check] }

    static func check(_ library: String, _ extra: [String] = []) throws -> (status: Int32, report: Report) {
        let r = HostHarness.hvhostRun(["plugin-check", "--json", library] + extra, timeout: 300)
        XCTAssertFalse(r.timedOut, "plugin-check \(library) timed out")
        let report = try JSONDecoder().decode(Report.self, from: Data(r.stdout.utf8))
        return (r.status, report)
    }

    /// Runs plugin-check on shipped libraries and expects every rule to pass.
    private func expectPass(_ libraries: [String], policy: Bool) throws {
        try HostHarness.requireHost()
        for library in libraries {
            guard FileManager.default.fileExists(atPath: library) else { XCTFail("\(library) is not built"); continue }
            let (status, report) = try Self.check(library)
            let failed = report.checks.filter { $0.status == "fail" }
            XCTAssertEqual(status, 0, "\(library): \(failed.map { "\($0.subject) \($0.rule): \($0.detail)" })")
            XCTAssertTrue(report.passed)
            let ran = Set(report.checks.map(\.rule))
            if policy {
                XCTAssertEqual(ran, ["entry", "declarations", "lifecycle-leak", "sched-sim"], library)
            } else {
                XCTAssertEqual(ran, ["entry", "create", "declarations", "reset", "save-load", "lifecycle-leak", "fuzz", "thread-contract"], library)
                XCTAssertTrue(report.checks.contains { $0.rule == "lifecycle-leak" && $0.detail.hasPrefix("1000 create/realize/reset/destroy cycles") })
            }
        }
    }

    private var hvhostDir: String { (HostHarness.hvhost as NSString).deletingLastPathComponent }

    func testEduPassesEveryRule() throws { try expectPass([HostHarness.pluginDir + "/libedu.so"], policy: false) }

    func testVlancePassesEveryRule() throws { try expectPass([hvhostDir + "/libVlance.so"], policy: false) }

    func testVmxnetPassesEveryRule() throws { try expectPass([hvhostDir + "/libVmxnet.so"], policy: false) }

    func testLSILogicPassesEveryRule() throws { try expectPass([hvhostDir + "/libLSILogic.so"], policy: false) }

    func testSVGAPassesEveryRule() throws { try expectPass([hvhostDir + "/libSVGA.so"], policy: false) }

    func testBusLogicPassesEveryRule() throws { try expectPass([hvhostDir + "/libBusLogic.so"], policy: false) }

    func testSchedulerPoliciesPassEveryRule() throws {
        try expectPass(["libSchedPropShare.so", "libSchedRoundRobin.so", "libSchedCosched.so"].map { hvhostDir + "/" + $0 }, policy: true)
    }

    func testFixturesThatBreakOneRuleFailThatRule() throws {
        try HostHarness.requireHost()
        let dir = HostHarness.workDir + "/kitcheck"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        // The rule each variant breaks, and what the failure must say.
        let cases: [(define: String, subject: String, rule: String, says: String)] = [
            ("NONE", "", "", ""),
            ("CREATE", "device broken", "create", "create failed: Invalid argument (-22)"),
            ("DECL", "plugin", "entry", "key #0 'depth' has default \"deep\": not an unsigned integer"),
            ("RESET", "device broken", "reset", "1 of 4 registers differ from a fresh instance's after reset: BAR0+0x0: fresh 0x0"),
            ("STATE", "device broken", "save-load", "fields: reg3"),
            ("LEAK", "device broken", "lifecycle-leak", "open fds"),
            ("CRASH", "device broken", "fuzz", "crashed with signal 11"),
            ("HANG", "device broken", "fuzz", "hang: BAR0 read"),
            ("POLICY", "policy broken-policy", "sched-sim", "returned vCPU 4242, which is not in this pool"),
        ]
        for c in cases {
            let library = dir + "/libkit\(c.define).so"
            let cc = HostHarness.run("/usr/bin/cc", ["-std=c99", "-Wall", "-Werror", "-shared", "-fPIC", "-DBREAK_\(c.define)",
                                                     "-I", HostHarness.repoRoot + "/Sources/PluginABI/include", "-o", library,
                                                     HostHarness.repoRoot + "/Tests/IntegrationTests/Fixtures/kitcheck_broken.c"], timeout: 60)
            XCTAssertEqual(cc.status, 0, cc.stderr)
            // The conforming variant runs every rule; a broken one only the rule it breaks.
            let only = c.rule.isEmpty || c.rule == "entry" ? [] : ["--rule", c.rule]
            let limit = c.define == "HANG" ? ["--call-limit", "2"] : []
            let (status, report) = try Self.check(library, ["--cycles", "300", "--fuzz", "10000"] + limit + only)
            let failed = report.checks.filter { $0.status == "fail" }
            if c.define == "NONE" {
                XCTAssertEqual(status, 0, "the conforming variant: \(failed)")
                continue
            }
            XCTAssertEqual(status, c.rule == "entry" ? 2 : 1, c.define)
            XCTAssertFalse(report.passed)
            let hit = failed.first { $0.subject == c.subject && $0.rule == c.rule }
            XCTAssertNotNil(hit, "\(c.define): expected \(c.subject) \(c.rule) to fail; failures: \(failed)")
            XCTAssertTrue(hit?.detail.contains(c.says) ?? false, "\(c.define): \(hit?.detail ?? "")")
            XCTAssertEqual(failed.count, 1, "\(c.define) breaks one rule only: \(failed)")
        }
    }
}

/// `hvhost plugin new`: the skeletons build with their own Makefile and pass plugin-check
/// as generated; the device skeleton also runs in a VM and answers its command.
final class PluginTemplateTests: XCTestCase {
    func testGeneratedSkeletonsBuildAndPassPluginCheck() throws {
        try HostHarness.requireHost()
        let root = HostHarness.workDir + "/templates-\(UUID().uuidString.prefix(8))"
        for (kind, name) in [("device", "tmpl-dev"), ("policy", "tmpl-pol")] {
            let dir = root + "/" + name
            let gen = HostHarness.hvhostRun(["plugin", "new", kind, name, dir])
            XCTAssertEqual(gen.status, 0, gen.stderr)
            XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/Makefile"))
            let build = HostHarness.run("/usr/bin/make", ["-C", dir], timeout: 120)
            XCTAssertEqual(build.status, 0, build.stdout + build.stderr)
            let check = HostHarness.run("/usr/bin/make", ["-C", dir, "check", "HVHOST=" + HostHarness.hvhost], timeout: 300)
            XCTAssertEqual(check.status, 0, check.stdout + check.stderr)
            XCTAssertTrue(check.stdout.contains("passed or were skipped"), check.stdout)
            XCTAssertFalse(check.stdout.contains("FAIL"), check.stdout)
            let again = HostHarness.hvhostRun(["plugin", "new", kind, name, dir])
            XCTAssertNotEqual(again.status, 0, "existing files are not overwritten")
        }
        let bad = HostHarness.hvhostRun(["plugin", "new", "device", "Bad Name", root + "/bad"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("'Bad Name' is not a valid plugin name"), bad.stderr)
        // The device skeleton in a VM: its declared key reaches it and its command answers.
        let env = try SchedulingEnv.require(policies: ["propshare"])
        let vmx = env.burn("tmpl", ["hv.device0.present": "TRUE", "hv.device0.model": "tmpl-dev",
                                    "hv.device0.scratchReset": "0x1234"])
        var reply = ""
        let r = env.run(["--pcpus", "1", "--pool", "default:0:propshare", "--plugin-path", root + "/tmpl-dev"], [vmx]) { run in
            try run.waitForBurnLines(["tmpl"])
            reply = try run.console("device tmpl hv.device0 regs")
        }
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(reply.trimmingCharacters(in: .newlines), "id 0x0001aa55 scratch 0x00001234 writes 0")
    }
}
