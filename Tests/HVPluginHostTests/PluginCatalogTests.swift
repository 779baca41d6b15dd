import Foundation
import PluginABI
import Testing
@testable import HVDevices
@testable import HVHostIO
@testable import HVMemory
@testable import HVPluginHost
@testable import HVSupport

@Suite struct PluginCatalogTests {
    /// A search path with good plugins and every kind of bad one, in a known order.
    private func mixedCatalog(_ tag: String) throws -> (PluginCatalog, String, String) {
        let first = try PluginFixtures.directory("catalog-\(tag)-a", files: [
            ("10_good.so", "good"),
            ("20_notaplugin.so", "notaplugin"),
            ("30_abi2.so", "abi2"),
            ("40_nodestroy.so", "nodestroy"),
            ("50_dupmodel.so", "dupmodel"),
            ("60_dupid.so", "dupid"),
        ])
        try "ignored".write(toFile: first + "/README.txt", atomically: true, encoding: .utf8)
        try FileManager.default.createDirectory(atPath: first + "/nested.so", withIntermediateDirectories: true)
        let second = try PluginFixtures.directory("catalog-\(tag)-b", files: [("good2.so", "good2")])
        // The same library again through a symlink: deduplicated by real path.
        try FileManager.default.createSymbolicLink(atPath: second + "/alias.so", withDestinationPath: first + "/10_good.so")
        let path = PluginSearchPath(directories: [first, second, first + "/does-not-exist"])
        return (PluginCatalog(searchPath: path), first, second)
    }

    @Test func loadsGoodPluginsAndReportsBadOnes() throws {
        let (catalog, a, b) = try mixedCatalog("report")
        defer { catalog.plugins.forEach { $0.unload() } }
        #expect(catalog.plugins.map(\.id) == ["org.test.good", "org.test.dupmodel", "org.test.good2"])
        #expect(catalog.plugins.map(\.path) == [a + "/10_good.so", a + "/50_dupmodel.so", b + "/good2.so"])
        #expect(catalog.failures.map(\.path) == [a + "/20_notaplugin.so", a + "/30_abi2.so", a + "/40_nodestroy.so",
                                                 a + "/60_dupid.so"])
        #expect(catalog.failures.map(\.reason) == [
            .noEntrySymbol,
            .abiMajorMismatch(context: "", major: 2),
            .invalidDeviceModel(model: "x", problem: "has no destroy op"),
            .duplicateID(id: "org.test.good", firstPath: a + "/10_good.so"),
        ])
        // The duplicate id is refused before its init() runs (the fixture logs init calls).
        #expect(!FileManager.default.fileExists(atPath: try PluginFixtures.get().marker("dupid")))
        #expect(catalog.conflicts == [PluginConflict(kind: .deviceModel, name: "testnic",
                                                     winner: a + "/10_good.so", loser: a + "/50_dupmodel.so")])
        #expect(catalog.conflicts[0].description.contains("device model 'testnic' is also provided by \(a)/10_good.so"))
        #expect(catalog.deviceModelNames == ["othernic", "testnic"])
        #expect(catalog.schedPolicyNames == ["test-rr"])
        #expect(catalog.teamingPolicyNames == ["test-failover"])
    }

    @Test func lookupsAndTheirErrors() throws {
        let (catalog, a, b) = try mixedCatalog("lookup")
        defer { catalog.plugins.forEach { $0.unload() } }
        let nic = try catalog.deviceModel(named: "testnic")
        #expect(nic.plugin.path == a + "/10_good.so")  // first in search order wins
        #expect(String(cString: nic.model.pointee.name) == "testnic")
        #expect(try catalog.deviceModel(named: "OtherNIC").plugin.id == "org.test.good2")
        #expect(try catalog.deviceModelInfo(named: "testnic").model.kind == HV_DEVICE_KIND_NIC)
        #expect(try catalog.schedPolicy(named: "test-rr").plugin.id == "org.test.good")
        #expect(try catalog.teamingPolicy(named: "test-failover").desc.pointee.ops != nil)
        #expect(String(cString: try catalog.schedPolicy(named: "TEST-RR").desc.pointee.name) == "test-rr")

        let e = #expect(throws: PluginCatalogError.self) { try catalog.deviceModel(named: "testnik") }
        let text = e?.description ?? ""
        #expect(text.hasPrefix("no plugin provides device model 'testnik'; searched: \(a), \(b), \(a)/does-not-exist; did you mean 'testnic'?; known device models: othernic, testnic; 4 plugins failed to load: \(a)/20_notaplugin.so: no symbol hv_plugin_entry_v1"))
        #expect(text.contains("\(a)/30_abi2.so: ABI major version 2, this host speaks 1"))
        #expect(text.contains("\(a)/40_nodestroy.so: model 'x' has no destroy op"))
        let s = #expect(throws: PluginCatalogError.self) { try catalog.schedPolicy(named: "credit") }
        #expect(s?.description.hasPrefix("no plugin provides scheduler policy 'credit'; searched: ") == true)
    }

    @Test func everyPolicyOfAPluginIsIndexedAndConflictsArePerName() throws {
        let dir = try PluginFixtures.directory("catalog-policies", files: [("10_good.so", "good"), ("20_two.so", "twopolicies")])
        let catalog = PluginCatalog(searchPath: PluginSearchPath(directories: [dir]))
        defer { catalog.plugins.forEach { $0.unload() } }
        #expect(catalog.failures.isEmpty)
        #expect(catalog.schedPolicyNames == ["test-fair", "test-rr"])
        #expect(catalog.teamingPolicyNames == ["test-failover", "test-lb"])
        // Names both plugins offer go to the first in search order; the others are indexed.
        #expect(catalog.conflicts == [
            PluginConflict(kind: .schedPolicy, name: "test-rr", winner: dir + "/10_good.so", loser: dir + "/20_two.so"),
            PluginConflict(kind: .teamingPolicy, name: "test-failover", winner: dir + "/10_good.so", loser: dir + "/20_two.so"),
        ])
        #expect(catalog.conflicts[0].description.contains("scheduler policy 'test-rr' is also provided by \(dir)/10_good.so"))
        #expect(try catalog.schedPolicy(named: "test-rr").plugin.id == "org.test.good")
        let fair = try catalog.schedPolicy(named: "test-fair")
        #expect(fair.plugin.id == "org.test.twopolicies")
        #expect(String(cString: fair.desc.pointee.name) == "test-fair")
        #expect(fair.desc.pointee.ops.pointee.pick_next != nil)
        #expect(try catalog.schedPolicyInfo(named: "test-rr").policy.description == "round robin for tests")
        let lb = try catalog.teamingPolicy(named: "test-lb")
        #expect(lb.plugin.id == "org.test.twopolicies")
        #expect(String(cString: lb.desc.pointee.name) == "test-lb")
        #expect(try catalog.teamingPolicyInfo(named: "test-failover").plugin.path == dir + "/10_good.so")
        let e = #expect(throws: PluginCatalogError.self) { try catalog.teamingPolicy(named: "test-l") }
        #expect(e?.description.contains("did you mean 'test-lb'?; known teaming policies: test-failover, test-lb") == true)
    }

    @Test func lookupForAConfiguredDeviceChecksKindAndNamesTheKey() throws {
        let (catalog, a, _) = try mixedCatalog("device")
        defer { catalog.plugins.forEach { $0.unload() } }
        // What the VM assembly passes for `<prefix>.virtualDev = "<model>"` on line `line` of vm.vmx.
        func lookup(_ kind: (code: UInt32, name: String), _ prefix: String, _ model: String,
                    line: Int) throws(PluginCatalogError) -> DeviceModelMatch {
            try catalog.deviceModel(named: model, kind: kind.code, kindName: kind.name,
                                    context: "vm.vmx:\(line): \(prefix).virtualDev = \"\(model)\"")
        }
        let nic: (UInt32, String) = (1, "nic"), scsi: (UInt32, String) = (2, "scsi")   // HV_DEVICE_KIND_*
        let match = try lookup(nic, "ethernet0", "testnic", line: 4)
        #expect(match.plugin.path == a + "/10_good.so")
        #expect(match.pluginName == "Test Plugin")
        #expect(String(cString: match.model.pointee.name) == "testnic")

        let wrong = #expect(throws: PluginCatalogError.self) {
            try lookup(scsi, "scsi0", "testnic", line: 9)
        }
        #expect(wrong?.description == "vm.vmx:9: scsi0.virtualDev = \"testnic\": device model 'testnic' (from \(a)/10_good.so) is a nic device, expected a scsi device")
        let missing = #expect(throws: PluginCatalogError.self) {
            try lookup(nic, "ethernet1", "vlance", line: 12)
        }
        #expect(missing?.description.hasPrefix("vm.vmx:12: ethernet1.virtualDev = \"vlance\": no plugin provides device model 'vlance'; searched: \(a), ") == true)
    }

    @Test func nonPluginsInTheBinaryDirectoryAreSkippedQuietly() throws {
        let dir = try PluginFixtures.directory("catalog-quiet", files: [("libhelper.so", "notaplugin"), ("libgood.so", "good2")])
        let path = PluginSearchPath(directories: [dir], quietDirectories: [dir])
        #expect(path.candidateList() == [.init(path: dir + "/libgood.so", quiet: true), .init(path: dir + "/libhelper.so", quiet: true)])
        let catalog = PluginCatalog(searchPath: path)
        defer { catalog.plugins.forEach { $0.unload() } }
        #expect(catalog.plugins.map(\.id) == ["org.test.good2"])
        #expect(catalog.failures.isEmpty)
        #expect(catalog.skipped == [dir + "/libhelper.so"])
        // The same directory given explicitly reports it.
        let loud = PluginCatalog(searchPath: PluginSearchPath(directories: [dir]))
        defer { loud.plugins.forEach { $0.unload() } }
        #expect(loud.failures.map(\.reason) == [.noEntrySymbol])
    }

    @Test func dynamicSymbolPrecheck() throws {
        let built = try PluginFixtures.get()
        #expect(PluginELFSymbols.inspect(try #require(built.libraries["good"]), for: "hv_plugin_entry_v1") == .defines)
        #expect(PluginELFSymbols.inspect(built.notAPlugin, for: "hv_plugin_entry_v1") == .lacks)
        #expect(PluginELFSymbols.inspect(built.notAPlugin, for: "some_library_function") == .defines)
        #expect(PluginELFSymbols.inspect(try #require(built.libraries["good"]), for: "strcmp") == .lacks)  // undefined import
        #expect(PluginELFSymbols.inspect(built.dir + "/plugin.c", for: "x") == .unreadable("not an ELF file"))
        #expect(PluginELFSymbols.inspect("/nonexistent.so", for: "x") == .unreadable("cannot open: No such file or directory"))
    }

    @Test func emptySearchPath() throws {
        let catalog = PluginCatalog(searchPath: PluginSearchPath(directories: []))
        #expect(catalog.plugins.isEmpty && catalog.failures.isEmpty)
        let e = #expect(throws: PluginCatalogError.self) { try catalog.deviceModel(named: "vlance") }
        #expect(e?.description == "no plugin provides device model 'vlance'; searched: (no directories); no device models are available")
    }
}

@Suite struct PluginSearchPathTests {
    @Test func orderFlagsThenEnvironmentThenBinaryDirectory() {
        let p = PluginSearchPath.standard(flagValues: ["/a:/b", "/c", "/a"], environment: "/e1::/e2",
                                          executablePath: "/opt/hv/bin/hvhost")
        #expect(p.directories == ["/a", "/b", "/c", "/e1", "/e2", "/opt/hv/bin", "/opt/hv/bin/plugins"])
        #expect(p.quietDirectories == ["/opt/hv/bin"])
        let explicit = PluginSearchPath.standard(flagValues: ["/opt/hv/bin"], environment: nil,
                                                 executablePath: "/opt/hv/bin/hvhost")
        #expect(explicit.directories == ["/opt/hv/bin", "/opt/hv/bin/plugins"] && explicit.quietDirectories.isEmpty)
        let none = PluginSearchPath.standard(flagValues: [], environment: nil, executablePath: nil)
        #expect(none.directories.isEmpty)
        #expect(PluginSearchPath(directories: ["/x/", "/x"]).directories == ["/x"])
    }

    @Test func currentExecutableIsResolved() {
        let exe = PluginSearchPath.currentExecutablePath()
        #expect(exe?.hasPrefix("/") == true)
        let p = PluginSearchPath.standard(environment: nil)
        #expect(p.directories.count == 2 && p.directories[1].hasSuffix("/plugins"))
    }

    @Test func candidatesAreSortedNonRecursiveAndDeduplicated() throws {
        let a = try PluginFixtures.directory("search-a", files: [("b.so", "good"), ("a.so", "good2")])
        let b = try PluginFixtures.directory("search-b", files: [("c.so", "good")])
        try FileManager.default.createSymbolicLink(atPath: b + "/dup.so", withDestinationPath: a + "/b.so")
        try FileManager.default.createDirectory(atPath: a + "/sub", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: a + "/a.so", toPath: a + "/sub/deep.so")
        try "x".write(toFile: a + "/notes.txt", atomically: true, encoding: .utf8)
        let explicit = try PluginFixtures.directory("search-c", files: [("single.so", "good")]) + "/single.so"
        let path = PluginSearchPath(directories: [a, "/nonexistent-dir", b, explicit])
        #expect(path.candidates() == [a + "/a.so", a + "/b.so", b + "/c.so", explicit])
    }
}
