import Foundation
import Testing
@testable import HVDevices
@testable import HVHostIO
@testable import HVMemory
@testable import HVPluginHost
@testable import HVSupport

/// C plugins compiled once per test process with the host `cc` against the real
/// header, one variant per `-D` set. Variants are built in parallel on first use.
enum PluginFixtures {
    /// Repository root, from this file's location (Tests/HVPluginHostTests/<file>).
    static let repoRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    static let includeDir = repoRoot + "/Sources/PluginABI/include"

    static let source = #"""
        #include "hvplugin.h"
        #include <stdio.h>
        #include <string.h>

        #ifndef PLUGIN_ID
        #define PLUGIN_ID "org.test.good"
        #endif
        #ifndef MODEL_NAME
        #define MODEL_NAME "testnic"
        #endif
        #ifndef ABI
        #define ABI HV_ABI_VERSION
        #endif
        #ifndef FACTORY_ABI
        #define FACTORY_ABI HV_ABI_VERSION
        #endif
        #ifndef INIT_RESULT
        #define INIT_RESULT 0
        #endif
        #ifndef MODEL_COUNT
        #define MODEL_COUNT 1
        #endif
        #ifndef SCHED_COUNT
        #ifdef SECOND_SCHED
        #define SCHED_COUNT 2
        #else
        #define SCHED_COUNT 1
        #endif
        #endif
        #ifndef SECOND_SCHED_NAME
        #define SECOND_SCHED_NAME "test-fair"
        #endif
        #ifndef TEAMING_COUNT
        #define TEAMING_COUNT 1
        #endif

        static void mark(const char *what) {
        #ifdef MARKER
            FILE *f = fopen(MARKER, "a");
            if (f) { fputs(what, f); fputc('\n', f); fclose(f); }
        #else
            (void)what;
        #endif
        }

        static int dev_create(const hv_host_services *s, hv_host *h, hv_device **out) {
            (void)s; (void)h; *out = (hv_device *)(void *)&dev_create; return HV_OK;
        }
        static void dev_destroy(hv_device *d) { (void)d; }
        static const hv_device_ops ops = {
            .struct_size = sizeof(hv_device_ops),
        #ifndef NO_DESTROY
            .destroy = dev_destroy,
        #endif
        };
        static const hv_device_model model = {
        #ifdef SMALL_MODEL
            .struct_size = 16,
        #else
            .struct_size = sizeof(hv_device_model),
        #endif
            .kind = HV_DEVICE_KIND_NIC, .name = MODEL_NAME, .description = "a test NIC",
            .flags = 0, .state_version = 1, .create = dev_create, .ops = &ops,
        };
        static const hv_device_model *const models[] = { &model };
        static const hv_device_factory device_factory = {
            sizeof(hv_device_factory), FACTORY_ABI, MODEL_COUNT, 0, models
        };

        static int s_init(hv_sched_policy **out, uint32_t n) { (void)n; *out = 0; return 0; }
        static void s_deinit(hv_sched_policy *p) { (void)p; }
        static int s_add(hv_sched_policy *p, int32_t v, int32_t vm, const hv_sched_params *x) { (void)p; (void)v; (void)vm; (void)x; return 0; }
        static void s_remove(hv_sched_policy *p, int32_t v) { (void)p; (void)v; }
        static void s_wake(hv_sched_policy *p, int32_t v, uint64_t t) { (void)p; (void)v; (void)t; }
        static void s_pick(hv_sched_policy *p, uint32_t c, uint64_t t, hv_sched_pick *o) { (void)p; (void)c; (void)t; o->vcpu = -1; }
        static void s_account(hv_sched_policy *p, int32_t v, uint64_t r) { (void)p; (void)v; (void)r; }
        static int s_params(hv_sched_policy *p, int32_t v, const hv_sched_params *x) { (void)p; (void)v; (void)x; return 0; }
        static const hv_sched_ops sched_ops = {
            .struct_size = sizeof(hv_sched_ops), .init = s_init, .deinit = s_deinit, .vcpu_add = s_add,
            .vcpu_remove = s_remove, .wake = s_wake, .block = s_wake,
        #ifndef NO_PICK_NEXT
            .pick_next = s_pick,
        #endif
            .account = s_account, .set_params = s_params,
        };
        static const hv_sched_ops sched_ops_nopick = {
            .struct_size = sizeof(hv_sched_ops), .init = s_init, .deinit = s_deinit, .vcpu_add = s_add,
            .vcpu_remove = s_remove, .wake = s_wake, .block = s_wake, .account = s_account, .set_params = s_params,
        };
        static const hv_sched_policy_desc sched_rr = {
        #ifdef SMALL_SCHED_DESC
            .struct_size = 16,
        #else
            .struct_size = sizeof(hv_sched_policy_desc),
        #endif
            .name = "test-rr", .description = "round robin for tests", .ops = &sched_ops,
        };
        /* Second policy: used when SCHED_COUNT >= 2 (SECOND_SCHED). */
        static const hv_sched_policy_desc sched_fair = {
            .struct_size = sizeof(hv_sched_policy_desc), .name = SECOND_SCHED_NAME, .description = NULL,
        #ifdef NO_PICK_NEXT_SECOND
            .ops = &sched_ops_nopick,
        #else
            .ops = &sched_ops,
        #endif
        };
        static const hv_sched_policy_desc *const sched_policies[] = {
            &sched_rr,
        #ifdef NULL_SECOND_SCHED
            NULL,
        #else
            &sched_fair,
        #endif
        };
        static const hv_sched_factory sched_factory = {
            sizeof(hv_sched_factory), HV_ABI_VERSION, SCHED_COUNT, 0, sched_policies
        };

        static int t_init(hv_teaming_policy **out) { *out = 0; return 0; }
        static void t_deinit(hv_teaming_policy *p) { (void)p; }
        static int t_add(hv_teaming_policy *p, uint32_t u, uint32_t o) { (void)p; (void)u; (void)o; return 0; }
        static void t_remove(hv_teaming_policy *p, uint32_t u) { (void)p; (void)u; }
        static void t_link(hv_teaming_policy *p, uint32_t u, int up) { (void)p; (void)u; (void)up; }
        static int32_t t_select(hv_teaming_policy *p, const hv_frame_info *f) { (void)p; (void)f; return 0; }
        static const hv_teaming_ops teaming_ops = {
            .struct_size = sizeof(hv_teaming_ops), .init = t_init, .deinit = t_deinit, .uplink_add = t_add,
            .uplink_remove = t_remove, .link_changed = t_link, .select_uplink = t_select,
        };
        static const hv_teaming_policy_desc teaming_failover = {
            sizeof(hv_teaming_policy_desc), 0, "test-failover", "explicit failover order", &teaming_ops
        };
        /* Second policy: used when TEAMING_COUNT >= 2. */
        static const hv_teaming_policy_desc teaming_lb = {
            sizeof(hv_teaming_policy_desc), 0, "test-lb", NULL, &teaming_ops
        };
        static const hv_teaming_policy_desc *const teaming_policies[] = { &teaming_failover, &teaming_lb };
        static const hv_teaming_factory teaming_factory = {
            sizeof(hv_teaming_factory), HV_ABI_VERSION, TEAMING_COUNT, 0, teaming_policies
        };

        static const void *get_factory(const char *id) {
            if (strcmp(id, HV_FACTORY_DEVICE) == 0) return &device_factory;
        #ifndef TEAMING_NULL
            if (strcmp(id, HV_FACTORY_TEAMING) == 0) return &teaming_factory;
        #endif
            if (strcmp(id, HV_FACTORY_SCHED_POLICY) == 0) return &sched_factory;
            if (strcmp(id, "org.example.future/3") == 0) return "opaque";
            return NULL;
        }
        static const char *const ids[] = {
            HV_FACTORY_DEVICE,
        #ifdef WITH_POLICIES
            HV_FACTORY_SCHED_POLICY, HV_FACTORY_TEAMING, "org.example.future/3",
        #endif
            NULL
        };
        static int plugin_init(void) { mark("init"); return INIT_RESULT; }
        static void plugin_deinit(void) { mark("deinit"); }

        #ifdef NEWER_MINOR
        /* A plugin from ABI 1.5 whose entry grew a field at the end. */
        struct entry_v1_5 { hv_plugin_entry base; void *(*future_op)(void); };
        static const struct entry_v1_5 entry_newer = { {
            sizeof(struct entry_v1_5), (1u << 16) | 5u, PLUGIN_ID, "Newer Plugin", "9.9", NULL,
            plugin_init, plugin_deinit, get_factory, ids }, NULL };
        const hv_plugin_entry *hv_plugin_entry_v1(void) { return &entry_newer.base; }
        #else
        static const hv_plugin_entry entry = {
        #ifdef ENTRY_SIZE
            .struct_size = ENTRY_SIZE,
        #else
            .struct_size = sizeof(hv_plugin_entry),
        #endif
            .abi_version = ABI,
            .id = PLUGIN_ID,
        #ifdef NO_NAME
            .name = "",
        #else
            .name = "Test Plugin",
        #endif
            .version = "1.2.3",
            .vendor = "Example Corp",
            .init = plugin_init,
            .deinit = plugin_deinit,
            .get_factory = get_factory,
        #ifdef NO_IDS
            .factory_ids = NULL,
        #else
            .factory_ids = ids,
        #endif
        };
        const hv_plugin_entry *hv_plugin_entry_v1(void) {
        #ifdef NULL_ENTRY
            return NULL;
        #else
            return &entry;
        #endif
        }
        #endif
        """#

    static let notAPluginSource = "int some_library_function(void) { return 42; }\n"

    /// Variant name → -D flags.
    static let variants: [String: [String]] = [
        "good": ["-DWITH_POLICIES"],
        "good2": ["-DPLUGIN_ID=\"org.test.good2\"", "-DMODEL_NAME=\"othernic\""],
        "abi2": ["-DABI=((2u<<16)|0u)"],
        "nodestroy": ["-DNO_DESTROY", "-DMODEL_NAME=\"x\"", "-DPLUGIN_ID=\"org.test.nodestroy\""],
        "smallentry": ["-DENTRY_SIZE=32"],
        "smallmodel": ["-DSMALL_MODEL"],
        "initfail": ["-DINIT_RESULT=HV_EINVAL"],
        "dupmodel": ["-DPLUGIN_ID=\"org.test.dupmodel\""],
        "dupid": ["-DMODEL_NAME=\"dupidnic\""],
        "badname": ["-DPLUGIN_ID=\"org.test.badname\"", "-DMODEL_NAME=\"Bad Name\""],
        "nopick": ["-DWITH_POLICIES", "-DNO_PICK_NEXT"],
        "twopolicies": ["-DWITH_POLICIES", "-DSECOND_SCHED", "-DTEAMING_COUNT=2",
                        "-DPLUGIN_ID=\"org.test.twopolicies\"", "-DMODEL_NAME=\"twonic\""],
        "nopicksecond": ["-DWITH_POLICIES", "-DSECOND_SCHED", "-DNO_PICK_NEXT_SECOND"],
        "zerosched": ["-DWITH_POLICIES", "-DSCHED_COUNT=0"],
        "manysched": ["-DWITH_POLICIES", "-DSCHED_COUNT=65"],
        "nullsched": ["-DWITH_POLICIES", "-DSECOND_SCHED", "-DNULL_SECOND_SCHED"],
        "smallscheddesc": ["-DWITH_POLICIES", "-DSMALL_SCHED_DESC"],
        "dupsched": ["-DWITH_POLICIES", "-DSECOND_SCHED", "-DSECOND_SCHED_NAME=\"test-rr\""],
        "zeroteaming": ["-DWITH_POLICIES", "-DTEAMING_COUNT=0"],
        "teamingnull": ["-DWITH_POLICIES", "-DTEAMING_NULL"],
        "nullentry": ["-DNULL_ENTRY"],
        "noids": ["-DNO_IDS"],
        "noname": ["-DNO_NAME"],
        "zeromodels": ["-DMODEL_COUNT=0"],
        "factoryabi2": ["-DFACTORY_ABI=((2u<<16)|1u)"],
        "newerminor": ["-DNEWER_MINOR", "-DPLUGIN_ID=\"org.test.newer\"", "-DMODEL_NAME=\"newnic\""],
    ]

    struct Built {
        let dir: String
        /// Variant → compiled library.
        let libraries: [String: String]
        /// Library without the entry symbol.
        let notAPlugin: String
        /// Where marker-enabled variants append "init"/"deinit" lines.
        func marker(_ variant: String) -> String { dir + "/\(variant).marker" }
    }

    static let built: Result<Built, FixtureError> = build()

    struct FixtureError: Error, CustomStringConvertible {
        let description: String
    }

    static func get() throws -> Built { try built.get() }

    private static func build() -> Result<Built, FixtureError> {
        removeStaleFixtures()
        let dir = NSTemporaryDirectory() + "hv-plugin-tests-\(getpid())"
        try? FileManager.default.removeItem(atPath: dir)
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try source.write(toFile: dir + "/plugin.c", atomically: true, encoding: .utf8)
            try notAPluginSource.write(toFile: dir + "/notaplugin.c", atomically: true, encoding: .utf8)
        } catch {
            return .failure(FixtureError(description: "cannot write fixtures: \(error)"))
        }
        var jobs: [(String, [String])] = variants.map { name, flags in
            (name, flags + ["-DMARKER=\"\(dir)/\(name).marker\"", dir + "/plugin.c", "-o", dir + "/lib\(name).so"])
        }
        jobs.append(("notaplugin", [dir + "/notaplugin.c", "-o", dir + "/libnotaplugin.so"]))
        var processes: [(String, Process, Pipe)] = []
        for (name, args) in jobs {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/cc")
            p.arguments = ["-std=c99", "-Wall", "-Werror", "-Wno-unused-function", "-Wno-unused-const-variable", "-shared", "-fPIC", "-I", includeDir] + args
            let pipe = Pipe()
            p.standardError = pipe
            p.standardOutput = pipe
            do { try p.run() } catch {
                return .failure(FixtureError(description: "cannot run /usr/bin/cc: \(error)"))
            }
            processes.append((name, p, pipe))
        }
        var failures: [String] = []
        for (name, p, pipe) in processes {
            let out = pipe.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            if p.terminationStatus != 0 { failures.append("\(name): \(String(decoding: out, as: UTF8.self))") }
        }
        guard failures.isEmpty else {
            return .failure(FixtureError(description: "cc failed:\n" + failures.joined(separator: "\n")))
        }
        var libs: [String: String] = [:]
        for name in variants.keys { libs[name] = dir + "/lib\(name).so" }
        return .success(Built(dir: dir, libraries: libs, notAPlugin: dir + "/libnotaplugin.so"))
    }

    /// Removes fixture directories left by test processes that no longer run.
    private static func removeStaleFixtures() {
        let tmp = NSTemporaryDirectory()
        let prefix = "hv-plugin-tests-"
        for name in (try? FileManager.default.contentsOfDirectory(atPath: tmp)) ?? [] where name.hasPrefix(prefix) {
            guard let pid = Int32(name.dropFirst(prefix.count)), pid != getpid() else { continue }
            if kill(pid, 0) != 0, errno == ESRCH { try? FileManager.default.removeItem(atPath: tmp + name) }
        }
    }

    /// Makes a fresh directory under the fixture directory holding copies of the
    /// given variants named as given (copies, so each test has its own dlopen handle).
    static func directory(_ name: String, files: [(fileName: String, variant: String)]) throws -> String {
        let built = try get()
        let dir = built.dir + "/" + name
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for (fileName, variant) in files {
            let src = variant == "notaplugin" ? built.notAPlugin : built.libraries[variant]!
            try FileManager.default.copyItem(atPath: src, toPath: dir + "/" + fileName)
        }
        return dir
    }
}

@Suite struct PluginFixtureTests {
    @Test func fixturesCompileAgainstTheHeaderAlone() throws {
        let built = try PluginFixtures.get()
        for (_, path) in built.libraries { #expect(FileManager.default.fileExists(atPath: path)) }
    }
}
