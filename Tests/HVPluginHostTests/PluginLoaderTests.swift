import Foundation
import PluginABI
import Testing
@testable import HVDevices
@testable import HVHostIO
@testable import HVMemory
@testable import HVPluginHost
@testable import HVSupport

@Suite struct PluginLoaderTests {
    private func lib(_ variant: String) throws -> String {
        try #require(try PluginFixtures.get().libraries[variant])
    }

    private func loadError(_ path: String) -> PluginLoadError? {
        do {
            let p = try PluginLoader().load(path: path)
            Issue.record("\(path) loaded, expected a failure")
            p.unload()
            return nil
        } catch {
            return error
        }
    }

    @Test func v1StructSizesMatchTheHeader() {
        // hv_plugin_entry grew in 1.1 (init_with_info, appended): the loader still accepts a 1.0 entry.
        #expect(MemoryLayout<hv_plugin_entry>.offset(of: \hv_plugin_entry.init_with_info) == PluginLoader.MinimumSize.entry)
        #expect(MemoryLayout<hv_plugin_entry>.stride == PluginLoader.MinimumSize.entry + 8)
        #expect(MemoryLayout<hv_device_factory>.stride == PluginLoader.MinimumSize.deviceFactory)
        // hv_device_model and hv_sched_policy_desc grew in 1.2 (keys and commands, appended).
        #expect(MemoryLayout<hv_device_model>.offset(of: \hv_device_model.key_count) == PluginLoader.MinimumSize.deviceModel)
        #expect(MemoryLayout<hv_device_ops>.stride == PluginLoader.MinimumSize.deviceOps)
        #expect(MemoryLayout<hv_sched_factory>.stride == PluginLoader.MinimumSize.schedFactory)
        #expect(MemoryLayout<hv_sched_policy_desc>.offset(of: \hv_sched_policy_desc.key_count) == PluginLoader.MinimumSize.schedPolicyDesc)
        // hv_sched_ops grew after v1 (preempt, appended): the loader still accepts a v1 table.
        #expect(MemoryLayout<hv_sched_ops>.offset(of: \hv_sched_ops.preempt) == PluginLoader.MinimumSize.schedOps)
        #expect(MemoryLayout<hv_sched_ops>.stride == PluginLoader.MinimumSize.schedOps + 16)   // preempt, set_topology (1.3)
        #expect(MemoryLayout<hv_teaming_factory>.stride == PluginLoader.MinimumSize.teamingFactory)
        #expect(MemoryLayout<hv_teaming_policy_desc>.stride == PluginLoader.MinimumSize.teamingPolicyDesc)
        #expect(MemoryLayout<hv_teaming_ops>.stride == PluginLoader.MinimumSize.teamingOps)
    }

    @Test func loadsAGoodPluginWithEveryFactory() throws {
        let path = try PluginFixtures.directory("loader-good", files: [("libgood.so", "good")]) + "/libgood.so"
        let p = try PluginLoader().load(path: path)
        defer { p.unload() }
        #expect(p.id == "org.test.good")
        #expect(p.name == "Test Plugin")
        #expect(p.version == "1.2.3")
        #expect(p.vendor == "Example Corp")
        #expect(p.abiString == "1.4")
        #expect(p.path == path)
        #expect(p.factoryIDs == ["hv.device/1", "hv.sched-policy/1", "hv.teaming-policy/1", "org.example.future/3"])
        #expect(p.unknownFactoryIDs == ["org.example.future/3"])
        #expect(p.deviceModels.map(\.name) == ["testnic"])
        #expect(p.deviceModels.first?.kindName == "nic")
        #expect(p.deviceModels.first?.description == "a test NIC")
        #expect(p.deviceModels.first?.pointer.pointee.ops.pointee.destroy != nil)
        #expect(p.schedPolicies.map(\.name) == ["test-rr"])
        #expect(p.schedPolicies.first?.description == "round robin for tests")
        #expect(p.schedPolicies.first?.ops.pointee.pick_next != nil)
        #expect(p.teamingPolicies.map(\.name) == ["test-failover"])
        #expect(p.teamingPolicies.first?.description == "explicit failover order")
        #expect(p.teamingPolicies.first?.ops.pointee.select_uplink != nil)
        // The model's create works through the pointer the loader hands out.
        var dev: OpaquePointer?
        let rc = p.deviceModels[0].pointer.pointee.create(nil, nil, &dev)
        #expect(rc == 0 && dev != nil)
    }

    @Test func aPluginWithTwoSchedPoliciesListsBoth() throws {
        let p = try PluginLoader().load(path: try lib("twopolicies"))
        defer { p.unload() }
        #expect(p.schedPolicies.map(\.name) == ["test-rr", "test-fair"])
        #expect(p.schedPolicies.map(\.description) == ["round robin for tests", nil])
        #expect(String(cString: p.schedPolicies[1].pointer.pointee.name) == "test-fair")
        #expect(p.schedPolicies.allSatisfy { $0.ops.pointee.pick_next != nil })
        #expect(p.teamingPolicies.map(\.name) == ["test-failover", "test-lb"])
        // The ops work through the pointers the loader hands out.
        var policy: OpaquePointer?
        #expect(p.schedPolicies[1].ops.pointee.`init`(&policy, 4) == 0)
    }

    @Test func newerMinorWithLargerStructsIsAccepted() throws {
        let built = try PluginFixtures.get()
        try? FileManager.default.removeItem(atPath: built.marker("newerminor"))
        let p = try PluginLoader().load(path: try lib("newerminor"))
        #expect(p.abiString == "1.5")
        #expect(p.deviceModels.map(\.name) == ["newnic"])
        #expect(p.isLoaded)
        p.unload()
        p.unload()  // idempotent
        #expect(!p.isLoaded)
        let marks = try String(contentsOfFile: built.marker("newerminor"), encoding: .utf8)
        #expect(marks == "init\ndeinit\n")
    }

    @Test func libraryWithoutEntrySymbol() throws {
        let path = try PluginFixtures.get().notAPlugin
        let e = loadError(path)
        #expect(e?.reason == .noEntrySymbol)
        #expect(e?.description == "\(path): no symbol hv_plugin_entry_v1 (is it an hvhost plugin?)")
    }

    @Test func abiMajorMismatch() throws {
        let path = try lib("abi2")
        #expect(loadError(path)?.description == "\(path): ABI major version 2, this host speaks 1")
        let f = try lib("factoryabi2")
        #expect(loadError(f)?.description == "\(f): device factory: ABI major version 2, this host speaks 1")
    }

    @Test func modelWithoutDestroy() throws {
        let path = try lib("nodestroy")
        let e = loadError(path)
        #expect(e?.reason == .invalidDeviceModel(model: "x", problem: "has no destroy op"))
        #expect(e?.description == "\(path): model 'x' has no destroy op")
    }

    @Test func structSizeTooSmall() throws {
        let path = try lib("smallentry")
        #expect(loadError(path)?.description
            == "\(path): hv_plugin_entry.struct_size is 32, smaller than the 72 bytes this host reads (ABI 1.4)")
        let m = try lib("smallmodel")
        #expect(loadError(m)?.description
            == "\(m): model '#0' has struct_size 16, smaller than the 48 bytes of hv_device_model")
    }

    @Test func initFailureIsReportedAndDeinitNotCalled() throws {
        let built = try PluginFixtures.get()
        try? FileManager.default.removeItem(atPath: built.marker("initfail"))
        let path = try lib("initfail")
        let e = loadError(path)
        #expect(e?.reason == .initFailed(code: -22))
        #expect(e?.description == "\(path): init() failed: -22 (EINVAL: Invalid argument)")
        #expect(try String(contentsOfFile: built.marker("initfail"), encoding: .utf8) == "init\n")
    }

    @Test func listedFactoryReturningNullAfterInitCallsDeinit() throws {
        let built = try PluginFixtures.get()
        try? FileManager.default.removeItem(atPath: built.marker("teamingnull"))
        let path = try lib("teamingnull")
        #expect(loadError(path)?.description
            == "\(path): get_factory(\"hv.teaming-policy/1\") returned NULL although factory_ids lists it")
        #expect(try String(contentsOfFile: built.marker("teamingnull"), encoding: .utf8) == "init\ndeinit\n")
    }

    @Test func otherDescriptorProblems() throws {
        let cases: [(String, String)] = [
            ("nullentry", "hv_plugin_entry_v1() returned NULL"),
            ("noids", "factory_ids is NULL (at least one id is required)"),
            ("noname", "plugin name is NULL or empty"),
            ("zeromodels", "factory \"hv.device/1\": model_count is 0 (at least one model is required)"),
            ("badname", "model 'Bad Name' has an invalid name (use lowercase letters, digits, '_' and '-')"),
            ("nopick", "factory \"hv.sched-policy/1\": policy 'test-rr' has no pick_next op (mandatory)"),
            ("nopicksecond", "factory \"hv.sched-policy/1\": policy 'test-fair' has no pick_next op (mandatory)"),
            ("zerosched", "factory \"hv.sched-policy/1\": policy_count is 0 (at least one policy is required)"),
            ("manysched", "factory \"hv.sched-policy/1\": policy_count is 65, more than the 64 a factory may declare"),
            ("nullsched", "factory \"hv.sched-policy/1\": policies[1] is NULL (policy_count is 2)"),
            ("smallscheddesc", "factory \"hv.sched-policy/1\": policy #0 has struct_size 16, smaller than the 32 bytes of hv_sched_policy_desc"),
            ("dupsched", "factory \"hv.sched-policy/1\": policy 'test-rr' is declared twice by the same factory"),
            ("zeroteaming", "factory \"hv.teaming-policy/1\": policy_count is 0 (at least one policy is required)"),
        ]
        for (variant, message) in cases {
            let path = try lib(variant)
            #expect(loadError(path)?.description == "\(path): \(message)", "variant \(variant)")
        }
    }

    /// A file that is not an ELF shared object is refused before dlopen, naming it.
    @Test func aFileThatIsNotELFIsRefusedNamingIt() throws {
        let dir = try PluginFixtures.directory("loader-garbage", files: [])
        let path = dir + "/libgarbage.so"
        try "not an ELF file".write(toFile: path, atomically: true, encoding: .utf8)
        let e = loadError(path)
        #expect(e?.reason == .notAPlugin("not an ELF file"))
        #expect(e?.description == "\(path): not loaded: not an ELF file, so it cannot be shown to be a plugin")
        #expect(loadError(dir + "/missing.so")?.description.hasPrefix("\(dir)/missing.so: not loaded: the library \(dir)/missing.so cannot be examined: ") == true)
    }
}
