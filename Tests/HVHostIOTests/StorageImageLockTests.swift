import Foundation
import Glibc
import XCTest
@testable import HVHostIO

/// Image locking (QEMU's OFD byte-lock layout): one writer or any number of readers,
/// across opens in one process and across processes, with the holder named.
final class StorageImageLockTests: XCTestCase {
    typealias T = StorageImageTools
    private var dir = ""

    override func setUpWithError() throws { dir = try T.scratchDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    func testSecondWriterIsRefusedNamingTheHolder() throws {
        for format in DiskImageFormat.allCases {
            let path = dir + "/w-\(format.rawValue).img"
            try DiskImage.create(path: path, format: format, sectors: 128)
            let first = try AttachedDisk(path: path, mode: .persistent, owner: "VM 'web01'")
            XCTAssertThrowsError(try AttachedDisk(path: path, mode: .persistent, owner: "VM 'web02'")) { error in
                guard case .locked(_, let holder, true)? = error as? DiskError else { return XCTFail("\(error)") }
                XCTAssertTrue(holder?.hasPrefix("VM 'web01' in this process") == true, "\(error)")
                XCTAssertTrue("\(error)".contains(path), "\(error)")
            }
            // A reader is refused too while someone writes, and the writer when readers hold it.
            XCTAssertThrowsError(try DiskImage.open(path: path, writable: false, owner: "VM 'reader'")) { error in
                XCTAssertTrue("\(error)".contains("cannot open it for reading: it is locked by VM 'web01'"), "\(error)")
            }
            try first.detach(poweringOff: true)
            let again = try AttachedDisk(path: path, mode: .persistent, owner: "VM 'web02'")
            try again.detach(poweringOff: true)
        }
    }

    func testTwoReadersAreAllowedAndExcludeWriters() throws {
        let path = dir + "/r.vmdk"
        try DiskImage.create(path: path, format: .sparse, sectors: 128)
        let a = try DiskImage.open(path: path, writable: false, owner: "VM 'a'")
        let b = try DiskImage.open(path: path, writable: false, owner: "VM 'b'")
        XCTAssertThrowsError(try DiskImage.open(path: path, writable: true, owner: "VM 'c'")) { error in
            XCTAssertTrue("\(error)".contains("cannot open it for writing: it is locked by VM '"), "\(error)")
        }
        a.close()
        XCTAssertThrowsError(try DiskImage.open(path: path, writable: true, owner: "VM 'c'"))
        b.close()
        try DiskImage.open(path: path, writable: true, owner: "VM 'c'").close()
    }

    /// A disk has one redo log (DISK.REDO): a second VM attaching the same undoable disk
    /// is refused on the log its first user writes.
    func testTwoVMsCannotShareARedoLog() throws {
        let path = dir + "/base.vmdk"
        try DiskImage.create(path: path, format: .sparse, sectors: 128)
        let first = try AttachedDisk(path: path, mode: .undoable, owner: "VM 'one'")
        XCTAssertThrowsError(try AttachedDisk(path: path, mode: .undoable, owner: "VM 'two'")) { error in
            XCTAssertTrue("\(error)".contains("VM 'one'"), "\(error)")
        }
        try first.detach(poweringOff: true)
    }

    /// Another process holding the image (qemu-io, QEMU's own locks) is named by pid and
    /// command line; and QEMU refuses an image we hold for writing.
    func testLocksInteroperateWithQEMUAcrossProcesses() throws {
        _ = try T.requireQEMUImg()
        let qemuIO = "/usr/bin/qemu-io"
        guard FileManager.default.isExecutableFile(atPath: qemuIO) else { throw XCTSkip("qemu-io is not installed") }
        let path = dir + "/shared.vmdk"
        try DiskImage.create(path: path, format: .sparse, sectors: 128)

        let ours = try DiskImage.open(path: path, writable: true, owner: "VM 'ours'")
        let check = try T.qemuImg(["check", path])
        XCTAssertNotEqual(check.status, 0)
        XCTAssertTrue(check.output.contains("lock"), check.output)
        ours.close()

        // qemu-io holds the image for writing while its stdin stays open.
        let p = Process()
        p.executableURL = URL(fileURLWithPath: qemuIO)
        p.arguments = ["-f", "vmdk", path]
        let input = Pipe(), output = Pipe()
        p.standardInput = input
        p.standardOutput = output
        p.standardError = output
        try p.run()
        defer { try? input.fileHandleForWriting.close(); p.waitUntilExit() }
        // Wait until qemu-io has the image open (its prompt answers a command).
        input.fileHandleForWriting.write("read 0 512\n".data(using: .utf8)!)
        var seen = ""
        while !seen.contains("read 512/512") {
            let chunk = output.fileHandleForReading.availableData
            XCTAssertFalse(chunk.isEmpty, "qemu-io exited: \(seen)")
            if chunk.isEmpty { return }
            seen += String(decoding: chunk, as: UTF8.self)
        }
        XCTAssertThrowsError(try DiskImage.open(path: path, writable: true, owner: "VM 'ours'")) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("process \(p.processIdentifier) (\(qemuIO) -f vmdk \(path))"), text)
        }
    }
}
