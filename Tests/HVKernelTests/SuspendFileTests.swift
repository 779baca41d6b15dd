import Foundation
import XCTest
@testable import HVBackendKVM
@testable import HVDevices
@testable import HVHostIO
@testable import HVKernel
@testable import HVMemory
@testable import HVSched
@testable import HVSupport

/// The suspend file container: sections, the sparse memory section, the checksum, and
/// the refusals a resume relies on.
final class SuspendFileTests: XCTestCase {
    private func path(_ name: String) -> String { NSTemporaryDirectory() + "suspend-\(getpid())-\(name)" }

    private func bytes(_ path: String) throws -> [UInt8] { try [UInt8](Data(contentsOf: URL(fileURLWithPath: path))) }

    private func write(_ bytes: [UInt8], to path: String) {
        FileManager.default.createFile(atPath: path, contents: Data(bytes))
    }

    /// Rewrites the trailer so that an edited file checksums again.
    private func resealed(_ file: [UInt8]) -> [UInt8] {
        var body = Array(file.dropLast(4))
        var crc = CRC32()
        body.withUnsafeBytes { crc.update($0) }
        for i in 0..<4 { body.append(UInt8(truncatingIfNeeded: crc.value >> (8 * UInt32(i)))) }
        return body
    }

    private func expectError(_ path: String, _ text: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try SuspendImage(path: path), file: file, line: line) {
            XCTAssertTrue("\($0)".contains(text), "\($0)", file: file, line: line)
        }
    }

    func testCRC32IsZlibs() {
        var crc = CRC32()
        Array("123456789".utf8).withUnsafeBytes { crc.update($0) }
        XCTAssertEqual(crc.value, 0xCBF4_3926)
    }

    /// Sections come back as written; only pages that are not all zero are stored.
    func testSectionsAndSparseMemoryRoundTrip() throws {
        let memory = try GuestMemory(size: 1 << 20)
        try memory.write([1, 2, 3], at: 0x1000)
        try memory.write([0xFF], at: 0xF_FFFF)
        let p = path("roundtrip")
        let w = try SuspendFileWriter(path: p)
        try w.section("chipset", version: 1, [9, 8, 7])
        try w.memorySection(memory)
        try w.section("pci", version: 1, [])
        try w.finish()
        XCTAssertFalse(FileManager.default.fileExists(atPath: p + ".tmp"))
        let size = try bytes(p).count
        XCTAssertLessThan(size, 3 * 4096, "two non-zero pages of 256 are stored, not 1 MiB")

        let image = try SuspendImage(path: p)
        XCTAssertEqual(try image.section("chipset", maxVersion: 1).payload, [9, 8, 7])
        XCTAssertEqual(try image.section("pci", maxVersion: 1).payload, [])
        let fresh = try GuestMemory(size: 1 << 20)
        try image.restoreMemory(into: fresh)
        XCTAssertEqual(try fresh.read(at: 0x1000, count: 3), [1, 2, 3])
        XCTAssertEqual(try fresh.read(at: 0xF_FFFF, count: 1), [0xFF])
        XCTAssertThrowsError(try image.restoreMemory(into: GuestMemory(size: 2 << 20))) {
            XCTAssertTrue("\($0)".contains("this VM has 2097152 bytes of RAM"), "\($0)")
        }
        XCTAssertThrowsError(try image.section("chipset", maxVersion: 0)) {
            XCTAssertTrue("\($0)".contains("section 'chipset' version 1; this hvhost reads up to version 0"), "\($0)")
        }
    }

    func testDamagedForeignAndNewerFilesAreRefused() throws {
        let p = path("good")
        let w = try SuspendFileWriter(path: p)
        try w.section("bogus", version: 1, [1, 2, 3, 4])
        try w.finish()
        let good = try bytes(p)
        XCTAssertThrowsError(try SuspendImage(path: p).configuration()) {
            XCTAssertTrue("\($0)".contains("section 'bogus' is not one this hvhost knows"), "\($0)")
        }

        var flipped = good
        flipped[20] ^= 1
        write(flipped, to: path("flipped"))
        expectError(path("flipped"), "checksum mismatch")
        write(Array(good.prefix(good.count - 9)), to: path("short"))
        expectError(path("short"), "checksum mismatch")
        write(Array("displayName = x\n".utf8) + [UInt8](repeating: 0, count: 16), to: path("foreign"))
        expectError(path("foreign"), "not a suspend file (no HVSUSPND header)")
        var newer = good
        newer[8] = 2
        write(resealed(newer), to: path("newer"))
        expectError(path("newer"), "suspend format version 2; this hvhost reads version 1")
        // A section length that runs past the end, with a valid checksum.
        var long = good
        long[16 + 4 + 5 + 4] = 0xFF
        write(resealed(long), to: path("long"))
        expectError(path("long"), "section 'bogus' runs past the end of the file")
    }

    /// A memory section naming a page outside RAM is refused, not written somewhere.
    func testMemoryPageOutsideRAMIsRefused() throws {
        let p = path("outside")
        let w = try SuspendFileWriter(path: p)
        var e = StateEncoder()
        e.u64(1 << 20)
        e.u32(4096)
        e.u64(1)
        e.u64(0x20_0000)
        try w.beginSection("memory", version: 1, length: 28 + 4096)
        try w.write(e.bytes + [UInt8](repeating: 0xAA, count: 4096))
        try w.finish()
        let image = try SuspendImage(path: p)
        XCTAssertThrowsError(try image.restoreMemory(into: GuestMemory(size: 1 << 20))) {
            XCTAssertTrue("\($0)".contains("has a page at 0x200000, outside this VM's RAM"), "\($0)")
        }
    }
}
