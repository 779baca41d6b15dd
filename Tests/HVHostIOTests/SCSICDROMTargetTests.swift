import Foundation
import XCTest
@testable import HVHostIO

/// The CD-ROM drive's MMC command set over a real image file of 300 blocks (each block
/// filled with its own number), CDB bytes in, data / status / sense out.
final class SCSICDROMTargetTests: XCTestCase {
    static let blocks = 300
    var path = ""
    var target: SCSICDROMTarget!

    override func setUpWithError() throws {
        path = NSTemporaryDirectory() + "cdrom-\(getpid())-\(name.hashValue).iso"
        var bytes = [UInt8]()
        for b in 0..<Self.blocks { bytes += [UInt8](repeating: UInt8(truncatingIfNeeded: b), count: CDROMImage.blockSize) }
        FileManager.default.createFile(atPath: path, contents: Data(bytes))
        target = SCSICDROMTarget(medium: try CDROMImage(path: path, owner: "test"), seed: "test.vmx/scsi0:1")
    }

    override func tearDown() {
        target = nil
        unlink(path)
    }

    @discardableResult
    private func run(_ cdb: [UInt8], _ direction: SCSIDataDirection = .toInitiator, buffer: Int = 0) -> (SCSIResponse, [UInt8]) {
        let b = TestBuffer(count: buffer)
        let r = target.execute(lun: 0, cdb: cdb, direction: direction, data: b)
        return (r, b.bytes)
    }

    private func assertGood(_ r: SCSIResponse, residual: UInt64 = 0, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(r, SCSIResponse(hostStatus: .ok, status: 0, sense: [], residual: residual), file: file, line: line)
    }

    private func assertCheck(_ r: SCSIResponse, _ sense: SCSISense, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(r.status, SCSIStatus.checkCondition, "\(r)", file: file, line: line)
        XCTAssertEqual(Array(r.sense.prefix(14)), Array(sense.bytes.prefix(14)), "\(r)", file: file, line: line)
    }

    static let tur: [UInt8] = [0, 0, 0, 0, 0, 0]
    static func read10(_ lba: UInt64, _ blocks: Int) -> [UInt8] { [0x28, 0] + be32(lba) + [0] + be16(blocks) + [0] }
    static func startStop(_ byte4: UInt8) -> [UInt8] { [0x1B, 0, 0, 0, byte4, 0] }
    static let eventStatus: [UInt8] = [0x4A, 0x01, 0, 0, 0x10, 0, 0, 0, 8, 0]

    func testInquiryDescribesARemovableCDDrive() {
        let (r, d) = run([0x12, 0, 0, 0, 36, 0], buffer: 36)
        assertGood(r)
        XCTAssertEqual(Array(d[0..<4]), [0x05, 0x80, 0x05, 0x02])
        XCTAssertEqual(String(decoding: d[8..<32], as: UTF8.self), "VMware  Virtual CD-ROM  ")
        let (vpd, pages) = run([0x12, 1, 0, 0, 16, 0], buffer: 16)
        assertGood(vpd, residual: 9)
        XCTAssertEqual(Array(pages[0..<7]), [0x05, 0x00, 0x00, 0x03, 0x00, 0x80, 0x83])
        assertCheck(run([0x12, 1, 0xB0, 0, 16, 0], buffer: 16).0, .invalidFieldInCDB)
    }

    func testCapacityAndReadsIn2048ByteBlocks() {
        assertGood(run(Self.tur, .none).0)
        let (cap, c) = run([0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], buffer: 8)
        assertGood(cap)
        XCTAssertEqual(c, be32(UInt64(Self.blocks - 1)) + be32(2048))
        let (r, d) = run(Self.read10(17, 2), buffer: 4096)
        assertGood(r)
        XCTAssertEqual(d, [UInt8](repeating: 17, count: 2048) + [UInt8](repeating: 18, count: 2048))
        let (r12, d12) = run([0xA8, 0] + be32(299) + be32(1) + [0, 0], buffer: 2048)
        assertGood(r12)
        XCTAssertEqual(d12, [UInt8](repeating: UInt8(truncatingIfNeeded: 299), count: 2048))
        assertCheck(run(Self.read10(299, 2), buffer: 4096).0, .lbaOutOfRange)
        // A buffer smaller than the transfer: an overrun, nothing moves.
        XCTAssertEqual(run(Self.read10(0, 2), buffer: 2048).0.hostStatus, .dataOverrun)
        // A CD-ROM drive has no writes, and no READ(6).
        assertCheck(run([0x2A, 0] + be32(0) + [0, 0, 1, 0], .fromInitiator, buffer: 2048).0, .invalidOpcode)
        assertCheck(run([0x08, 0, 0, 0, 1, 0], buffer: 2048).0, .invalidOpcode)
    }

    func testTableOfContentsInLBAAndMSF() {
        let (r, d) = run([0x43, 0, 0, 0, 0, 0, 0, 0, 100, 0], buffer: 100)
        assertGood(r, residual: 80)
        // Length 18, tracks 1..1; track 1 data at LBA 0; lead-out AAh at the capacity.
        XCTAssertEqual(Array(d.prefix(20)), [0, 18, 1, 1, 0, 0x14, 1, 0, 0, 0, 0, 0, 0, 0x14, 0xAA, 0] + be32(UInt64(Self.blocks)))
        let (m, md) = run([0x43, 0x02, 0, 0, 0, 0, 0, 0, 20, 0], buffer: 20)
        assertGood(m)
        // 00:02:00 (the pregap), and 300 + 150 frames = 00:06:00.
        XCTAssertEqual(Array(md[8..<12]), [0, 0, 2, 0])
        XCTAssertEqual(Array(md[16..<20]), [0, 0, 6, 0])
        let (lo, lod) = run([0x43, 0, 0, 0, 0, 0, 0xAA, 0, 12, 0], buffer: 12)
        assertGood(lo)
        XCTAssertEqual(Array(lod[0..<8]), [0, 10, 1, 1, 0, 0x14, 0xAA, 0])
        assertCheck(run([0x43, 0, 0, 0, 0, 0, 2, 0, 12, 0], buffer: 12).0, .invalidFieldInCDB)
        let (s, sd) = run([0x43, 0, 1, 0, 0, 0, 0, 0, 12, 0], buffer: 12)
        assertGood(s)
        XCTAssertEqual(sd, [0, 10, 1, 1, 0, 0x14, 1, 0, 0, 0, 0, 0])
        assertCheck(run([0x43, 0, 5, 0, 0, 0, 0, 0, 12, 0], buffer: 12).0, .invalidFieldInCDB)
    }

    func testGetConfigurationReportsTheCDROMProfile() {
        let (r, d) = run([0x46, 0, 0, 0, 0, 0, 0, 1, 0, 0], buffer: 256)
        assertGood(r, residual: 256 - 60)   // header, then features of 12, 12, 8, 12, 8 bytes
        XCTAssertEqual(Array(d[0..<8]), be32(56) + [0, 0, 0x00, 0x08])
        // Profile list: DVD-ROM not current, CD-ROM current.
        XCTAssertEqual(Array(d[8..<20]), [0, 0, 0x03, 8, 0x00, 0x10, 0, 0, 0x00, 0x08, 1, 0])
        // RT 2: only the Random Readable feature, with its 2048-byte blocks.
        let (one, od) = run([0x46, 2, 0, 0x10, 0, 0, 0, 0, 64, 0], buffer: 64)
        assertGood(one, residual: 64 - 20)
        XCTAssertEqual(Array(od[8..<20]), [0, 0x10, 0x01, 8] + be32(2048) + [0, 1, 0, 0])
        assertCheck(run([0x46, 3, 0, 0, 0, 0, 0, 0, 64, 0], buffer: 64).0, .invalidFieldInCDB)
    }

    func testEjectAndLoadThroughTheTray() {
        let (e0, ev0) = run(Self.eventStatus, buffer: 8)
        assertGood(e0)
        XCTAssertEqual(ev0, [0, 6, 0x04, 0x10, 0, 0x02, 0, 0], "no event, medium present")
        assertCheck(run([0x4A, 0, 0, 0, 0x10, 0, 0, 0, 8, 0], buffer: 8).0, .invalidFieldInCDB)

        // Locked: the eject is refused.
        assertGood(run([0x1E, 0, 0, 0, 1, 0], .none).0)
        assertCheck(run(Self.startStop(0x02), .none).0, .mediumRemovalPrevented)
        assertGood(run([0x1E, 0, 0, 0, 0, 0], .none).0)

        assertGood(run(Self.startStop(0x02), .none).0)
        assertCheck(run(Self.tur, .none).0, .mediumNotPresent)
        assertCheck(run(Self.read10(0, 1), buffer: 2048).0, .mediumNotPresent)
        let (_, sense) = run([0x03, 0, 0, 0, 18, 0], buffer: 18)
        XCTAssertEqual(sense[2], 0x02)
        XCTAssertEqual(sense[12], 0x3A)
        let (_, ev1) = run(Self.eventStatus, buffer: 8)
        XCTAssertEqual(Array(ev1[4..<6]), [3, 0x01], "media removal, tray open")
        let (_, ev2) = run(Self.eventStatus, buffer: 8)
        XCTAssertEqual(Array(ev2[4..<6]), [0, 0x01], "reported once")

        assertGood(run(Self.startStop(0x03), .none).0)
        assertCheck(run(Self.tur, .none).0, .mediumMayHaveChanged)
        assertGood(run(Self.tur, .none).0)
        let (_, ev3) = run(Self.eventStatus, buffer: 8)
        XCTAssertEqual(Array(ev3[4..<6]), [2, 0x02], "new media, present")
        assertGood(run(Self.read10(5, 1), buffer: 2048).0)
    }

    func testCapabilitiesModePageAndUnitAttentionAfterReset() {
        let (r, d) = run([0x5A, 0, 0x2A, 0, 0, 0, 0, 0, 64, 0], buffer: 64)
        assertGood(r, residual: 64 - 30)
        XCTAssertEqual(Array(d[0..<2]), [0, 28])
        XCTAssertEqual(Array(d[8..<10]), [0x2A, 20])
        XCTAssertEqual(d[14] & 0x29, 0x29, "tray, eject, lock")
        assertCheck(run([0x5A, 0, 0x08, 0, 0, 0, 0, 0, 64, 0], buffer: 64).0, .invalidFieldInCDB)
        assertCheck(run([0x5A, 0, 0xEA, 0, 0, 0, 0, 0, 64, 0], buffer: 64).0, .savingParametersNotSupported)

        target.reset()
        assertGood(run([0x12, 0, 0, 0, 36, 0], buffer: 36).0)      // INQUIRY is not held up
        assertCheck(run(Self.tur, .none).0, .powerOnReset)
        assertGood(run(Self.tur, .none).0)
    }
}
