import Foundation
import Logging
import XCTest
@testable import HVDevices
@testable import HVHostIO
@testable import HVMemory
@testable import HVPluginHost
@testable import HVSupport

/// The host-services adapter, driven by the C example plugin (QEMU's "edu" device)
/// without KVM: BAR accesses, INTx, DMA through guest memory, timers, saved state.
final class PluginHostServicesTests: XCTestCase {
    final class Sink: PCIInterruptSink, @unchecked Sendable {
        let lock = NSLock()
        var levels: [Int: Bool] = [:]
        func setGSI(_ gsi: Int, level: Bool) { lock.withLock { levels[gsi] = level } }
        func deliverMSI(address: UInt64, data: UInt32) {}
        func level(_ gsi: Int) -> Bool { lock.withLock { levels[gsi] ?? false } }
    }

    static let pluginDir: String = {
        var root = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { root.deleteLastPathComponent() }
        let out = NSTemporaryDirectory() + "hv-services-\(getpid())"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/make")
        p.arguments = ["-s", "-C", root.path + "/Plugins/Examples/EduDevice", "OUT=" + out]
        try? FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        try? p.run()
        p.waitUntilExit()
        return out
    }()

    var memory: GuestMemory!
    var clock: VMClock!
    var timers: TimerQueue!
    var bridge: PCIHostBridge!
    let ports = AddressBus()
    let sink = Sink()
    var device: PluginDevice!

    override func setUpWithError() throws {
        let catalog = PluginCatalog.load(searchPath: PluginSearchPath(directories: [Self.pluginDir]))
        let match = try catalog.deviceModel(named: "edu")
        memory = try GuestMemory(size: 16 << 20)
        clock = VMClock()
        timers = TimerQueue(clock: clock, name: "edu-test")
        timers.start()
        bridge = try PCIHostBridge(portBus: ports, mmioBus: AddressBus(), interrupts: sink)
        let backends = PluginBackends(switches: SwitchRegistry(), diskQueue: DiskIOQueue(name: "edu-disk")) { _ in nil }
        let config = ["dmadelayus": "50", "computedelayus": "10"]
        let context = PluginDeviceContext(
            vmName: "test", prefix: "hv.device0", memory: memory, clock: clock, timers: timers, pci: bridge,
            configValue: { config[$0.lowercased()] }, logger: Logger(label: "test"), backends: backends)
        device = PluginDevice(model: match.model, pluginName: match.plugin.name, context: context)
        try device.create()
        try bridge.assignResources()
        try device.realize()
        device.reset()
    }

    override func tearDown() {
        device?.destroy()
        timers?.stop()
    }

    private func read(_ offset: UInt64, size: Int = 4) -> UInt64 { device.barRead(bar: 0, offset: offset, size: size) }
    private func write(_ offset: UInt64, _ value: UInt64, size: Int = 4) { device.barWrite(bar: 0, offset: offset, size: size, value: value) }

    private func setCommand(_ value: UInt32) {
        ports.write(0xCF8, size: 4, value: UInt64(0x8000_0000 | UInt32(device.function!.slot) << 11 | 0x04))
        ports.write(0xCFC, size: 2, value: UInt64(value))
        XCTAssertEqual(bridge.command(of: device.function!), UInt16(value))
    }

    private func waitUntil(_ what: String, _ condition: () -> Bool) {
        let deadline = Date().addingTimeInterval(5)
        while !condition() {
            if Date() > deadline { XCTFail("timed out waiting for \(what)"); return }
            usleep(200)
        }
    }

    func testIdentityBARAndRegisters() throws {
        let f = try XCTUnwrap(device.function)
        XCTAssertEqual(f.identity.vendorID, 0x1234)
        XCTAssertEqual(f.identity.deviceID, 0x11E8)
        XCTAssertEqual(f.bars, [PCIBARDescription(index: 0, kind: .memory32, size: 1 << 20)])
        XCTAssertEqual(bridge.mappedAddress(of: f, bar: 0), 0xE000_0000)
        XCTAssertEqual(read(0x00), 0x0100_00ED)
        write(0x04, 0x1234_5678)
        XCTAssertEqual(read(0x04), 0xEDCB_A987)
        XCTAssertEqual(read(0x00, size: 2), 0xFFFF, "narrow accesses below 0x80 read as all ones")
    }

    func testInterruptRaiseAndAcknowledgeDriveTheSharedLine() throws {
        let gsi = PCIHostBridge.pirqToGSI[(1 - 1 + device.function!.slot - 1) & 3]
        write(0x60, 0x5)
        XCTAssertTrue(sink.level(gsi))
        XCTAssertEqual(read(0x24), 0x5)
        write(0x64, 0x1)
        XCTAssertTrue(sink.level(gsi), "status 0x4 still pending")
        write(0x64, 0x4)
        XCTAssertFalse(sink.level(gsi))
    }

    func testFactorialCompletesOnAHostTimer() {
        write(0x08, 10)
        waitUntil("factorial") { self.read(0x20) & 1 == 0 }
        XCTAssertEqual(read(0x08), 3_628_800)
    }

    func testDMAMovesBytesThroughGuestMemoryAndMarksThemDirty() throws {
        let pattern = (0..<64).map { UInt8($0 ^ 0x5A) }
        try memory.write(pattern, at: 0x1000)
        _ = memory.takeDirtyPages()
        // Bus mastering off: the device cannot reach memory.
        write(0x80, 0x40000, size: 8); write(0x88, 0x3000, size: 8); write(0x90, 64, size: 8)
        write(0x98, 0x3, size: 8)
        waitUntil("DMA without bus master") { self.read(0x98, size: 8) & 1 == 0 }
        XCTAssertEqual(memory.takeDirtyPages().reduce(0, |), 0)
        setCommand(0x6)
        write(0x80, 0x1000, size: 8); write(0x88, 0x40000, size: 8); write(0x90, 64, size: 8)
        write(0x98, 0x1, size: 8)                               // RAM -> device
        waitUntil("DMA to device") { self.read(0x98, size: 8) & 1 == 0 }
        write(0x80, 0x40000, size: 8); write(0x88, 0x3000, size: 8); write(0x90, 64, size: 8)
        write(0x98, 0x3, size: 8)                               // device -> RAM
        waitUntil("DMA to RAM") { self.read(0x98, size: 8) & 1 == 0 }
        XCTAssertEqual(try memory.read(at: 0x3000, count: 64), pattern)
        let dirty = memory.takeDirtyPages()
        XCTAssertEqual(dirty[0] & (1 << 3), 1 << 3, "page 3 was written by the device")
        // A DMA whose buffer range leaves the device window copies nothing and still completes.
        write(0x80, 0x40FF0, size: 8); write(0x88, 0x5000, size: 8); write(0x90, 64, size: 8)
        write(0x98, 0x3, size: 8)
        waitUntil("rejected DMA") { self.read(0x98, size: 8) & 1 == 0 }
        XCTAssertEqual(try memory.read(at: 0x5000, count: 64), [UInt8](repeating: 0, count: 64))
    }

    func testSavedStateRoundTrip() throws {
        write(0x04, 0xAAAA_5555)
        write(0x60, 0x80)
        let section = try XCTUnwrap(try device.saveState())
        XCTAssertEqual(section.name, "edu")
        XCTAssertFalse(section.fields.isEmpty)
        device.reset()
        XCTAssertEqual(read(0x24), 0)
        try device.loadState(section)
        XCTAssertEqual(read(0x04), 0x5555_AAAA)
        XCTAssertEqual(read(0x24), 0x80)
        var wrong = DeviceStateSection(name: "vlance", version: 1)
        wrong.fields = section.fields
        XCTAssertThrowsError(try device.loadState(wrong))
    }
}
