import Foundation
import XCTest
@testable import HVHostIO

/// Random CDBs (mostly implemented opcodes with random fields), directions and buffer
/// sizes against a small disk and a CD-ROM drive: every command ends in a well-formed
/// answer.
final class SCSIDiskTargetFuzzTests: XCTestCase {
    /// SplitMix64: reproducible from the seed printed on failure.
    struct SplitMix64: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    static let opcodes: [UInt8] = [0x00, 0x03, 0x08, 0x0A, 0x12, 0x15, 0x1A, 0x1B, 0x25, 0x28, 0x2A, 0x2F, 0x35, 0x42,
                                   0x55, 0x5A, 0x88, 0x8A, 0x8F, 0x91, 0x93, 0x9E, 0xA0, 0xA8, 0xAA]

    func testRandomCommandsAlwaysGetAWellFormedAnswer() {
        let disk = MemoryDisk(sectors: 64)
        fuzz(SCSIDiskTarget(disk: disk, seed: "fuzz"), opcodes: Self.opcodes) { rng in
            disk.failReads = rng.next() % 32 == 0
            disk.failWrites = rng.next() % 32 == 0
        }
    }

    /// MMC commands (and the disk's) against the CD-ROM drive, tray movements included.
    func testRandomCommandsToTheCDROMDriveAlwaysGetAWellFormedAnswer() throws {
        let path = NSTemporaryDirectory() + "fuzz-\(getpid()).iso"
        FileManager.default.createFile(atPath: path, contents: Data(count: 16 * CDROMImage.blockSize))
        defer { unlink(path) }
        let image = try CDROMImage(path: path, owner: "fuzz")
        fuzz(SCSICDROMTarget(medium: image, seed: "fuzz"), opcodes: Self.opcodes + [0x1E, 0x43, 0x46, 0x4A]) { _ in }
    }

    private func fuzz(_ target: any SCSITarget, opcodes: [UInt8], disturb: (inout SplitMix64) -> Void) {
        let seed = UInt64(0x5C51_0000) ^ UInt64(ProcessInfo.processInfo.processIdentifier)
        var rng = SplitMix64(state: seed)
        let directions: [SCSIDataDirection] = [.none, .toInitiator, .fromInitiator, .byCommand]
        for i in 0..<100_000 {
            var cdb = (0..<16).map { _ in UInt8.random(in: 0...255, using: &rng) }
            if rng.next() % 8 != 0 { cdb[0] = opcodes.randomElement(using: &rng)! }
            // Small LBAs and lengths often enough to reach the data paths.
            if rng.next() % 2 == 0 { for j in 1..<cdb.count { cdb[j] = UInt8(rng.next() % 4) } }
            let length = Int(rng.next() % 17)
            let buffer = TestBuffer(count: Int(rng.next() % 3) == 0 ? 0 : Int(rng.next() % 9000))
            if rng.next() % 64 == 0 { target.reset() }
            disturb(&rng)
            let r = target.execute(lun: UInt32(rng.next() % 16 == 0 ? 1 : 0), cdb: Array(cdb.prefix(length)),
                                   direction: directions.randomElement(using: &rng)!, data: buffer)
            let context = "seed \(seed) iteration \(i): cdb \(cdb.prefix(length)) -> \(r)"
            XCTAssertLessThanOrEqual(r.residual, UInt64(buffer.count), context)
            XCTAssertNotEqual(r.hostStatus, .noTarget, context)
            XCTAssertNotEqual(r.hostStatus, .aborted, context)
            if r.status == SCSIStatus.checkCondition {
                XCTAssertEqual(r.hostStatus, .ok, context)
                XCTAssertEqual(r.sense.count, 18, context)
                XCTAssertEqual(r.sense[0] & 0x7F, 0x70, context)
                XCTAssertTrue([0x2, 0x3, 0x5, 0x6, 0x7, 0xE].contains(r.sense[2]), context)
            } else {
                XCTAssertEqual(r.status, SCSIStatus.good, context)
                XCTAssertEqual(r.sense, [], context)
            }
            if r.hostStatus != .ok { XCTAssertEqual(r.status, SCSIStatus.good, context) }
            if testRun?.failureCount ?? 0 > 0 { break }
        }
    }
}
