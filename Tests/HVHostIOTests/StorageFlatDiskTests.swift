import Foundation
import Glibc
import XCTest
@testable import HVHostIO
@testable import HVSupport

final class StorageFlatDiskTests: XCTestCase {
    private var directory: String = ""

    override func setUpWithError() throws {
        directory = NSTemporaryDirectory() + "hv-storage-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Creates an image of `size` bytes filled with `fill`.
    private func makeImage(_ name: String, size: Int, fill: UInt8 = 0) -> String {
        let path = directory + "/" + name
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(repeating: fill, count: size)))
        return path
    }

    private func assertDiskError(_ expression: @autoclosure () throws -> Void, _ expected: DiskError,
                                 file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try expression(), file: file, line: line) { error in
            XCTAssertEqual(error as? DiskError, expected, file: file, line: line)
        }
    }

    func testOpenReportsGeometry() throws {
        let path = makeImage("disk.flat", size: 1 << 20)
        let disk = try FlatDisk(path: path, readOnly: false)
        XCTAssertEqual(disk.sectorSize, 512)
        XCTAssertEqual(disk.sectorCount, 2048)
        XCTAssertFalse(disk.isReadOnly)
        XCTAssertEqual(disk.path, path)
        let asProtocol: any VirtualDisk = disk
        XCTAssertEqual(asProtocol.sectorCount, 2048)
    }

    func testWriteReadRoundTripLandsInTheFile() throws {
        let path = makeImage("disk.flat", size: 1 << 20, fill: 0x00)
        let disk = try FlatDisk(path: path, readOnly: false)
        let pattern = (0..<(3 * 512)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
        try pattern.withUnsafeBytes { try disk.write(sector: 10, from: $0) }
        try disk.flush()

        var back = [UInt8](repeating: 0xAA, count: 3 * 512)
        try back.withUnsafeMutableBytes { try disk.read(sector: 10, into: $0) }
        XCTAssertEqual(back, pattern)

        // The neighbouring sectors are untouched.
        var around = [UInt8](repeating: 0xAA, count: 512)
        try around.withUnsafeMutableBytes { try disk.read(sector: 9, into: $0) }
        XCTAssertEqual(around, [UInt8](repeating: 0, count: 512))
        try around.withUnsafeMutableBytes { try disk.read(sector: 13, into: $0) }
        XCTAssertEqual(around, [UInt8](repeating: 0, count: 512))

        // Check the bytes on disk through a separate path: Foundation and raw pread.
        let contents = try XCTUnwrap(FileManager.default.contents(atPath: path))
        XCTAssertEqual(contents.count, 1 << 20, "a flat disk never changes its file's size")
        XCTAssertEqual(Array(contents[(10 * 512)..<(13 * 512)]), pattern)
        XCTAssertTrue(contents[0..<(10 * 512)].allSatisfy { $0 == 0 })
        XCTAssertTrue(contents[(13 * 512)...].allSatisfy { $0 == 0 })

        let fd = open(path, O_RDONLY)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd) }
        var raw = [UInt8](repeating: 0, count: 512)
        XCTAssertEqual(raw.withUnsafeMutableBytes { pread(fd, $0.baseAddress, 512, 11 * 512) }, 512)
        XCTAssertEqual(raw, Array(pattern[512..<1024]))
    }

    func testLastSectorAndLargeTransfers() throws {
        let path = makeImage("disk.flat", size: 4 << 20)
        let disk = try FlatDisk(path: path, readOnly: false)
        let last = [UInt8](repeating: 0x5A, count: 512)
        try last.withUnsafeBytes { try disk.write(sector: disk.sectorCount - 1, from: $0) }
        // One 4 MiB read of the whole disk.
        var all = [UInt8](repeating: 0xFF, count: 4 << 20)
        try all.withUnsafeMutableBytes { try disk.read(sector: 0, into: $0) }
        XCTAssertEqual(Array(all.suffix(512)), last)
        XCTAssertTrue(all.dropLast(512).allSatisfy { $0 == 0 })
    }

    func testOutOfRangeTransfersAreRefused() throws {
        let path = makeImage("disk.flat", size: 64 * 512)
        let disk = try FlatDisk(path: path, readOnly: false)
        var one = [UInt8](repeating: 0, count: 512)
        var two = [UInt8](repeating: 0, count: 1024)
        assertDiskError(try one.withUnsafeMutableBytes { try disk.read(sector: 64, into: $0) },
                        .outOfRange(path: path, sector: 64, sectors: 1, capacity: 64))
        assertDiskError(try two.withUnsafeMutableBytes { try disk.read(sector: 63, into: $0) },
                        .outOfRange(path: path, sector: 63, sectors: 2, capacity: 64))
        assertDiskError(try one.withUnsafeBytes { try disk.write(sector: UInt64.max, from: $0) },
                        .outOfRange(path: path, sector: UInt64.max, sectors: 1, capacity: 64))
        // Zero-length transfers inside (or at the end of) the disk are no-ops.
        try disk.read(sector: 64, into: UnsafeMutableRawBufferPointer(start: nil, count: 0))
        try disk.write(sector: 0, from: UnsafeRawBufferPointer(start: nil, count: 0))
        // The very last sector is fine.
        try one.withUnsafeMutableBytes { try disk.read(sector: 63, into: $0) }

        do {
            try one.withUnsafeMutableBytes { try disk.read(sector: 100, into: $0) }
            XCTFail("expected an error")
        } catch let error as DiskError {
            XCTAssertTrue(error.description.contains(path), error.description)
            XCTAssertTrue(error.description.contains("outside the disk"), error.description)
            XCTAssertEqual(error.errnoValue, ERANGE)
            XCTAssertEqual(error.path, path)
        }
    }

    func testUnalignedLengthsAreRefused() throws {
        let path = makeImage("disk.flat", size: 64 * 512)
        let disk = try FlatDisk(path: path, readOnly: false)
        var odd = [UInt8](repeating: 0, count: 100)
        assertDiskError(try odd.withUnsafeMutableBytes { try disk.read(sector: 0, into: $0) },
                        .unalignedLength(path: path, length: 100, sectorSize: 512))
        let big = [UInt8](repeating: 1, count: 513)
        assertDiskError(try big.withUnsafeBytes { try disk.write(sector: 0, from: $0) },
                        .unalignedLength(path: path, length: 513, sectorSize: 512))
        XCTAssertTrue(DiskError.unalignedLength(path: path, length: 100, sectorSize: 512).description.contains(path))
        // Nothing was written.
        XCTAssertTrue(try XCTUnwrap(FileManager.default.contents(atPath: path)).allSatisfy { $0 == 0 })
    }

    func testReadOnlyDiskRefusesWrites() throws {
        let path = makeImage("disk.flat", size: 8 * 512, fill: 0x11)
        let disk = try FlatDisk(path: path, readOnly: true)
        XCTAssertTrue(disk.isReadOnly)
        let data = [UInt8](repeating: 0x22, count: 512)
        assertDiskError(try data.withUnsafeBytes { try disk.write(sector: 0, from: $0) }, .readOnly(path: path))
        // Read-only is checked before the range.
        assertDiskError(try data.withUnsafeBytes { try disk.write(sector: 99, from: $0) }, .readOnly(path: path))
        XCTAssertEqual(DiskError.readOnly(path: path).errnoValue, EPERM)
        try disk.flush()
        var back = [UInt8](repeating: 0, count: 512)
        try back.withUnsafeMutableBytes { try disk.read(sector: 7, into: $0) }
        XCTAssertEqual(back, [UInt8](repeating: 0x11, count: 512))
        XCTAssertTrue(try XCTUnwrap(FileManager.default.contents(atPath: path)).allSatisfy { $0 == 0x11 })
    }

    func testReadOnlyOpenWorksOnReadOnlyFile() throws {
        let path = makeImage("ro.flat", size: 512)
        XCTAssertEqual(chmod(path, 0o444), 0)
        let disk = try FlatDisk(path: path, readOnly: true)
        XCTAssertEqual(disk.sectorCount, 1)
        if getuid() != 0 {   // root ignores file permissions
            do {
                _ = try FlatDisk(path: path, readOnly: false)
                XCTFail("expected permission denied")
            } catch let error as DiskError {
                XCTAssertEqual(error, .permissionDenied(path: path, errno: EACCES))
                XCTAssertTrue(error.description.contains(path), error.description)
                XCTAssertTrue(error.description.contains("permission denied"), error.description)
            }
        }
    }

    func testMissingFileErrorNamesThePath() {
        let path = directory + "/no-such-disk-flat.vmdk"
        XCTAssertThrowsError(try FlatDisk(path: path, readOnly: false)) { error in
            XCTAssertEqual(error as? DiskError, .notFound(path: path))
            XCTAssertTrue(String(describing: error).contains(path), String(describing: error))
            XCTAssertTrue(String(describing: error).contains("no such file"), String(describing: error))
            XCTAssertEqual((error as? DiskError)?.errnoValue, ENOENT)
        }
    }

    func testNonRegularFilesAreRefused() {
        assertDiskError(try _ = FlatDisk(path: directory, readOnly: true), .notRegularFile(path: directory))
        assertDiskError(try _ = FlatDisk(path: directory, readOnly: false), .notRegularFile(path: directory))
        let fifo = directory + "/fifo"
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        // Must not block opening the FIFO.
        assertDiskError(try _ = FlatDisk(path: fifo, readOnly: true), .notRegularFile(path: fifo))
    }

    func testBadImageSizesAreRefused() {
        let empty = makeImage("empty.flat", size: 0)
        XCTAssertThrowsError(try FlatDisk(path: empty, readOnly: false)) { error in
            XCTAssertEqual(error as? DiskError, .emptyImage(path: empty))
            XCTAssertTrue(String(describing: error).contains(empty))
        }
        let ragged = makeImage("ragged.flat", size: 1000)
        XCTAssertThrowsError(try FlatDisk(path: ragged, readOnly: true)) { error in
            XCTAssertEqual(error as? DiskError, .sizeNotSectorMultiple(path: ragged, size: 1000, sectorSize: 512))
            let text = String(describing: error)
            XCTAssertTrue(text.contains(ragged) && text.contains("1000") && text.contains("512"), text)
        }
    }

    func testTruncationBehindOurBackIsAnErrorNotZeros() throws {
        let path = makeImage("disk.flat", size: 16 * 512, fill: 0x33)
        let disk = try FlatDisk(path: path, readOnly: false)
        XCTAssertEqual(truncate(path, 8 * 512 + 100), 0)
        var buffer = [UInt8](repeating: 0, count: 2 * 512)
        assertDiskError(try buffer.withUnsafeMutableBytes { try disk.read(sector: 7, into: $0) },
                        .unexpectedEndOfFile(path: path, sector: 8))
        XCTAssertEqual(DiskError.unexpectedEndOfFile(path: path, sector: 8).errnoValue, EIO)
    }

    func testIOErrorTextIncludesErrno() {
        let error = DiskError.io(path: "/vmfs/volumes/a/b-flat.vmdk", operation: "write", errno: ENOSPC)
        XCTAssertEqual(error.errnoValue, ENOSPC)
        XCTAssertTrue(error.description.contains("/vmfs/volumes/a/b-flat.vmdk"))
        XCTAssertTrue(error.description.contains("write failed"))
        XCTAssertTrue(error.description.contains("No space left on device"), error.description)
        XCTAssertTrue(error.description.contains("errno \(ENOSPC)"), error.description)
    }

    func testConcurrentWritersThroughAQueue() throws {
        let path = makeImage("disk.flat", size: 256 * 512)
        let disk = try FlatDisk(path: path, readOnly: false)
        let queue = DiskIOQueue(name: "test-io", threads: 4)
        defer { queue.shutdown() }
        for sector in 0..<256 {
            queue.submit {
                let data = [UInt8](repeating: UInt8(sector), count: 512)
                try! data.withUnsafeBytes { try disk.write(sector: UInt64(sector), from: $0) }
            }
        }
        queue.drain()
        try disk.flush()
        let contents = try XCTUnwrap(FileManager.default.contents(atPath: path))
        for sector in 0..<256 {
            XCTAssertTrue(contents[(sector * 512)..<((sector + 1) * 512)].allSatisfy { $0 == UInt8(sector) })
        }
    }
}
