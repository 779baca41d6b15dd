import Foundation
import XCTest
@testable import HVHostIO

/// The SCSI target's command set, CDB byte vector in, data / status / sense / residual
/// out, over an in-memory disk of 2048 blocks (1 MiB).
final class SCSIDiskTargetTests: XCTestCase {
    var disk: MemoryDisk!
    var target: SCSIDiskTarget!

    override func setUp() {
        disk = MemoryDisk(sectors: 2048)
        target = SCSIDiskTarget(disk: disk, seed: "test.vmx/scsi0:0")
    }

    private func use(_ d: MemoryDisk) {
        disk = d
        target = SCSIDiskTarget(disk: d, seed: "test.vmx/scsi0:0")
    }

    /// Runs `cdb` with a buffer of `buffer` bytes (or holding `data`); returns the response and the buffer.
    @discardableResult
    private func run(_ cdb: [UInt8], _ direction: SCSIDataDirection = .toInitiator, buffer: Int = 0, data: [UInt8]? = nil,
                     lun: UInt32 = 0) -> (SCSIResponse, [UInt8]) {
        let b = data.map { TestBuffer($0) } ?? TestBuffer(count: buffer)
        let r = target.execute(lun: lun, cdb: cdb, direction: direction, data: b)
        return (r, b.bytes)
    }

    private func assertGood(_ r: SCSIResponse, residual: UInt64 = 0, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(r, SCSIResponse(hostStatus: .ok, status: 0, sense: [], residual: residual), file: file, line: line)
    }

    /// CHECK CONDITION with fixed-format sense KEY/ASC/ASCQ (and nothing else set unless `information`).
    private func assertCheck(_ r: SCSIResponse, _ key: UInt8, _ asc: UInt8, _ ascq: UInt8 = 0, information: UInt32? = nil,
                             residual: UInt64? = nil, file: StaticString = #filePath, line: UInt = #line) {
        var expected: [UInt8] = [information == nil ? 0x70 : 0xF0, 0, key, 0, 0, 0, 0, 10, 0, 0, 0, 0, asc, ascq, 0, 0, 0, 0]
        if let information { expected.replaceSubrange(3..<7, with: be32(UInt64(information))) }
        XCTAssertEqual(r.hostStatus, .ok, file: file, line: line)
        XCTAssertEqual(r.status, 0x02, "CHECK CONDITION", file: file, line: line)
        XCTAssertEqual(r.sense, expected, "\(r)", file: file, line: line)
        if let residual { XCTAssertEqual(r.residual, residual, file: file, line: line) }
    }

    static func read10(_ lba: UInt64, _ blocks: Int, flags: UInt8 = 0) -> [UInt8] { [0x28, flags] + be32(lba) + [0] + be16(blocks) + [0] }
    static func write10(_ lba: UInt64, _ blocks: Int, flags: UInt8 = 0) -> [UInt8] { [0x2A, flags] + be32(lba) + [0] + be16(blocks) + [0] }
    static func read16(_ lba: UInt64, _ blocks: UInt64) -> [UInt8] { [0x88, 0] + be64(lba) + be32(blocks) + [0, 0] }
    static let tur: [UInt8] = [0, 0, 0, 0, 0, 0]

    static func pattern(_ count: Int, seed: Int) -> [UInt8] { (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ seed) } }

    // MARK: INQUIRY

    func testStandardInquiry() {
        let (r, d) = run([0x12, 0, 0, 0, 36, 0], buffer: 36)
        assertGood(r)
        XCTAssertEqual(Array(d[0..<8]), [0x00, 0x00, 0x05, 0x12, 31, 0x00, 0x00, 0x02])
        XCTAssertEqual(Array(d[8..<36]), Array("VMware  Virtual disk    1.0 ".utf8))
        // Allocation length 5 into a 64-byte buffer: 5 bytes, the rest is residual.
        let (short, d5) = run([0x12, 0, 0, 0, 5, 0], buffer: 64)
        assertGood(short, residual: 59)
        XCTAssertEqual(Array(d5[0..<6]), [0x00, 0x00, 0x05, 0x12, 31, 0xEE])
    }

    func testInquiryVitalProductDataPages() {
        XCTAssertEqual(run([0x12, 1, 0x00, 0, 255, 0], buffer: 255).1.prefix(10), [0, 0, 0, 6, 0x00, 0x80, 0x83, 0xB0, 0xB1, 0xB2])
        let (r80, serial) = run([0x12, 1, 0x80, 0, 255, 0], buffer: 255)
        assertGood(r80, residual: 255 - 20)
        XCTAssertEqual(Array(serial[0..<4]), [0, 0x80, 0, 16])
        XCTAssertEqual(String(decoding: serial[4..<20], as: UTF8.self), target.serial)
        XCTAssertEqual(target.serial.count, 16)
        XCTAssertEqual(SCSIDiskTarget(disk: disk, seed: "test.vmx/scsi0:0").serial, target.serial, "stable for a seed")
        XCTAssertNotEqual(SCSIDiskTarget(disk: disk, seed: "test.vmx/scsi0:1").serial, target.serial)

        let id = run([0x12, 1, 0x83, 0, 255, 0], buffer: 255).1
        XCTAssertEqual(Array(id[0..<2]), [0, 0x83])
        XCTAssertEqual(Array(id[4..<8]), [0x01, 0x03, 0x00, 0x08], "binary NAA designator, LU")
        XCTAssertEqual(Array(id[8..<11]), [0x50, 0x05, 0x05], "NAA 5, OUI 00-50-56")
        XCTAssertEqual(id[11] >> 4, 0x6)
        XCTAssertEqual(Array(id[16..<20]), [0x02, 0x01, 0x00, 24], "ASCII T10 vendor id designator")
        XCTAssertEqual(String(decoding: id[20..<44], as: UTF8.self), "VMware  " + target.serial)
        XCTAssertEqual(Int(id[2]) << 8 | Int(id[3]), 40)

        let limits = run([0x12, 1, 0xB0, 0, 64, 0], buffer: 64).1
        XCTAssertEqual(Array(limits[0..<5]), [0, 0xB0, 0, 0x3C, 0x01], "WSNZ")
        XCTAssertEqual(Array(limits[20..<32]), be32(0x40_0000) + be32(64) + be32(8), "unmap limits, 4 KiB granularity")
        XCTAssertEqual(Array(limits[36..<44]), be64(0x40_0000), "maximum WRITE SAME length")
        XCTAssertEqual(Array(run([0x12, 1, 0xB1, 0, 64, 0], buffer: 64).1[0..<4]), [0, 0xB1, 0, 0x3C])
        XCTAssertEqual(Array(run([0x12, 1, 0xB2, 0, 8, 0], buffer: 8).1), [0, 0xB2, 0, 4, 0, 0xC0, 0x02, 0], "LBPU, LBPWS, thin")
    }

    func testInquiryInvalidFields() {
        assertCheck(run([0x12, 0, 0x80, 0, 36, 0], buffer: 36).0, 0x05, 0x24, residual: 36)   // page without EVPD
        assertCheck(run([0x12, 1, 0x99, 0, 36, 0], buffer: 36).0, 0x05, 0x24)                 // unknown VPD page
        assertCheck(run([0x12, 2, 0, 0, 36, 0], buffer: 36).0, 0x05, 0x24)                    // CMDDT
    }

    func testADiskWithoutDiscardOffersNoThinProvisioning() {
        use(MemoryDisk(sectors: 2048, discard: false))
        XCTAssertEqual(run([0x12, 1, 0x00, 0, 255, 0], buffer: 255).1.prefix(9), [0, 0, 0, 5, 0x00, 0x80, 0x83, 0xB0, 0xB1])
        assertCheck(run([0x12, 1, 0xB2, 0, 8, 0], buffer: 8).0, 0x05, 0x24)
        XCTAssertEqual(run([0x9E, 0x10] + be64(0) + be32(32) + [0, 0], buffer: 32).1[14], 0, "no LBPME")
        assertCheck(run([0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], .fromInitiator, buffer: 24).0, 0x05, 0x20)
        XCTAssertEqual(Array(run([0x12, 1, 0xB0, 0, 64, 0], buffer: 64).1[20..<32]), [UInt8](repeating: 0, count: 12))
    }

    // MARK: Capacity, LUNs, sense

    func testReadCapacity10And16() {
        let (r10, d10) = run([0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], buffer: 8)
        assertGood(r10)
        XCTAssertEqual(d10, [0, 0, 0x07, 0xFF, 0, 0, 0x02, 0x00])
        assertCheck(run([0x25, 0, 0, 0, 0, 1, 0, 0, 0, 0], buffer: 8).0, 0x05, 0x24)       // LBA without PMI
        assertGood(run([0x25, 0, 0, 0, 0, 1, 0, 0, 1, 0], buffer: 8).0)                     // with PMI

        let (r16, d16) = run([0x9E, 0x10] + be64(0) + be32(32) + [0, 0], buffer: 32)
        assertGood(r16)
        XCTAssertEqual(Array(d16[0..<16]), be64(2047) + be32(512) + [0, 0, 0xC0, 0], "LBPME, LBPRZ")
        let (short, d12) = run([0x9E, 0x10] + be64(0) + be32(12) + [0, 0], buffer: 32)
        assertGood(short, residual: 20)
        XCTAssertEqual(d12[12], 0xEE, "allocation length 12")
        assertCheck(run([0x9E, 0x11] + be64(0) + be32(32) + [0, 0], buffer: 32).0, 0x05, 0x24)   // other service action
    }

    func testReadCapacity10OfADiskBeyond2TiB() {
        use(MemoryDisk(sectors: 1 << 33))
        XCTAssertEqual(run([0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], buffer: 8).1, [0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 2, 0])
        XCTAssertEqual(Array(run([0x9E, 0x10] + be64(0) + be32(32) + [0, 0], buffer: 32).1[0..<8]), be64((1 << 33) - 1))
    }

    func testReportLuns() {
        let (r, d) = run([0xA0, 0, 0, 0, 0, 0] + be32(16) + [0, 0], buffer: 16)
        assertGood(r)
        XCTAssertEqual(d, [0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
        let (all, dAll) = run([0xA0, 0, 0x02, 0, 0, 0] + be32(16) + [0, 0], buffer: 16)
        assertGood(all)
        XCTAssertEqual(dAll, d)
        let (wellKnown, dWellKnown) = run([0xA0, 0, 0x01, 0, 0, 0] + be32(16) + [0, 0], buffer: 16)
        assertGood(wellKnown, residual: 8)
        XCTAssertEqual(Array(dWellKnown[0..<8]), [UInt8](repeating: 0, count: 8), "no well-known LUNs")
        assertCheck(run([0xA0, 0, 0, 0, 0, 0] + be32(3) + [0, 0], buffer: 16).0, 0x05, 0x24)    // allocation < 4
        assertCheck(run([0xA0, 0, 0x10, 0, 0, 0] + be32(16) + [0, 0], buffer: 16).0, 0x05, 0x24) // select report 10h
    }

    func testRequestSense() {
        let (r, d) = run([0x03, 0, 0, 0, 18, 0], buffer: 18)
        assertGood(r)
        XCTAssertEqual(d, [0x70, 0, 0, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], "NO SENSE")
        assertCheck(run([0x03, 1, 0, 0, 18, 0], buffer: 18).0, 0x05, 0x24)   // descriptor format
    }

    /// An initiator without auto-sense asks with REQUEST SENSE right after the failure.
    func testRequestSenseReturnsTheLastFailuresSenseOnce() {
        assertCheck(run(Self.read10(5000, 1), buffer: 512).0, 0x05, 0x21)
        let (r, d) = run([0x03, 0, 0, 0, 18, 0], buffer: 18)
        assertGood(r)
        XCTAssertEqual([d[0], d[2], d[12], d[13]], [0x70, 0x05, 0x21, 0x00])
        XCTAssertEqual(run([0x03, 0, 0, 0, 18, 0], buffer: 18).1[2], 0, "then NO SENSE")
        // Any other command in between forgets it.
        assertCheck(run([0x01, 0, 0, 0, 0, 0], .none).0, 0x05, 0x20)
        assertGood(run(Self.tur, .none).0)
        XCTAssertEqual(run([0x03, 0, 0, 0, 18, 0], buffer: 18).1[2], 0)
    }

    func testAbsentLogicalUnit() {
        let (inq, d) = run([0x12, 0, 0, 0, 36, 0], buffer: 36, lun: 3)
        assertGood(inq)
        XCTAssertEqual(d[0], 0x7F, "peripheral qualifier 3, no device type")
        let (rs, sense) = run([0x03, 0, 0, 0, 18, 0], buffer: 18, lun: 3)
        assertGood(rs)
        XCTAssertEqual([sense[2], sense[12], sense[13]], [0x05, 0x25, 0x00])
        assertGood(run([0xA0, 0, 0, 0, 0, 0] + be32(16) + [0, 0], buffer: 16, lun: 3).0)
        assertCheck(run(Self.tur, .none, lun: 3).0, 0x05, 0x25)
        assertCheck(run(Self.read10(0, 1), buffer: 512, lun: 3).0, 0x05, 0x25, residual: 512)
    }

    // MARK: Unit attention

    func testUnitAttentionAfterResetIsReportedOnce() {
        target.reset()
        assertGood(run([0x12, 0, 0, 0, 36, 0], buffer: 36).0, residual: 0)       // INQUIRY is not affected
        assertGood(run([0xA0, 0, 0, 0, 0, 0] + be32(16) + [0, 0], buffer: 16).0)  // nor REPORT LUNS
        assertCheck(run(Self.read10(0, 1), buffer: 512).0, 0x06, 0x29, residual: 512)
        assertGood(run(Self.read10(0, 1), buffer: 512).0)

        target.reset()
        let (r, d) = run([0x03, 0, 0, 0, 18, 0], buffer: 18)
        assertGood(r)
        XCTAssertEqual([d[0], d[2], d[12], d[13]], [0x70, 0x06, 0x29, 0x00], "REQUEST SENSE returns and clears it")
        assertGood(run(Self.tur, .none).0)
    }

    // MARK: Reads and writes

    func testWritesAndReadsOfEveryCDBSize() {
        let a = Self.pattern(1024, seed: 1), b = Self.pattern(512, seed: 2), c = Self.pattern(1536, seed: 3), e = Self.pattern(512, seed: 4)
        assertGood(run([0x0A, 0, 0, 5, 2, 0], .fromInitiator, data: a).0)                          // WRITE(6)
        assertGood(run(Self.write10(100, 1), .fromInitiator, data: b).0)                            // WRITE(10)
        assertGood(run([0xAA, 0] + be32(1000) + be32(3) + [0, 0], .fromInitiator, data: c).0)      // WRITE(12)
        assertGood(run([0x8A, 0] + be64(2047) + be32(1) + [0, 0], .byCommand, data: e).0)           // WRITE(16), last block
        XCTAssertEqual(disk.bytes(sector: 5, count: 2), a)
        XCTAssertEqual(disk.bytes(sector: 100, count: 1), b)
        XCTAssertEqual(disk.bytes(sector: 1000, count: 3), c)
        XCTAssertEqual(disk.bytes(sector: 2047, count: 1), e)

        XCTAssertEqual(run([0x08, 0, 0, 5, 2, 0], buffer: 1024).1, a)                               // READ(6)
        XCTAssertEqual(run(Self.read10(1000, 3), buffer: 1536).1, c)                                // READ(10)
        XCTAssertEqual(run([0xA8, 0] + be32(100) + be32(1) + [0, 0], .byCommand, buffer: 512).1, b) // READ(12)
        XCTAssertEqual(run(Self.read16(2047, 1), buffer: 512).1, e)                                 // READ(16)
        XCTAssertEqual(disk.flushes, 0, "no FUA, write cache on: no flush")
    }

    func testRead6OfZeroBlocksMeans256() {
        disk.fill(sector: 255, with: Self.pattern(512, seed: 9))
        let (r, d) = run([0x08, 0, 0, 0, 0, 0], buffer: 256 * 512)
        assertGood(r)
        XCTAssertEqual(Array(d[255 * 512..<256 * 512]), Self.pattern(512, seed: 9))
    }

    func testLargeTransfersCrossTheChunkSize() {
        let big = Self.pattern(3 << 19, seed: 5)   // 1.5 MiB: two chunks
        use(MemoryDisk(sectors: 8192))
        assertGood(run(Self.write10(7, big.count / 512), .fromInitiator, data: big).0)
        XCTAssertEqual(run(Self.read10(7, big.count / 512), buffer: big.count).1, big)
    }

    func testForcedUnitAccessFlushes() {
        assertGood(run(Self.write10(0, 1, flags: 0x08), .fromInitiator, data: Self.pattern(512, seed: 1)).0)
        XCTAssertEqual(disk.flushes, 1)
        assertGood(run([0x8A, 0x08] + be64(1) + be32(1) + [0, 0], .fromInitiator, data: Self.pattern(512, seed: 1)).0)
        XCTAssertEqual(disk.flushes, 2)
        assertGood(run(Self.read10(0, 1, flags: 0x08), buffer: 512).0)
        XCTAssertEqual(disk.flushes, 2, "FUA on a read needs no flush")
    }

    func testLBAOutOfRange() {
        assertCheck(run(Self.read10(2047, 2), buffer: 1024).0, 0x05, 0x21, residual: 1024)
        assertCheck(run(Self.read16(UInt64.max, 1), buffer: 512).0, 0x05, 0x21)
        assertCheck(run(Self.read16(1, UInt64(UInt32.max)), buffer: 512).0, 0x05, 0x21)
        assertCheck(run(Self.write10(2048, 1), .fromInitiator, data: Self.pattern(512, seed: 1)).0, 0x05, 0x21)
        assertCheck(run([0x08, 0x1F, 0xFF, 0xFF, 1, 0], buffer: 512).0, 0x05, 0x21)   // READ(6) LBA 2^21-1
        assertGood(run(Self.read10(2048, 0), buffer: 0).0, residual: 0)                 // zero blocks at the end
        assertCheck(run(Self.read10(2049, 0)).0, 0x05, 0x21)
    }

    func testInvalidOpcodeAndMalformedCDBs() {
        assertCheck(run([0x01, 0, 0, 0, 0, 0], .none).0, 0x05, 0x20)              // REZERO UNIT
        assertCheck(run([0xC1, 0, 0, 0, 0, 0], .none).0, 0x05, 0x20)              // vendor-specific group
        assertCheck(run([0x7F] + [UInt8](repeating: 0, count: 9), .none).0, 0x05, 0x20)   // group 3
        assertCheck(run([0x2E] + [UInt8](repeating: 0, count: 9), .none).0, 0x05, 0x20)   // WRITE AND VERIFY(10)
        assertCheck(run([], .none).0, 0x05, 0x20)
        assertCheck(run(Array(Self.read10(0, 1)[0..<6]), buffer: 512).0, 0x05, 0x24, residual: 512)  // 6 bytes of a 10-byte CDB
        assertCheck(run(Self.read10(0, 1, flags: 0x20), buffer: 512).0, 0x05, 0x24)    // RDPROTECT
        var naca = Self.read10(0, 1)
        naca[9] = 0x04
        assertCheck(run(naca, buffer: 512).0, 0x05, 0x24)                               // NACA
        assertCheck(run([0, 0, 0, 0, 0, 0x01], .none).0, 0x05, 0x24)                     // linked command
    }

    func testResidualOverrunAndDirection() {
        disk.fill(sector: 3, with: Self.pattern(1024, seed: 7))
        // A buffer larger than the transfer: the rest is residual.
        let (under, d) = run(Self.read10(3, 2), buffer: 1536)
        assertGood(under, residual: 512)
        XCTAssertEqual(Array(d[0..<1024]), Self.pattern(1024, seed: 7))
        XCTAssertEqual(Array(d[1024...]), [UInt8](repeating: 0xEE, count: 512), "past the transfer untouched")
        // A buffer too small: overrun, nothing moves.
        let (over, untouched) = run(Self.read10(3, 2), buffer: 512)
        XCTAssertEqual(over, .host(.dataOverrun, residual: 512))
        XCTAssertEqual(untouched, [UInt8](repeating: 0xEE, count: 512))
        XCTAssertEqual(run(Self.write10(0, 2), .fromInitiator, data: Self.pattern(512, seed: 1)).0, .host(.dataOverrun, residual: 512))
        XCTAssertEqual(disk.bytes(sector: 0, count: 2), [UInt8](repeating: 0, count: 1024), "nothing written")
        XCTAssertEqual(run(Self.read10(3, 1), .none).0, .host(.dataOverrun, residual: 0), "no buffer at all")
        // The wrong direction.
        XCTAssertEqual(run(Self.read10(3, 1), .fromInitiator, buffer: 512).0, .host(.dataDirection, residual: 512))
        XCTAssertEqual(run(Self.write10(3, 1), .toInitiator, buffer: 512).0, .host(.dataDirection, residual: 512))
        XCTAssertEqual(disk.bytes(sector: 3, count: 2), Self.pattern(1024, seed: 7))
        XCTAssertEqual(run([0x12, 0, 0, 0, 36, 0], .fromInitiator, buffer: 36).0, .host(.dataDirection, residual: 36))
        // A parameter reply larger than the buffer fills it and reports the overrun.
        let (inq, part) = run([0x12, 0, 0, 0, 36, 0], buffer: 10)
        XCTAssertEqual(inq, .host(.dataOverrun, residual: 0))
        XCTAssertEqual(Array(part[0..<5]), [0x00, 0x00, 0x05, 0x12, 31])
        // No data phase, but a buffer: all of it is residual.
        assertGood(run(Self.tur, .toInitiator, buffer: 100).0, residual: 100)
    }

    func testMediumErrors() {
        disk.failReads = true
        assertCheck(run(Self.read10(9, 1), buffer: 512).0, 0x03, 0x11, information: 9, residual: 512)
        assertCheck(run([0x2F, 0] + be32(12) + [0] + be16(1) + [0], .none).0, 0x03, 0x11, information: 12)   // VERIFY
        disk.failReads = false
        disk.failWrites = true
        assertCheck(run(Self.write10(33, 1), .fromInitiator, data: Self.pattern(512, seed: 1)).0, 0x03, 0x0C, information: 33)
        disk.failWrites = false
        disk.failFlush = true
        assertCheck(run([0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], .none).0, 0x03, 0x0C, information: 0)
        assertCheck(run(Self.write10(1, 1, flags: 0x08), .fromInitiator, data: Self.pattern(512, seed: 1)).0, 0x03, 0x0C, information: 1)
    }

    func testWriteProtected() {
        use(MemoryDisk(sectors: 2048, readOnly: true))
        assertCheck(run(Self.write10(0, 1), .fromInitiator, data: Self.pattern(512, seed: 1)).0, 0x07, 0x27, residual: 512)
        assertCheck(run([0x93, 0x08] + be64(0) + be32(8) + [0, 0], .fromInitiator, buffer: 512).0, 0x07, 0x27)
        assertGood(run(Self.read10(0, 1), buffer: 512).0)
        XCTAssertEqual(run([0x1A, 0x08, 0x08, 0, 255, 0], buffer: 255).1[2], 0x90, "WP and DPOFUA")
    }

    // MARK: VERIFY, SYNCHRONIZE CACHE, START STOP UNIT

    func testVerify() {
        let p = Self.pattern(1024, seed: 3)
        disk.fill(sector: 40, with: p)
        assertGood(run([0x2F, 0] + be32(40) + [0] + be16(2) + [0], .none).0)                       // medium check
        assertGood(run([0x2F, 0x02] + be32(40) + [0] + be16(2) + [0], .fromInitiator, data: p).0)  // byte check
        var wrong = p
        wrong[700] ^= 1
        assertCheck(run([0x8F, 0x02] + be64(40) + be32(2) + [0, 0], .fromInitiator, data: wrong).0, 0x0E, 0x1D, information: 700)
        assertCheck(run([0x2F, 0x04] + be32(40) + [0] + be16(2) + [0], .fromInitiator, data: p).0, 0x05, 0x24)   // BYTCHK 10b
        assertCheck(run([0x2F, 0] + be32(2047) + [0] + be16(2) + [0], .none).0, 0x05, 0x21)
    }

    func testSynchronizeCache() {
        assertGood(run([0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], .none).0)
        assertGood(run([0x91, 0] + be64(100) + be32(10) + [0, 0], .none).0)
        XCTAssertEqual(disk.flushes, 2)
        assertCheck(run([0x35, 0] + be32(2048) + [0] + be16(1) + [0], .none).0, 0x05, 0x21)
        assertCheck(run([0x91, 0] + be64(UInt64.max) + be32(0) + [0, 0], .none).0, 0x05, 0x21)
        XCTAssertEqual(disk.flushes, 2)
    }

    func testStartStopUnit() {
        assertGood(run([0x1B, 0, 0, 0, 0x00, 0], .none).0)           // stop
        XCTAssertEqual(disk.flushes, 1, "stopping flushes")
        assertCheck(run(Self.tur, .none).0, 0x02, 0x04, 0x02)
        assertCheck(run(Self.read10(0, 1), buffer: 512).0, 0x02, 0x04, 0x02)
        assertCheck(run(Self.write10(0, 1), .fromInitiator, buffer: 512).0, 0x02, 0x04, 0x02)
        let (rs, d) = run([0x03, 0, 0, 0, 18, 0], buffer: 18)
        assertGood(rs)
        XCTAssertEqual([d[2], d[12], d[13]], [0x02, 0x04, 0x02])
        assertGood(run([0x12, 0, 0, 0, 36, 0], buffer: 36).0)         // INQUIRY still answers
        assertGood(run([0x1B, 0, 0, 0, 0x01, 0], .none).0)           // start
        assertGood(run(Self.tur, .none).0)
        assertCheck(run([0x1B, 0, 0, 0, 0x02, 0], .none).0, 0x05, 0x24)   // LOEJ on a fixed disk
        assertGood(run([0x1B, 1, 0, 0, 0x30, 0], .none).0)           // power condition: accepted
        assertGood(run(Self.tur, .none).0)
    }

    // MARK: MODE SENSE / MODE SELECT

    func testModeSense6CachingPageWithBlockDescriptor() {
        let (r, d) = run([0x1A, 0, 0x08, 0, 255, 0], buffer: 255)
        assertGood(r, residual: 255 - 32)
        XCTAssertEqual(Array(d[0..<4]), [31, 0, 0x10, 8], "length, medium, DPOFUA, descriptor length")
        XCTAssertEqual(Array(d[4..<12]), [0, 0, 0x08, 0x00, 0, 0, 0x02, 0x00], "2048 blocks of 512")
        XCTAssertEqual(Array(d[12..<32]), [0x08, 0x12, 0x04] + [UInt8](repeating: 0, count: 17), "WCE")
    }

    func testModeSense10LongLBAAndAllPages() {
        let (r, d) = run([0x5A, 0x10, 0x3F, 0, 0, 0, 0, 0x01, 0x00, 0], buffer: 256)
        let total = 8 + 16 + 24 + 20 + 12
        assertGood(r, residual: UInt64(256 - total))
        XCTAssertEqual(Array(d[0..<8]), be16(total - 2) + [0, 0x10, 0x01, 0] + be16(16))
        XCTAssertEqual(Array(d[8..<24]), be64(2048) + [0, 0, 0, 0] + be32(512))
        XCTAssertEqual([d[24], d[48], d[68]], [0x04, 0x08, 0x0A], "pages in ascending order")
        // DBD: no descriptor; allocation length truncates but the length field tells all.
        let (r6, d6) = run([0x1A, 0x08, 0x3F, 0xFF, 8, 0], buffer: 8)
        assertGood(r6)
        XCTAssertEqual(Array(d6[0..<4]), [UInt8(4 + 56 - 1), 0, 0x10, 0])
        XCTAssertEqual(Array(d6[4..<8]), [0x04, 0x16, 0, 0])
    }

    func testModeSenseRigidGeometryAndPageControl() {
        use(MemoryDisk(sectors: 255 * 63 * 300 + 5))
        let g = run([0x1A, 0x08, 0x04, 0, 255, 0], buffer: 255).1
        XCTAssertEqual(Array(g[4..<10]), [0x04, 0x16, 0, 0x01, 0x2C, 255], "300 cylinders, 255 heads")
        XCTAssertEqual(Array(run([0x1A, 0x08, 0x48, 0, 255, 0], buffer: 255).1[4..<7]), [0x08, 0x12, 0x04], "changeable: WCE")
        XCTAssertEqual(Array(run([0x1A, 0x08, 0x4A, 0, 255, 0], buffer: 255).1[4..<16]), [0x0A, 0x0A] + [UInt8](repeating: 0, count: 10))
        XCTAssertEqual(Array(run([0x1A, 0x08, 0x8A, 0, 255, 0], buffer: 255).1[4..<8]), [0x0A, 0x0A, 0, 0x10], "default control page")
        assertCheck(run([0x1A, 0x08, 0xC8, 0, 255, 0], buffer: 255).0, 0x05, 0x39)   // saved values
        assertCheck(run([0x1A, 0x08, 0x1C, 0, 255, 0], buffer: 255).0, 0x05, 0x24)   // no such page
        assertCheck(run([0x1A, 0x08, 0x08, 0x01, 255, 0], buffer: 255).0, 0x05, 0x24)   // subpage
    }

    private func cachingPage(wce: Bool) -> [UInt8] { [0x08, 0x12, wce ? 0x04 : 0] + [UInt8](repeating: 0, count: 17) }

    func testModeSelectTurnsTheWriteCacheOffAndOn() {
        let off = [0, 0, 0, 0] + cachingPage(wce: false)
        assertGood(run([0x15, 0x10, 0, 0, UInt8(off.count), 0], .fromInitiator, data: off).0)
        XCTAssertEqual(disk.flushes, 1, "the cache is flushed when it goes away")
        XCTAssertEqual(run([0x1A, 0x08, 0x08, 0, 255, 0], buffer: 255).1[6], 0, "WCE now 0")
        assertGood(run(Self.write10(0, 1), .fromInitiator, data: Self.pattern(512, seed: 1)).0)
        XCTAssertEqual(disk.flushes, 2, "write-through")
        // MODE SELECT(10) with a block descriptor of this disk turns it back on.
        let on = [0, 0, 0, 0, 0, 0] + be16(8) + [0, 0, 0x08, 0x00, 0, 0, 0x02, 0x00] + cachingPage(wce: true)
        assertGood(run([0x55, 0x10, 0, 0, 0, 0, 0] + be16(on.count) + [0], .fromInitiator, data: on).0)
        assertGood(run(Self.write10(0, 1), .fromInitiator, data: Self.pattern(512, seed: 1)).0)
        XCTAssertEqual(disk.flushes, 2)
        // Reset returns to the power-on default (cache on) too.
        assertGood(run([0x15, 0x10, 0, 0, UInt8(off.count), 0], .fromInitiator, data: off).0)
        target.reset()
        _ = run(Self.tur, .none)
        XCTAssertEqual(run([0x1A, 0x08, 0x08, 0, 255, 0], buffer: 255).1[6], 0x04)
    }

    func testModeSelectRefusals() {
        let page = [0, 0, 0, 0] + cachingPage(wce: true)
        assertGood(run([0x15, 0x10, 0, 0, 0, 0], .none).0)                                         // empty list
        assertGood(run([0x15, 0x10, 0, 0, UInt8(page.count), 0], .fromInitiator, data: page).0)   // unchanged
        let control: [UInt8] = [0, 0, 0, 0, 0x0A, 0x0A, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0]
        assertGood(run([0x15, 0x10, 0, 0, UInt8(control.count), 0], .fromInitiator, data: control).0)
        assertCheck(run([0x15, 0x11, 0, 0, UInt8(page.count), 0], .fromInitiator, data: page).0, 0x05, 0x24)   // SP
        assertCheck(run([0x15, 0x00, 0, 0, UInt8(page.count), 0], .fromInitiator, data: page).0, 0x05, 0x24)   // no PF
        var changed = page
        changed[7] = 0x01                                                                            // not changeable
        assertCheck(run([0x15, 0x10, 0, 0, UInt8(changed.count), 0], .fromInitiator, data: changed).0, 0x05, 0x26)
        var dsense = control
        dsense[6] = 0x04                                                                             // D_SENSE
        assertCheck(run([0x15, 0x10, 0, 0, UInt8(dsense.count), 0], .fromInitiator, data: dsense).0, 0x05, 0x26)
        let unknown: [UInt8] = [0, 0, 0, 0, 0x1C, 0x02, 0, 0]
        assertCheck(run([0x15, 0x10, 0, 0, UInt8(unknown.count), 0], .fromInitiator, data: unknown).0, 0x05, 0x26)
        let blockSize4K: [UInt8] = [0, 0, 0, 8, 0, 0, 0x08, 0x00, 0, 0, 0x10, 0x00]
        assertCheck(run([0x15, 0x10, 0, 0, UInt8(blockSize4K.count), 0], .fromInitiator, data: blockSize4K).0, 0x05, 0x26)
        assertCheck(run([0x15, 0x10, 0, 0, 2, 0], .fromInitiator, data: [0, 0]).0, 0x05, 0x1A)
        let truncated = Array(page[0..<10])
        assertCheck(run([0x15, 0x10, 0, 0, UInt8(truncated.count), 0], .fromInitiator, data: truncated).0, 0x05, 0x1A)
        XCTAssertEqual(run([0x1A, 0x08, 0x08, 0, 255, 0], buffer: 255).1[6], 0x04, "nothing changed")
    }

    // MARK: WRITE SAME and UNMAP

    func testWriteSame16() {
        let p = Self.pattern(512, seed: 8)
        assertGood(run([0x93, 0] + be64(10) + be32(3) + [0, 0], .fromInitiator, data: p).0)
        XCTAssertEqual(disk.bytes(sector: 10, count: 3), p + p + p)
        // UNMAP with a zero block deallocates.
        assertGood(run([0x93, 0x08] + be64(10) + be32(2) + [0, 0], .fromInitiator, data: [UInt8](repeating: 0, count: 512)).0)
        XCTAssertEqual(disk.discards.map { [$0.sector, $0.count] }, [[10, 2]])
        XCTAssertEqual(disk.bytes(sector: 10, count: 3), [UInt8](repeating: 0, count: 1024) + p)
        // UNMAP with data writes it.
        assertGood(run([0x93, 0x08] + be64(20) + be32(2) + [0, 0], .fromInitiator, data: p).0)
        XCTAssertEqual(disk.bytes(sector: 20, count: 2), p + p)
        XCTAssertEqual(disk.discards.count, 1)

        assertCheck(run([0x93, 0] + be64(10) + be32(0) + [0, 0], .fromInitiator, data: p).0, 0x05, 0x24)           // WSNZ
        assertCheck(run([0x93, 0] + be64(0) + be32(0x40_0001) + [0, 0], .fromInitiator, data: p).0, 0x05, 0x24)   // too long
        assertCheck(run([0x93, 0x01] + be64(0) + be32(1) + [0, 0], .fromInitiator, data: p).0, 0x05, 0x24)         // NDOB
        assertCheck(run([0x93, 0x10] + be64(0) + be32(1) + [0, 0], .fromInitiator, data: p).0, 0x05, 0x24)         // ANCHOR
        assertCheck(run([0x93, 0] + be64(2047) + be32(2) + [0, 0], .fromInitiator, data: p).0, 0x05, 0x21)
        XCTAssertEqual(run([0x93, 0] + be64(0) + be32(1) + [0, 0], .fromInitiator, buffer: 100).0, .host(.dataOverrun, residual: 100))
    }

    private func unmapList(_ ranges: [(UInt64, UInt64)]) -> [UInt8] {
        be16(6 + 16 * ranges.count) + be16(16 * ranges.count) + [0, 0, 0, 0] + ranges.flatMap { be64($0.0) + be32($0.1) + [0, 0, 0, 0] }
    }

    private func unmapCDB(_ list: [UInt8], anchor: Bool = false) -> [UInt8] {
        [0x42, anchor ? 1 : 0, 0, 0, 0, 0, 0] + be16(list.count) + [0]
    }

    func testUnmap() {
        let list = unmapList([(100, 8), (300, 0), (2040, 8)])
        assertGood(run(unmapCDB(list), .fromInitiator, data: list).0)
        XCTAssertEqual(disk.discards.map { [$0.sector, $0.count] }, [[100, 8], [2040, 8]])
        // One bad descriptor: nothing is discarded.
        let bad = unmapList([(0, 8), (2045, 4)])
        assertCheck(run(unmapCDB(bad), .fromInitiator, data: bad).0, 0x05, 0x21)
        XCTAssertEqual(disk.discards.count, 2)
        assertCheck(run(unmapCDB(list, anchor: true), .fromInitiator, data: list).0, 0x05, 0x24)
        assertCheck(run([0x42, 0, 0, 0, 0, 0, 0, 0, 4, 0], .fromInitiator, data: [0, 0, 0, 0]).0, 0x05, 0x1A)
        let tooMany = unmapList((0..<65).map { (UInt64($0) * 8, 1) })
        assertCheck(run(unmapCDB(tooMany), .fromInitiator, data: tooMany).0, 0x05, 0x26)
        let tooLong = unmapList([(0, 0x40_0001)])
        use(MemoryDisk(sectors: 1 << 24))
        assertCheck(run(unmapCDB(tooLong), .fromInitiator, data: tooLong).0, 0x05, 0x26)
        assertGood(run([0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0], .none).0)   // empty list
    }
}

/// FlatDisk's discard punches a hole: the blocks are freed, read as zeros, and the
/// file keeps its size.
final class FlatDiskDiscardTests: XCTestCase {
    func testDiscardPunchesAHole() throws {
        let path = NSTemporaryDirectory() + "hv-discard-\(getpid()).img"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let size = 4 << 20
        FileManager.default.createFile(atPath: path, contents: Data((0..<size).map { UInt8(truncatingIfNeeded: $0 | 1) }))
        let disk = try FlatDisk(path: path, readOnly: false)
        XCTAssertTrue(disk.supportsDiscard)
        try disk.flush()
        var before = stat()
        XCTAssertEqual(stat(path, &before), 0)
        try disk.discard(sector: 2048, count: 4096)     // 1 MiB ..< 3 MiB
        try disk.flush()
        var after = stat()
        XCTAssertEqual(stat(path, &after), 0)
        XCTAssertEqual(after.st_size, before.st_size, "size kept")
        XCTAssertLessThan(after.st_blocks, before.st_blocks, "blocks freed")
        let data = try XCTUnwrap(FileManager.default.contents(atPath: path))
        XCTAssertEqual(Array(data[(1 << 20)..<(3 << 20)]), [UInt8](repeating: 0, count: 2 << 20))
        XCTAssertEqual(data[(1 << 20) - 1], UInt8(truncatingIfNeeded: ((1 << 20) - 1) | 1), "before the hole kept")
        XCTAssertEqual(data[3 << 20], UInt8(truncatingIfNeeded: (3 << 20) | 1), "after the hole kept")
        XCTAssertThrowsError(try disk.discard(sector: 8190, count: 4))
        let readOnly = try FlatDisk(path: path, readOnly: true)
        XCTAssertFalse(readOnly.supportsDiscard)
        XCTAssertThrowsError(try readOnly.discard(sector: 0, count: 1)) { XCTAssertEqual($0 as? DiskError, .readOnly(path: path)) }
    }
}

/// The protocol's default discard (for disks that cannot free storage): zeros, the whole
/// range checked first.
final class VirtualDiskDefaultDiscardTests: XCTestCase {
    /// Forwards only the required transfer operations, so discard is the default one.
    final class PlainDisk: VirtualDisk, @unchecked Sendable {
        let inner: MemoryDisk
        init(_ inner: MemoryDisk) { self.inner = inner }
        var sectorSize: Int { inner.sectorSize }
        var sectorCount: UInt64 { inner.sectorCount }
        var isReadOnly: Bool { inner.isReadOnly }
        func read(sector: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws { try inner.read(sector: sector, into: buffer) }
        func write(sector: UInt64, from buffer: UnsafeRawBufferPointer) throws { try inner.write(sector: sector, from: buffer) }
        func flush() throws { try inner.flush() }
    }

    func testDefaultDiscardWritesZerosAfterCheckingTheRange() throws {
        let memory = MemoryDisk(sectors: 4096)
        let pattern = [UInt8](repeating: 0xAB, count: 4096 * 512)
        memory.fill(sector: 0, with: pattern)
        let disk = PlainDisk(memory)
        XCTAssertFalse(disk.supportsDiscard)
        try disk.discard(sector: 10, count: 3000)          // more than one 1 MiB chunk
        XCTAssertEqual(memory.bytes(sector: 9, count: 1), [UInt8](repeating: 0xAB, count: 512))
        XCTAssertEqual(memory.bytes(sector: 10, count: 3000), [UInt8](repeating: 0, count: 3000 * 512))
        XCTAssertEqual(memory.bytes(sector: 3010, count: 1), [UInt8](repeating: 0xAB, count: 512))
        XCTAssertTrue(memory.discards.isEmpty, "written, not discarded")
        XCTAssertThrowsError(try disk.discard(sector: 4000, count: 97))
        XCTAssertEqual(memory.bytes(sector: 4000, count: 96), [UInt8](repeating: 0xAB, count: 96 * 512), "nothing zeroed")
        XCTAssertThrowsError(try PlainDisk(MemoryDisk(sectors: 8, readOnly: true)).discard(sector: 0, count: 1)) {
            guard case .readOnly = $0 as? DiskError else { return XCTFail("\($0)") }
        }
    }
}
