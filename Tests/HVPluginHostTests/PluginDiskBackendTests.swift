import Foundation
import Logging
import XCTest
@testable import HVDevices
@testable import HVHostIO
@testable import HVMemory
@testable import HVPluginHost
@testable import HVSupport

/// The disk backend of the host-services table (disk_open, disk_info, disk_submit and
/// completions), driven through the real ABI by a small C device (Fixtures/disk_probe.c)
/// over a flat disk file.
final class PluginDiskBackendTests: XCTestCase {
    final class NoInterrupts: PCIInterruptSink {
        func setGSI(_ gsi: Int, level: Bool) {}
        func deliverMSI(address: UInt64, data: UInt32) {}
    }

    static let pluginDir = ProbeFixtures.build(
        "disk_probe.c", into: "diskprobe",
        variants: [(ProbeFixtures.currentHeaders, "diskprobe"), (ProbeFixtures.frozen10Headers, "diskprobe10")], defineName: true)

    var memory: GuestMemory!
    var timers: TimerQueue!
    var queue: DiskIOQueue!
    var device: PluginDevice!
    var imagePath: String!

    private func makeDevice(readOnly: Bool = false, present: Bool = true, model: String = "diskprobe") throws -> PluginDevice {
        let catalog = PluginCatalog.load(searchPath: PluginSearchPath(directories: [Self.pluginDir]))
        let match = try catalog.deviceModel(named: model)
        XCTAssertEqual(match.plugin.abiString, model == "diskprobe10" ? "1.0" : "1.4")
        memory = try GuestMemory(size: 1 << 20)
        let clock = VMClock()
        timers = TimerQueue(clock: clock, name: "disk-test")
        queue = DiskIOQueue(name: "disk-test")
        imagePath = NSTemporaryDirectory() + "hv-disk-\(getpid())-\(UUID().uuidString.prefix(6)).img"
        FileManager.default.createFile(atPath: imagePath, contents: Data(count: 128 * 512))
        let path = imagePath!
        let backends = PluginBackends(switches: SwitchRegistry(), diskQueue: queue) { unit in
            guard present, unit == 0 else { return nil }
            return try FlatDisk(path: path, readOnly: readOnly)
        }
        let bridge = try PCIHostBridge(portBus: AddressBus(), mmioBus: AddressBus(), interrupts: NoInterrupts())
        let context = PluginDeviceContext(vmName: "t", prefix: "scsi0", memory: memory, clock: clock, timers: timers,
                                          pci: bridge, configValue: { _ in nil }, logger: Logger(label: "disk-test"),
                                          backends: backends)
        let d = PluginDevice(model: match.model, pluginName: match.plugin.name, context: context)
        try d.create()
        return d
    }

    override func tearDown() {
        device?.destroy()
        queue?.shutdown()
        if let imagePath { try? FileManager.default.removeItem(atPath: imagePath) }
    }

    private func reg(_ offset: UInt64) -> UInt64 { device.barRead(bar: 0, offset: offset, size: 8) }

    /// Submits and returns the submit result; waits for the completion when accepted.
    private func submit(_ command: UInt64, sector: UInt64, gpa: UInt64, bytes: UInt64) -> (submit: Int64, result: Int64?) {
        let before = reg(0x28)
        for (o, v) in [(0x00, sector), (0x08, gpa), (0x10, bytes)] { device.barWrite(bar: 0, offset: UInt64(o), size: 8, value: v) }
        device.barWrite(bar: 0, offset: 0x18, size: 8, value: command)
        let rc = Int64(bitPattern: reg(0x20))
        guard rc == 0 else { return (rc, nil) }
        queue.drain()
        XCTAssertEqual(reg(0x28), before + 1, "exactly one completion")
        return (rc, Int64(bitPattern: reg(0x30)))
    }

    func testWriteReadFlushThroughTheDiskBackend() throws {
        device = try makeDevice()
        XCTAssertEqual(reg(0x38), 128, "capacity in sectors")
        XCTAssertEqual(reg(0x40), 0)
        let pattern = (0..<1024).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
        try memory.write(pattern, at: 0x2000)
        XCTAssertEqual(submit(2, sector: 4, gpa: 0x2000, bytes: 1024).result, 1024)
        let onDisk = try XCTUnwrap(FileManager.default.contents(atPath: imagePath))
        XCTAssertEqual(Array(onDisk[2048..<3072]), pattern, "bytes on disk")
        _ = memory.takeDirtyPages()
        XCTAssertEqual(submit(1, sector: 4, gpa: 0x8000, bytes: 1024).result, 1024)
        XCTAssertEqual(try memory.read(at: 0x8000, count: 1024), pattern)
        XCTAssertNotEqual(memory.takeDirtyPages()[0] & (1 << 8), 0, "the read marked guest page 8 dirty")
        XCTAssertEqual(submit(3, sector: 0, gpa: 0, bytes: 0).result, 0, "flush")
    }

    func testAPluginBuiltAgainstTheFrozen10HeaderLoadsAndRuns() throws {
        device = try makeDevice(model: "diskprobe10")
        XCTAssertEqual(reg(0x38), 128, "capacity in sectors")
        let pattern = (0..<512).map { UInt8(truncatingIfNeeded: $0 &* 5 &+ 1) }
        try memory.write(pattern, at: 0x3000)
        XCTAssertEqual(submit(2, sector: 9, gpa: 0x3000, bytes: 512).result, 512)
        XCTAssertEqual(submit(1, sector: 9, gpa: 0x9000, bytes: 512).result, 512)
        XCTAssertEqual(try memory.read(at: 0x9000, count: 512), pattern)
    }

    func testMalformedRequestsAreRefusedWithoutACompletion() throws {
        device = try makeDevice()
        XCTAssertEqual(submit(1, sector: 0, gpa: 0x2000, bytes: 100).submit, -22, "not a multiple of 512")
        XCTAssertEqual(submit(1, sector: 127, gpa: 0x2000, bytes: 1024).submit, -22, "past the end of the disk")
        XCTAssertEqual(submit(1, sector: UInt64.max, gpa: 0x2000, bytes: 512).submit, -22, "sector overflow")
        XCTAssertEqual(submit(1, sector: 0, gpa: 0xFFFF_F000, bytes: 512).submit, -22, "buffer outside guest RAM")
        XCTAssertEqual(submit(9, sector: 0, gpa: 0x2000, bytes: 512).submit, -22, "unknown op")
        XCTAssertEqual(reg(0x28), 0, "no completion for refused requests")
    }

    func testReadOnlyDiskRefusesWrites() throws {
        device = try makeDevice(readOnly: true)
        XCTAssertEqual(reg(0x40), 1)
        XCTAssertEqual(submit(2, sector: 0, gpa: 0x2000, bytes: 512).submit, -1, "HV_EPERM")
        XCTAssertEqual(submit(1, sector: 0, gpa: 0x2000, bytes: 512).result, 512)
    }

    func testMissingUnitFailsCreateWithTheDeviceNamed() throws {
        XCTAssertThrowsError(try makeDevice(present: false)) { error in
            XCTAssertTrue("\(error)".contains("scsi0: device model 'diskprobe'"), "\(error)")
        }
    }
}
