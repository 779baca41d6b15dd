import Foundation
import Glibc
import XCTest
@testable import HVHostIO

/// The four ESX disk modes across two power cycles (attach, write, detach at power-off,
/// attach again): what survives and what is discarded, and commit folding a redo log.
final class StorageDiskModeTests: XCTestCase {
    typealias T = StorageImageTools
    private var dir = ""
    private var base = ""
    private let original = T.pattern(77, count: 256 * 512)

    override func setUpWithError() throws {
        dir = try T.scratchDirectory()
        base = dir + "/disk.vmdk"
        try DiskImage.create(path: base, format: .sparse, sectors: 2048)
        let d = try DiskImage.open(path: base, writable: true, owner: "setup")
        try T.write(d, sector: 0, original)
        d.close()
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    private var redo: String { base + ".REDO" }
    private var redoExists: Bool { access(redo, F_OK) == 0 }

    /// One power cycle: attach, write `value` at sector 10, check it reads back, power off.
    private func powerCycle(_ mode: DiskMode, action: UndoableAction = .keep, writing value: UInt64,
                            file: StaticString = #filePath, line: UInt = #line) throws -> [UInt8] {
        let disk = try AttachedDisk(path: base, mode: mode, undoableAction: action, owner: "VM 'test'")
        let before = try T.read(disk, sector: 10, sectors: 4)
        try T.write(disk, sector: 10, T.pattern(value, count: 4 * 512))
        XCTAssertEqual(try T.read(disk, sector: 10, sectors: 4), T.pattern(value, count: 4 * 512), file: file, line: line)
        try disk.detach(poweringOff: true)
        return before
    }

    /// What the base disk itself holds at sector 10.
    private func baseSectors() throws -> [UInt8] {
        let d = try DiskImage.open(path: base, writable: false, owner: "test")
        defer { d.close() }
        return try T.read(d, sector: 10, sectors: 4)
    }

    private var originalAt10: [UInt8] { Array(original[10 * 512..<14 * 512]) }

    func testPersistentWritesGoToTheDisk() throws {
        XCTAssertEqual(try powerCycle(.persistent, writing: 1), originalAt10)
        XCTAssertFalse(redoExists)
        XCTAssertEqual(try baseSectors(), T.pattern(1, count: 2048))
        XCTAssertEqual(try powerCycle(.persistent, writing: 2), T.pattern(1, count: 2048), "the first cycle's write survived")
        XCTAssertEqual(try baseSectors(), T.pattern(2, count: 2048))
    }

    func testNonpersistentDiscardsAtPowerOff() throws {
        XCTAssertEqual(try powerCycle(.nonpersistent, writing: 1), originalAt10)
        XCTAssertFalse(redoExists, "the redo log is deleted at power-off")
        XCTAssertEqual(try powerCycle(.nonpersistent, writing: 2), originalAt10, "the first cycle's write is gone")
        XCTAssertEqual(try baseSectors(), originalAt10)
    }

    /// A reset or a suspend is not a power-off: the nonpersistent log carries on; a log
    /// left by a crash is discarded at the next power-on.
    func testNonpersistentSurvivesResetButNotACrash() throws {
        let first = try AttachedDisk(path: base, mode: .nonpersistent, owner: "VM 'test'")
        try T.write(first, sector: 10, T.pattern(1, count: 2048))
        try first.detach(poweringOff: false)
        XCTAssertTrue(redoExists)
        let afterReset = try AttachedDisk(path: base, mode: .nonpersistent, owner: "VM 'test'", continuing: true)
        XCTAssertEqual(try T.read(afterReset, sector: 10, sectors: 4), T.pattern(1, count: 2048))
        try afterReset.detach(poweringOff: false)   // as if the process died: the log stays
        let fresh = try AttachedDisk(path: base, mode: .nonpersistent, owner: "VM 'test'")
        XCTAssertEqual(try T.read(fresh, sector: 10, sectors: 4), originalAt10, "a crashed run's changes are discarded")
        try fresh.detach(poweringOff: true)
        XCTAssertFalse(redoExists)
    }

    func testUndoableKeepCarriesTheRedoLogAcrossPowerCycles() throws {
        XCTAssertEqual(try powerCycle(.undoable, writing: 1), originalAt10)
        XCTAssertTrue(redoExists)
        XCTAssertEqual(try baseSectors(), originalAt10, "the base is untouched")
        XCTAssertEqual(try powerCycle(.undoable, writing: 2), T.pattern(1, count: 2048), "kept across the power-off")
        XCTAssertEqual(try baseSectors(), originalAt10)
        XCTAssertEqual(try RedoLog.recordedMode(redo), .undoable)
    }

    func testUndoableCommitFoldsTheRedoLogAtPowerOff() throws {
        XCTAssertEqual(try powerCycle(.undoable, action: .commit, writing: 1), originalAt10)
        XCTAssertFalse(redoExists)
        XCTAssertEqual(try baseSectors(), T.pattern(1, count: 2048))
        XCTAssertEqual(try powerCycle(.undoable, action: .commit, writing: 2), T.pattern(1, count: 2048))
        XCTAssertEqual(try baseSectors(), T.pattern(2, count: 2048))
        // The rest of the disk is as before.
        let d = try DiskImage.open(path: base, writable: false, owner: "t")
        XCTAssertEqual(try T.read(d, sector: 0, sectors: 10), Array(original[0..<10 * 512]))
        XCTAssertEqual(try T.read(d, sector: 14, sectors: 242), Array(original.suffix(from: 14 * 512)))
        d.close()
    }

    func testUndoableDiscardDropsTheRedoLogAtPowerOff() throws {
        XCTAssertEqual(try powerCycle(.undoable, action: .discard, writing: 1), originalAt10)
        XCTAssertFalse(redoExists)
        XCTAssertEqual(try powerCycle(.undoable, action: .discard, writing: 2), originalAt10)
        XCTAssertEqual(try baseSectors(), originalAt10)
    }

    /// append: the log grows across power cycles until `commit`, which folds it in.
    func testAppendGrowsUntilCommit() throws {
        XCTAssertEqual(try powerCycle(.append, writing: 1), originalAt10)
        let size1 = try FileManager.default.attributesOfItem(atPath: redo)[.size] as! UInt64
        let disk = try AttachedDisk(path: base, mode: .append, owner: "VM 'test'")
        XCTAssertEqual(try T.read(disk, sector: 10, sectors: 4), T.pattern(1, count: 2048))
        try T.write(disk, sector: 1500, T.pattern(3, count: 512))
        try disk.detach(poweringOff: true)
        XCTAssertGreaterThan(try FileManager.default.attributesOfItem(atPath: redo)[.size] as! UInt64, size1, "it grew")
        XCTAssertEqual(try baseSectors(), originalAt10)

        XCTAssertEqual(try RedoLog.commit(redo, owner: "hvhost disk commit"), 2, "grains 0 and 11")
        XCTAssertFalse(redoExists)
        XCTAssertEqual(try baseSectors(), T.pattern(1, count: 2048))
        let d = try DiskImage.open(path: base, writable: false, owner: "t")
        XCTAssertEqual(try T.read(d, sector: 1500, sectors: 1), T.pattern(3, count: 512))
        d.close()
        XCTAssertEqual(DiskImageCheck.problems(path: base), [])
    }

    /// Switching a disk with a pending undoable/append log to persistent or nonpersistent
    /// would silently bypass it: refused, naming the log and how to resolve it.
    func testPendingRedoLogBlocksModesThatWouldBypassIt() throws {
        _ = try powerCycle(.append, writing: 1)
        for mode in [DiskMode.persistent, .nonpersistent] {
            XCTAssertThrowsError(try AttachedDisk(path: base, mode: mode, owner: "VM 'test'")) { error in
                let text = "\(error)"
                XCTAssertTrue(text.contains(redo) && text.contains("hvhost disk commit") && text.contains("append mode"), text)
            }
        }
        // undoable continues on it.
        XCTAssertEqual(try powerCycle(.undoable, writing: 2), T.pattern(1, count: 2048))
    }

    /// A redo log works over every base format, with the base read-only (shared lock).
    func testRedoLogsOverFlatAndMonolithicFlatBases() throws {
        for format in [DiskImageFormat.flat, .monolithicFlat] {
            let path = dir + "/other-\(format.rawValue).vmdk"
            try DiskImage.create(path: path, format: format, sectors: 1024)
            let disk = try AttachedDisk(path: path, mode: .undoable, owner: "VM 'test'")
            try T.write(disk, sector: 3, T.pattern(8, count: 512))
            // The base is shared-locked: a reader may open it, a writer may not.
            let reader = try DiskImage.open(path: path, writable: false, owner: "reader")
            XCTAssertEqual(try T.read(reader, sector: 3, sectors: 1), [UInt8](repeating: 0, count: 512))
            reader.close()
            XCTAssertThrowsError(try DiskImage.open(path: path, writable: true, owner: "writer"))
            try disk.detach(poweringOff: true)
            let again = try AttachedDisk(path: path, mode: .undoable, undoableAction: .commit, owner: "VM 'test'")
            XCTAssertEqual(try T.read(again, sector: 3, sectors: 1), T.pattern(8, count: 512))
            try again.detach(poweringOff: true)
            let d = try DiskImage.open(path: path, writable: false, owner: "t")
            XCTAssertEqual(try T.read(d, sector: 3, sectors: 1), T.pattern(8, count: 512), "\(format) committed")
            d.close()
        }
    }
}
