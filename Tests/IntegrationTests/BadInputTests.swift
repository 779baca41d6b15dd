import Foundation
import XCTest

/// Bad configs, plugins and hosts get a clear error and harm nothing else.
final class BadInputTests: XCTestCase {
    func testMalformedVMXNamesFileAndLine() throws {
        try HostHarness.requireHost()
        let path = HostHarness.workDir + "/broken.vmx"
        try "displayName = \"broken\"\nmemsize = \"64\"\nnumvcpus \"2\"\n".write(toFile: path, atomically: true, encoding: .utf8)
        let r = HostHarness.hvhostRun(["run", path])
        XCTAssertEqual(r.status, 2, "never 1, which would read as a guest pass")
        XCTAssertTrue(r.stderr.contains("\(path):3:"), r.stderr)
        let v = HostHarness.hvhostRun(["validate", path])
        XCTAssertEqual(v.status, 2)
        XCTAssertTrue((v.stdout + v.stderr).contains("\(path):3:"), v.stdout + v.stderr)
    }

    /// `validate` lists every problem of a file in one pass: syntax, values, the plugin a
    /// device needs; `run` refuses the file listing all of its configuration problems.
    func testValidateAndRunListEveryProblemInAFile() throws {
        try HostHarness.requireHost()
        let path = HostHarness.workDir + "/many-problems.vmx"
        try """
            displayName = "many"
            memsize = "63"
            numvcpus "2"
            hv.kernel = "\(HostHarness.guest("hello"))"
            sched.cpu.shares = "lots"
            hv.device0.present = "TRUE"
            hv.device0.model = "fluxcapacitor"

            """.write(toFile: path, atomically: true, encoding: .utf8)
        let v = HostHarness.hvhostRun(["validate", "--plugin-path", HostHarness.pluginDir, path])
        XCTAssertEqual(v.status, 2, v.stderr)
        XCTAssertEqual(v.stdout, "")
        let lines = v.stderr.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.count, 4, v.stderr)
        let expected = ["\(path):2: memsize = \"63\": 63 MiB is not a multiple of 4, expected ",
                        "\(path):3: missing \"=\" in line \"numvcpus \"2\"\", expected key = \"value\"",
                        "\(path):5: sched.cpu.shares = \"lots\": not a share level or number, expected ",
                        "\(path):7: hv.device0.model = \"fluxcapacitor\": no plugin provides device model 'fluxcapacitor'"]
        for (line, prefix) in zip(lines, expected) {
            XCTAssertTrue(line.hasPrefix(prefix), "\(line)\ndoes not start with\n\(prefix)")
        }

        let r = HostHarness.hvhostRun(["run", "--plugin-path", HostHarness.pluginDir, path])
        XCTAssertEqual(r.status, 2)
        for prefix in expected.prefix(3) {
            XCTAssertTrue(r.stderr.contains("error: " + prefix), r.stderr)
        }
        XCTAssertFalse(r.stderr.contains("powered on"), r.stderr)
    }

    /// A power-off action on a disk that is not undoable is refused by `validate` and
    /// before `run` powers anything on, naming the key.
    func testUndoableActionOnAPersistentDiskIsRefusedUpFront() throws {
        try HostHarness.requireHost()
        let image = HostHarness.workDir + "/persistent-action.img"
        FileManager.default.createFile(atPath: image, contents: Data(count: 64 * 1024))
        let vmx = HostHarness.vmx("persistentaction", guest: "hello", extra: [
            "scsi0.present": "TRUE", "scsi0:0.present": "TRUE", "scsi0:0.fileName": image,
            "scsi0:0.undoableAction": "commit"])
        let message = ": scsi0:0.undoableAction = \"commit\": only undoable disks have a power-off action; this disk is persistent"
        let v = HostHarness.hvhostRun(["validate", vmx])
        XCTAssertEqual(v.status, 2)
        XCTAssertTrue(v.stderr.contains(vmx + ":"), v.stderr)
        XCTAssertTrue(v.stderr.contains(message), v.stderr)
        let r = HostHarness.hvhostRun(["run", vmx])
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.contains(message), r.stderr)
        XCTAssertFalse(r.stderr.contains("cannot power on"), "refused at power-on, not up front: " + r.stderr)
    }

    func testBadValueNamesTheKey() throws {
        try HostHarness.requireHost()
        let vmx = HostHarness.vmx("badmem", guest: "hello", extra: ["memsize": "lots"])
        let r = HostHarness.hvhostRun(["run", vmx])
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.contains("memsize"), r.stderr)
        XCTAssertTrue(r.stderr.contains("lots"), r.stderr)
    }

    func testUnknownPluginNamesModelAndSearchPath() throws {
        try HostHarness.requireHost()
        let vmx = HostHarness.vmx("unknown", guest: "hello", extra: ["hv.device0.present": "TRUE", "hv.device0.model": "fluxcapacitor"])
        let r = HostHarness.hvhostRun(["run", "--plugin-path", HostHarness.pluginDir, vmx])
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.contains("fluxcapacitor"), r.stderr)
        XCTAssertTrue(r.stderr.contains(HostHarness.pluginDir), r.stderr)
    }

    func testBadPluginsAreReportedAndTheGoodOneStillLoads() throws {
        try HostHarness.requireHost()
        let dir = HostHarness.workDir + "/mixed-plugins"
        let future = try HostHarness.buildFixturePlugin("abi_major2.c", into: dir)
        let notPlugin = try HostHarness.buildFixturePlugin("no_entry.c", into: dir)
        let edu = HostHarness.pluginDir + "/libedu.so"
        try? FileManager.default.removeItem(atPath: dir + "/libedu.so")
        try FileManager.default.copyItem(atPath: edu, toPath: dir + "/libedu.so")
        let list = HostHarness.hvhostRun(["plugins", "--plugin-path", dir])
        let text = list.stdout + list.stderr
        XCTAssertEqual(list.status, 0)
        XCTAssertTrue(text.contains("\(future): ABI major version 2, this host speaks 1"), text)
        XCTAssertTrue(text.contains("\(notPlugin): no symbol hv_plugin_entry_v1"), text)
        XCTAssertTrue(text.contains("org.hvproject.example.edu"), text)
        // The VM that needs the good plugin still runs.
        let vmx = HostHarness.vmx("mixed", guest: "edu", extra: ["hv.device0.present": "TRUE", "hv.device0.model": "edu"])
        let r = HostHarness.hvhostRun(["run", "--plugin-path", dir, vmx])
        XCTAssertEqual(r.status, 1, r.stderr)
    }

    func testOverlappingBARsKeepThatVMOffAndTheOtherRunning() throws {
        try HostHarness.requireHost()
        let dir = HostHarness.workDir + "/overlap-plugins"
        _ = try HostHarness.buildFixturePlugin("overlapping_bars.c", into: dir)
        let bad = HostHarness.vmx("overlap", guest: "pci-scan", extra: ["hv.device0.present": "TRUE", "hv.device0.model": "overlap"])
        let good = HostHarness.vmx("bystander", guest: "hello", extra: ["hv.serial": "file:\(HostHarness.workDir)/bystander.log"])
        let r = HostHarness.hvhostRun(["run", "--plugin-path", dir, bad, good])
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.contains("BAR1: index already used"), r.stderr)
        XCTAssertTrue(r.stderr.contains("cannot power on overlap"), r.stderr)
        XCTAssertTrue(r.stderr.contains("bystander: guest exit code 0"), r.stderr)
    }

    /// `--console PATH` never deletes a file that is not a socket: the host refuses to start.
    func testConsolePathHoldingAFileIsRefused() throws {
        try HostHarness.requireHost()
        let file = HostHarness.workDir + "/not-a-socket"
        try "precious\n".write(toFile: file, atomically: true, encoding: .utf8)
        let r = HostHarness.hvhostRun(["run", "--console", file, HostHarness.vmx("consolefile", guest: "hello")])
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertTrue(r.stderr.contains("\(file) exists and is not a socket (a regular file)"), r.stderr)
        XCTAssertEqual(try String(contentsOfFile: file, encoding: .utf8), "precious\n")
    }

    func testMissingKernelNamesTheFile() throws {
        try HostHarness.requireHost()
        let vmx = HostHarness.writeVMX("nokernel", ["displayName": "nokernel", "memsize": "64", "hv.kernel": "/nonexistent/guest.elf"])
        let r = HostHarness.hvhostRun(["run", vmx])
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.contains("/nonexistent/guest.elf"), r.stderr)
    }

    func testMissingKVMDeviceIsExplained() throws {
        try HostHarness.requireHost()
        let vmx = HostHarness.vmx("nokvm", guest: "hello")
        let r = HostHarness.hvhostRun(["run", "--kvm-device", "/nonexistent/kvm", vmx])
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.contains("/nonexistent/kvm does not exist"), r.stderr)
    }
}
