import Foundation
import HVBackendKVM
import HVHostIO
import HVKernel
import HVPluginHost
import HVSched
import Logging
import XCTest

/// The ABI 1.1 PCI extensions with a real guest: the devext guest drives the probe
/// device of Tests/HVPluginHostTests/Fixtures/pci_ext_probe.c through a RAM BAR, MSI-X and
/// doorbells on KVM.
final class PCIExtensionTests: XCTestCase {
    static let probeDir = HostHarness.workDir + "/pciext"

    private static let probeBuild: String? = {
        try? FileManager.default.createDirectory(atPath: probeDir, withIntermediateDirectories: true)
        let r = HostHarness.run("/usr/bin/cc", ["-std=c99", "-Wall", "-Werror", "-shared", "-fPIC",
                                                "-I", HostHarness.repoRoot + "/Sources/PluginABI/include",
                                                "-o", probeDir + "/libpciextprobe.so",
                                                HostHarness.repoRoot + "/Tests/HVPluginHostTests/Fixtures/pci_ext_probe.c"],
                                timeout: 60)
        return r.status == 0 ? nil : "cc pci_ext_probe.c failed: \(r.stderr)"
    }()

    override func setUpWithError() throws {
        try HostHarness.requireHost()
        if let failure = Self.probeBuild { XCTFail(failure); throw XCTSkip("probe build failed") }
    }

    private func vmx(_ name: String, cmdline: String, extra: [String: String] = [:]) -> String {
        HostHarness.vmx(name, guest: "devext", extra: ["hv.cmdline": cmdline, "hv.device0.present": "TRUE",
                                                       "hv.device0.model": "pciextprobe"].merging(extra) { $1 })
    }

    private func hvhost(_ name: String, cmdline: String) -> HostHarness.Result {
        HostHarness.hvhostRun(["run", "--plugin-path", Self.probeDir, vmx(name, cmdline: cmdline)])
    }

    func testRAMBARPatternDirtyPagesAndMove() {
        let r = hvhost("devext-ram", cmdline: "rambar=1 doorbells=0 msix=0")
        XCTAssertEqual(r.status, 1, r.stdout + r.stderr)
        for line in ["devext: rambar dirty 0xffff after BAR sizing",
                     "devext: rambar pattern seen by the device, dirty 0x209 (3 pages)",
                     "devext: rambar dirty since the last query 0x20",
                     "devext: rambar moved to 0xe8000000, contents kept, dirty 0xffff after the move",
                     "devext: rambar placed over guest RAM and back, contents kept",
                     "devext: rambar ok"] {
            XCTAssertTrue(r.stdout.contains(line), "missing '\(line)':\n\(r.stdout)")
        }
        let refusals = r.stderr.components(separatedBy: "cannot map the RAM BAR at 0x2000000").count - 1
        XCTAssertEqual(refusals, 1, "KVM refused the memslot over guest RAM, said once:\n\(r.stderr)")
    }

    func testMSIXVectorMaskAndFunctionMask() {
        let r = hvhost("devext-msix", cmdline: "rambar=0 doorbells=0 msix=1")
        XCTAssertEqual(r.status, 1, r.stdout + r.stderr)
        for line in ["devext: msix 8 vectors, table 0x800, pba 0xc00 in bar0",
                     "devext: doorbell rang, MSI-X vector 1 arrived as 0x50",
                     "devext: masked vector pending, delivered on unmask",
                     "devext: function mask held the vector, delivered when cleared",
                     "devext: msix ok"] {
            XCTAssertTrue(r.stdout.contains(line), "missing '\(line)':\n\(r.stdout)")
        }
    }

    /// One VM in this process, so its exit count can be read when it stops.
    private func runInProcess(doorbells: Int) throws -> (exits: UInt64, serial: String, inKernel: Bool, reason: VMStopReason) {
        let serial = HostHarness.workDir + "/devext-\(doorbells).serial"
        let config = try VMConfiguration(contentsOf: vmx("devext-\(doorbells)", cmdline: "rambar=0 msix=0 doorbells=\(doorbells)",
                                                         extra: ["hv.serial": "file:" + serial]))
        let catalog = PluginCatalog.load(searchPath: PluginSearchPath(directories: [Self.probeDir]))
        let logger = Logger(label: "pciext-test")
        let scheduler = try Scheduler(logger: logger)
        defer { scheduler.stop() }
        let services = HostServices(kvm: try KVMSystem(), switches: SwitchRegistry(), diskQueue: DiskIOQueue(name: "pciext-disk"),
                                    scheduler: scheduler,
                                    resolveModel: { device in try catalog.deviceModel(named: device.modelName, for: device) })
        let vm = try VirtualMachine(configuration: config, host: services, logger: logger)
        let inKernel = try XCTUnwrap(vm.devices.first?.function?.doorbells.first).inBackend
        vm.start()
        let reason = vm.waitUntilStopped()
        return (vm.exitCount, (try? String(contentsOfFile: serial, encoding: .utf8)) ?? "", inKernel, reason)
    }

    /// Each doorbell writes a request into the RAM BAR, rings, and waits for the device's
    /// answer there. With KVM_IOEVENTFD and the RAM BAR as a memslot none of that exits:
    /// 2000 more doorbells cost (almost) no more exits.
    func testDoorbellsAndRAMBARAccessesDoNotExit() throws {
        let few = try runInProcess(doorbells: 10)
        let many = try runInProcess(doorbells: 2010)
        XCTAssertEqual(few.reason, .debugExit(0), few.serial)
        XCTAssertEqual(many.reason, .debugExit(0), many.serial)
        XCTAssertTrue(many.serial.contains("devext: 2010 doorbells answered"), many.serial)
        XCTAssertTrue(many.serial.contains("devext: 8 I/O doorbells answered"), many.serial)
        let extra = Int64(many.exits) - Int64(few.exits)
        print("devext: \(few.exits) exits with 10 doorbells, \(many.exits) with 2010 (\(extra) more)")
        if many.inKernel {
            XCTAssertLessThan(extra, 200, "2000 doorbells in the kernel: \(few.exits) -> \(many.exits) exits")
        } else {
            // The exit path: every ring is one exit, and the guest still passes.
            XCTAssertGreaterThanOrEqual(extra, 2000)
        }
    }
}
