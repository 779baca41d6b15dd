import Foundation
import Logging
import XCTest
@testable import HVDevices
@testable import HVHostIO
@testable import HVMemory
@testable import HVPluginHost
@testable import HVSupport

/// "hv.scsi/1" through the real ABI: a C "HBA" (Fixtures/scsi_probe.c) submits CDBs
/// over guest segments to the host's SCSI layer, with flat images on targets 0 and 2.
final class PluginSCSITests: XCTestCase {
    final class NoInterrupts: PCIInterruptSink {
        func setGSI(_ gsi: Int, level: Bool) {}
        func deliverMSI(address: UInt64, data: UInt32) {}
    }

    static let pluginDir = ProbeFixtures.build(
        "scsi_probe.c", into: "scsiprobe", variants: [(ProbeFixtures.currentHeaders, "scsiprobe")])

    static let sectors = [0: 128, 2: 64]

    var memory: GuestMemory!
    var queue: DiskIOQueue!
    var device: PluginDevice!
    var images: [Int: String] = [:]

    override func setUpWithError() throws {
        memory = try GuestMemory(size: 1 << 20)
        queue = DiskIOQueue(name: "scsi-test")
        for (unit, count) in Self.sectors {
            let path = NSTemporaryDirectory() + "hv-scsi-\(getpid())-\(unit)-\(UUID().uuidString.prefix(6)).img"
            FileManager.default.createFile(atPath: path, contents: Data(count: count * 512))
            images[unit] = path
        }
        device = try makeDevice(images: images)
    }

    /// A probe instance on scsi0 whose units are flat images at `images`.
    private func makeDevice(images: [Int: String]) throws -> PluginDevice {
        let catalog = PluginCatalog.load(searchPath: PluginSearchPath(directories: [Self.pluginDir]))
        let match = try catalog.deviceModel(named: "scsiprobe")
        let clock = VMClock()
        let backends = PluginBackends(switches: SwitchRegistry(), diskQueue: queue) { unit in
            try images[unit].map { try FlatDisk(path: $0, readOnly: false) }
        }
        let bridge = try PCIHostBridge(portBus: AddressBus(), mmioBus: AddressBus(), interrupts: NoInterrupts())
        let context = PluginDeviceContext(vmName: "t", prefix: "scsi0", memory: memory, clock: clock,
                                          timers: TimerQueue(clock: clock, name: "scsi-test"), pci: bridge,
                                          configValue: { _ in nil }, logger: Logger(label: "scsi-test"),
                                          backends: backends)
        let d = PluginDevice(model: match.model, pluginName: match.plugin.name, context: context)
        try d.create()
        return d
    }

    func testAMissingImageFailsCreateNamingTheUnit() {
        XCTAssertThrowsError(try makeDevice(images: [3: "/nonexistent/hv-scsi.img"])) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("scsi0: device model 'scsiprobe'"), text)
            XCTAssertTrue(text.contains("scsi0:3: virtual disk '/nonexistent/hv-scsi.img': no such file"), text)
        }
    }

    override func tearDown() {
        device?.destroy()
        queue?.shutdown()
        for path in images.values { try? FileManager.default.removeItem(atPath: path) }
    }

    private func reg(_ offset: UInt64) -> UInt64 { device.barRead(bar: 0, offset: offset, size: 8) }
    private func set(_ offset: UInt64, _ value: UInt64) { device.barWrite(bar: 0, offset: offset, size: 8, value: value) }

    struct Completion {
        var hostStatus: UInt64
        var status: UInt64
        var residual: UInt64
        var sense: [UInt8]
        var tag: UInt64
    }

    private func load(_ cdb: [UInt8]) {
        var bytes = cdb + [UInt8](repeating: 0, count: 16 - cdb.count)
        bytes.withUnsafeMutableBytes { raw in
            set(0x30, raw.load(fromByteOffset: 0, as: UInt64.self))
            set(0x38, raw.load(fromByteOffset: 8, as: UInt64.self))
        }
    }

    /// Submits one command; when accepted, waits for its completion and returns it.
    @discardableResult
    private func command(_ cdb: [UInt8], target: UInt64 = 0, lun: UInt64 = 0, direction: UInt64, gpa: UInt64 = 0x10000,
                         bytes: UInt64 = 0, segments: UInt64 = 1, cdbLength: UInt64? = nil, wait: Bool = true,
                         file: StaticString = #filePath, line: UInt = #line) -> (rc: Int64, completion: Completion?) {
        let before = reg(0x60)
        load(cdb)
        for (o, v) in [(0x00, target), (0x08, lun), (0x10, direction), (0x18, gpa), (0x20, bytes),
                       (0x28, bytes == 0 ? 0 : segments), (0x40, cdbLength ?? UInt64(cdb.count)), (0x48, before + 100)] {
            set(UInt64(o), v)
        }
        set(0x50, 1)
        let rc = Int64(bitPattern: reg(0x58))
        guard rc == 0, wait else { return (rc, nil) }
        queue.drain()
        XCTAssertEqual(reg(0x60), before + 1, "exactly one completion", file: file, line: line)
        XCTAssertEqual(reg(0xB8), 112, "sizeof(hv_scsi_result)", file: file, line: line)
        let sense = [reg(0x90), reg(0x98), reg(0xA0)].flatMap { v in (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
        return (rc, Completion(hostStatus: reg(0x68), status: reg(0x70), residual: reg(0x78),
                               sense: Array(sense.prefix(Int(reg(0x80)))), tag: reg(0x88)))
    }

    static let dataIn: UInt64 = 1, dataOut: UInt64 = 2, none: UInt64 = 0

    private func senseCode(_ c: Completion?) -> [UInt8] {
        guard let c, c.sense.count >= 14 else { return [] }
        return [c.sense[2], c.sense[12], c.sense[13]]
    }

    func testTargetMaskInquiryAndReadCapacity() throws {
        XCTAssertEqual(reg(0xA8), 0b101, "targets 0 and 2")
        let inquiry = try XCTUnwrap(command([0x12, 0, 0, 0, 96, 0], direction: Self.dataIn, bytes: 96).completion)
        XCTAssertEqual([inquiry.hostStatus, inquiry.status, inquiry.residual], [0, 0, 96 - 36])
        let data = try memory.read(at: 0x10000, count: 36)
        XCTAssertEqual(data[0], 0x00, "direct-access device, connected")
        XCTAssertEqual(String(decoding: data[8..<16], as: UTF8.self), "VMware  ")
        XCTAssertEqual(String(decoding: data[16..<32], as: UTF8.self), "Virtual disk    ")

        let rc10 = try XCTUnwrap(command([0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], target: 2, direction: Self.dataIn, bytes: 8).completion)
        XCTAssertEqual([rc10.hostStatus, rc10.status, rc10.residual], [0, 0, 0])
        XCTAssertEqual(try memory.read(at: 0x10000, count: 8), [0, 0, 0, 63, 0, 0, 2, 0], "last LBA 63, 512-byte blocks")

        let rc16 = try XCTUnwrap(command([0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0], direction: Self.dataIn, bytes: 32).completion)
        XCTAssertEqual([rc16.hostStatus, rc16.status, rc16.residual], [0, 0, 0])
        XCTAssertEqual(Array(try memory.read(at: 0x10000, count: 12)), [0, 0, 0, 0, 0, 0, 0, 127, 0, 0, 2, 0])
    }

    func testWriteThenReadBackThroughScatteredSegments() throws {
        let pattern = (0..<2048).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 5) }
        try memory.write(pattern, at: 0x20000)
        // WRITE(10) LBA 4, 4 blocks, from 3 segments.
        let write = try XCTUnwrap(command([0x2A, 0, 0, 0, 0, 4, 0, 0, 4, 0], direction: Self.dataOut, gpa: 0x20000,
                                          bytes: 2048, segments: 3).completion)
        XCTAssertEqual([write.hostStatus, write.status, write.residual], [0, 0, 0])
        let image = try XCTUnwrap(FileManager.default.contents(atPath: images[0]!))
        XCTAssertEqual(Array(image[2048..<4096]), pattern, "bytes in the image file")
        XCTAssertEqual(Array(image[0..<2048]), [UInt8](repeating: 0, count: 2048), "nothing else written")

        // READ(16) of the same blocks into 5 segments of a larger buffer: residual 512.
        let read = try XCTUnwrap(command([0x88, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 4, 0, 0], direction: Self.dataIn,
                                         gpa: 0x40000, bytes: 2560, segments: 5).completion)
        XCTAssertEqual([read.hostStatus, read.status, read.residual], [0, 0, 512])
        XCTAssertEqual(try memory.read(at: 0x40000, count: 2048), pattern)
        XCTAssertEqual(read.tag, reg(0x48), "the tag comes back")

        // The other target's image is untouched.
        let other = try XCTUnwrap(FileManager.default.contents(atPath: images[2]!))
        XCTAssertEqual(other, Data(count: 64 * 512))
    }

    func testTestUnitReadyRequestSenseAndReportLuns() throws {
        let tur = try XCTUnwrap(command([0, 0, 0, 0, 0, 0], direction: Self.none).completion)
        XCTAssertEqual([tur.hostStatus, tur.status], [0, 0])
        let sense = try XCTUnwrap(command([0x03, 0, 0, 0, 18, 0], direction: Self.dataIn, bytes: 18).completion)
        XCTAssertEqual([sense.hostStatus, sense.status, sense.residual], [0, 0, 0])
        XCTAssertEqual(try memory.read(at: 0x10000, count: 3), [0x70, 0, 0], "NO SENSE")
        let luns = try XCTUnwrap(command([0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0], direction: Self.dataIn, bytes: 16).completion)
        XCTAssertEqual([luns.hostStatus, luns.status, luns.residual], [0, 0, 0])
        XCTAssertEqual(try memory.read(at: 0x10000, count: 16), [0, 0, 0, 8, 0, 0, 0, 0] + [UInt8](repeating: 0, count: 8))
        // LUN 1 of a present target: INQUIRY says "not connected", the rest is 05/25/00.
        let inquiry = try XCTUnwrap(command([0x12, 0, 0, 0, 36, 0], lun: 1, direction: Self.dataIn, bytes: 36).completion)
        XCTAssertEqual(inquiry.status, 0)
        XCTAssertEqual(try memory.read(at: 0x10000, count: 1), [0x7F])
        let read = command([0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], lun: 1, direction: Self.dataIn, bytes: 512).completion
        XCTAssertEqual(read?.status, 2)
        XCTAssertEqual(senseCode(read), [0x05, 0x25, 0x00])
    }

    func testAbsentTargetsTimeOut() throws {
        for target: UInt64 in [1, 7, 15] {
            let c = try XCTUnwrap(command([0x12, 0, 0, 0, 36, 0], target: target, direction: Self.dataIn, bytes: 36).completion)
            XCTAssertEqual([c.hostStatus, c.residual], [1, 36], "HV_SCSI_HOST_NO_TARGET for target \(target)")
        }
    }

    func testSegmentsOutsideGuestRAMCompleteWithBadDMA() throws {
        let c = try XCTUnwrap(command([0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], direction: Self.dataIn, gpa: 0xFFFF_F000, bytes: 512).completion)
        XCTAssertEqual([c.hostStatus, c.residual], [2, 512], "HV_SCSI_HOST_BAD_DMA")
        // Straddling the end of RAM counts too.
        let w = try XCTUnwrap(command([0x2A, 0, 0, 0, 0, 0, 0, 0, 2, 0], direction: Self.dataOut, gpa: (1 << 20) - 512, bytes: 1024).completion)
        XCTAssertEqual(w.hostStatus, 2)
        XCTAssertEqual(try XCTUnwrap(FileManager.default.contents(atPath: images[0]!)), Data(count: 128 * 512), "nothing written")
    }

    func testMalformedRequestsAreRefusedWithoutACompletion() {
        let read1: [UInt8] = [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0]
        XCTAssertEqual(command(read1, target: 16, direction: Self.dataIn, bytes: 512).rc, -22, "target 16")
        XCTAssertEqual(command(read1, direction: Self.dataIn, bytes: 512, cdbLength: 5).rc, -22, "cdb_len 5")
        XCTAssertEqual(command(read1, direction: Self.dataIn, bytes: 512, cdbLength: 17).rc, -22, "cdb_len 17")
        XCTAssertEqual(command(read1, direction: 7, bytes: 512).rc, -22, "direction 7")
        XCTAssertEqual(command(read1, direction: Self.none, bytes: 512).rc, -22, "segments with DATA_NONE")
        XCTAssertEqual(command(read1, direction: Self.dataIn, bytes: 512, segments: 1 | 0x8000_0000).rc, -22, "a zero-length segment")
        XCTAssertEqual(command(read1, direction: Self.dataIn, bytes: 1025 * 512, segments: 1025).rc, -22, "1025 segments")
        queue.drain()
        XCTAssertEqual(reg(0x60), 0, "no completion for refused requests")
        set(0x00, 16)
        set(0x50, 2)
        XCTAssertEqual(Int64(bitPattern: reg(0x58)), -22, "abort_all of target 16")
    }

    func testAbortAllWithResetWaitsAndRaisesUnitAttention() throws {
        let read8: [UInt8] = [0x28, 0, 0, 0, 0, 0, 0, 0, 8, 0]
        for _ in 0..<4 {
            XCTAssertEqual(command(read8, direction: Self.dataIn, bytes: 4096, wait: false).rc, 0)
        }
        set(0x00, UInt64(bitPattern: -1))
        set(0x50, 3)
        XCTAssertEqual(Int64(bitPattern: reg(0x58)), 0)
        XCTAssertEqual(reg(0x60), 4, "every request completed before abort_all returned")
        XCTAssertTrue([0, 3].contains(reg(0x68)), "good or HV_SCSI_HOST_ABORTED")

        // Target 2 was reset too; each target reports the reset once.
        for target: UInt64 in [0, 2] {
            let ua = command([0, 0, 0, 0, 0, 0], target: target, direction: Self.none).completion
            XCTAssertEqual(ua?.status, 2)
            XCTAssertEqual(senseCode(ua), [0x06, 0x29, 0x00], "UNIT ATTENTION, POWER ON OR RESET")
            XCTAssertEqual(ua?.sense.count, 18)
            XCTAssertEqual(command([0, 0, 0, 0, 0, 0], target: target, direction: Self.none).completion?.status, 0)
        }
        // Without reset: nothing to report afterwards.
        set(0x00, 0)
        set(0x50, 2)
        XCTAssertEqual(Int64(bitPattern: reg(0x58)), 0)
        XCTAssertEqual(command([0, 0, 0, 0, 0, 0], direction: Self.none).completion?.status, 0)
    }

    func testPauseWaitsForRequestsInFlight() throws {
        XCTAssertEqual(command([0x28, 0, 0, 0, 0, 0, 0, 0, 64, 0], direction: Self.dataIn, bytes: 32768, wait: false).rc, 0)
        device.pause()
        XCTAssertEqual(reg(0x60), 1, "completed before the pause op")
        device.resume()
    }
}
