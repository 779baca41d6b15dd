import Foundation
import XCTest

/// Disk modes and image locks through `hvhost run`: the VM attaches its disks at
/// power-on (a SCSI device plugin opening unit 0, here the disk probe fixture) and
/// applies each mode at power-off; two VMs never write one image.
final class DiskModeTests: XCTestCase {
    private static func probePlugins() throws -> String {
        let dir = HostHarness.workDir + "/diskprobe-plugins"
        _ = try HostHarness.buildFixturePlugin("../../HVPluginHostTests/Fixtures/disk_probe.c", into: dir)
        return dir
    }

    private func makeDisk(_ name: String) -> String {
        let path = HostHarness.workDir + "/\(name).vmdk"
        try? FileManager.default.removeItem(atPath: path)
        try? FileManager.default.removeItem(atPath: path + ".REDO")
        let r = HostHarness.hvhostRun(["disk", "create", "--size", "1M", path])
        XCTAssertEqual(r.status, 0, r.stderr)
        return path
    }

    private func vmx(_ name: String, disk: String, mode: String, action: String? = nil) -> String {
        var extra = ["scsi0.present": "TRUE", "scsi0.virtualDev": "diskprobe", "scsi0:0.present": "TRUE",
                     "scsi0:0.fileName": disk, "scsi0:0.mode": mode]
        if let action { extra["scsi0:0.undoableAction"] = action }
        return HostHarness.vmx(name, guest: "hello", extra: extra)
    }

    /// After a power-off: nonpersistent and undoable-commit/discard leave no redo log;
    /// undoable-keep and append keep it, and `hvhost disk commit` folds it.
    func testEachModeAtPowerOff() throws {
        try HostHarness.requireHost()
        let plugins = try Self.probePlugins()
        let cases: [(mode: String, action: String?, keepsRedo: Bool)] = [
            ("persistent", nil, false), ("nonpersistent", nil, false), ("undoable", nil, true),
            ("undoable", "commit", false), ("undoable", "discard", false), ("append", nil, true)]
        for c in cases {
            let name = "mode-\(c.mode)-\(c.action ?? "default")"
            let disk = makeDisk(name)
            let r = HostHarness.hvhostRun(["run", "--plugin-path", plugins, vmx(name, disk: disk, mode: c.mode, action: c.action)])
            XCTAssertEqual(r.status, 1, "\(name): \(r.stdout)\(r.stderr)")   // the hello guest's pass
            XCTAssertEqual(access(disk + ".REDO", F_OK) == 0, c.keepsRedo, "\(name): \(r.stderr)")
            guard c.keepsRedo else { continue }
            let info = HostHarness.hvhostRun(["disk", "info", disk + ".REDO"])
            XCTAssertTrue(info.stdout.contains("parent: \(disk)") && info.stdout.contains("redo log made in \(c.mode) mode"), info.stdout)
            XCTAssertEqual(HostHarness.hvhostRun(["disk", "check", disk + ".REDO"]).status, 0)
            let commit = HostHarness.hvhostRun(["disk", "commit", disk])
            XCTAssertEqual(commit.status, 0, commit.stderr)
            XCTAssertFalse(access(disk + ".REDO", F_OK) == 0)
        }
    }

    /// Two VMs of one host naming the same disk: the second is refused power-on, the
    /// message naming the disk and the VM holding it.
    func testTwoVMsCannotWriteOneDisk() throws {
        try HostHarness.requireHost()
        let plugins = try Self.probePlugins()
        let disk = makeDisk("shared")
        let first = vmx("first", disk: disk, mode: "persistent")
        let second = vmx("second", disk: disk, mode: "persistent")
        let r = HostHarness.hvhostRun(["run", "--plugin-path", plugins, first, second])
        XCTAssertEqual(r.status, 2, r.stdout + r.stderr)
        XCTAssertTrue(r.stderr.contains("virtual disk '\(disk)': cannot open it for writing: it is locked by VM 'first' in this process"),
                      r.stderr)
    }

    /// A disk in use by another hvhost process: refused, naming that process.
    func testSecondHostProcessIsRefusedNamingTheFirst() throws {
        try HostHarness.requireHost()
        let plugins = try Self.probePlugins()
        let disk = makeDisk("cross-process")
        let first = HostHarness.vmx("holder", guest: "bench", extra: [
            "hv.cmdline": "idle=60", "scsi0.present": "TRUE", "scsi0.virtualDev": "diskprobe", "scsi0:0.present": "TRUE",
            "scsi0:0.fileName": disk, "scsi0:0.mode": "undoable", "scsi0:0.undoableAction": "discard"])
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: HostHarness.hvhost)
        holder.arguments = ["run", "--plugin-path", plugins, first]
        let err = Pipe()
        holder.standardError = err
        holder.standardOutput = FileHandle.nullDevice
        try holder.run()
        defer {
            holder.terminate()
            holder.waitUntilExit()
        }
        var log = ""
        while !log.contains("holder: powered on") {
            let chunk = err.fileHandleForReading.availableData
            if chunk.isEmpty { return XCTFail("the holder exited before powering on: \(log)") }
            log += String(decoding: chunk, as: UTF8.self)
        }
        // The holder writes the redo log (exclusive) over the base (shared): the intruder
        // is refused on the log, and so is a commit.
        let second = vmx("intruder", disk: disk, mode: "persistent")
        let r = HostHarness.hvhostRun(["run", "--plugin-path", plugins, second])
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertTrue(r.stderr.contains("virtual disk '\(disk).REDO': cannot open it for reading: it is locked by process \(holder.processIdentifier) ("), r.stderr)
        XCTAssertTrue(r.stderr.contains("hvhost run --plugin-path \(plugins) \(first))"), r.stderr)
        let check = HostHarness.hvhostRun(["disk", "commit", disk])
        XCTAssertEqual(check.status, 2)
        XCTAssertTrue(check.stderr.contains("locked by process \(holder.processIdentifier)"), check.stderr)
    }
}
