import Foundation
import Logging
import XCTest
@testable import HVDevices
@testable import HVHostIO
@testable import HVMemory
@testable import HVPluginHost
@testable import HVSupport

/// "hv.ram-bar/1", "hv.msix/1" and "hv.doorbell/1" through the real loader: a C probe
/// device (Fixtures/pci_ext_probe.c) on a host bridge whose backend is a recording fake,
/// so guest accesses take the exit path and the backend's mappings are observable.
final class PluginPCIExtensionTests: XCTestCase {
    static let pluginDir = ProbeFixtures.build("pci_ext_probe.c", into: "pciextprobe",
                                               variants: [(ProbeFixtures.currentHeaders, "pciextprobe")])

    let ports = AddressBus()
    let mmio = AddressBus()
    /// Records what the bridge raises.
    final class Sink: PCIInterruptSink {
        var levels: [Int: Bool] = [:]
        var messages: [(UInt64, UInt32)] = []
        func setGSI(_ gsi: Int, level: Bool) { levels[gsi] = level }
        func deliverMSI(address: UInt64, data: UInt32) { messages.append((address, data)) }
    }

    let sink = Sink()
    let mapper = RecordingMapper()
    let capture = PluginExtensionTests.Capture()
    var timers: TimerQueue!
    var bridge: PCIHostBridge!
    var device: PluginDevice!

    override func setUpWithError() throws {
        let catalog = PluginCatalog.load(searchPath: PluginSearchPath(directories: [Self.pluginDir]))
        let match = try catalog.deviceModel(named: "pciextprobe")
        let clock = VMClock()
        timers = TimerQueue(clock: clock, name: "pciext-test")
        timers.start()
        bridge = try PCIHostBridge(portBus: ports, mmioBus: mmio, interrupts: sink, mapper: mapper)
        let backends = PluginBackends(switches: SwitchRegistry(), diskQueue: DiskIOQueue(name: "pciext-disk")) { _ in nil }
        let capture = self.capture
        let context = PluginDeviceContext(
            vmName: "vm1", prefix: "hv.device0", memory: try GuestMemory(size: 1 << 20), clock: clock, timers: timers,
            pci: bridge, configValue: { $0 == "proberefusals" ? "TRUE" : nil }, logger: Logger(label: "pciext-test") { _ in capture },
            backends: backends)
        device = PluginDevice(model: match.model, pluginName: match.plugin.name, context: context)
        try device.create()
        try bridge.assignResources()
    }

    override func tearDown() {
        device?.destroy()
        timers?.stop()
    }

    var function: PCIFunction { device.function! }
    func base(_ bar: Int) -> UInt64 { bridge.mappedAddress(of: function, bar: bar) }
    func reg(_ offset: UInt64) -> UInt64 { mmio.read(base(0) + offset, size: 8) }
    func setReg(_ offset: UInt64, _ value: UInt64) { mmio.write(base(0) + offset, size: 8, value: value) }

    func setConfig(_ reg: Int, _ value: UInt32, size: Int = 4) {
        ports.write(0xCF8, size: 4, value: UInt64(0x8000_0000 | UInt32(function.slot) << 11 | UInt32(reg & 0xFC)))
        ports.write(UInt64(0xCFC + (reg & 3)), size: size, value: UInt64(value))
    }

    func config(_ reg: Int, size: Int = 4) -> UInt32 {
        ports.write(0xCF8, size: 4, value: UInt64(0x8000_0000 | UInt32(function.slot) << 11 | UInt32(reg & 0xFC)))
        return UInt32(truncatingIfNeeded: ports.read(UInt64(0xCFC + (reg & 3)), size: size))
    }

    /// Waits (up to 5 s) for a register the doorbell thread updates.
    func waitFor(_ offset: UInt64, toReach value: UInt64, file: StaticString = #filePath, line: UInt = #line) {
        let deadline = Date().addingTimeInterval(5)
        while reg(offset) < value && Date() < deadline { usleep(1000) }
        XCTAssertEqual(reg(offset), value, "register 0x\(String(offset, radix: 16))", file: file, line: line)
    }

    var ram: UnsafeMutableRawPointer { UnsafeMutableRawPointer(bitPattern: UInt(reg(0x08)))! }

    // MARK: declarations

    func testDeclarationsAndWhatIsRefused() {
        XCTAssertEqual(reg(0x00), 7, "ram-bar, msix and doorbell tables found; every declaration succeeded")
        let refused = (0..<12).map { Int64(bitPattern: reg(0x80 + 8 * UInt64($0))) }
        XCTAssertEqual(refused, [-22, -17, -22, -22, -22, -22, -17, -22, -22, -34, -22, -17],
                       "odd RAM size, BAR0 taken, MSI-X on the RAM BAR, 2049 vectors, table/PBA overlap, doorbell outside, duplicate doorbell, doorbell in the table, 8-byte I/O doorbell, short dirty bitmap, dirty query on BAR0, second MSI-X")
        setReg(0xE0, 1)
        XCTAssertEqual(Int64(bitPattern: reg(0xE0)), -1, "HV_EPERM after create()")
        let lines = capture.lines.withLock { $0 }
        XCTAssertTrue(lines.contains { $0.contains("hv.device0 (pciextprobe): MSI-X table and PBA overlap") }, "\(lines)")
    }

    // MARK: hv.ram-bar/1

    func testRAMBARIsMappedAtItsAddressAndFollowsTheBAR() throws {
        let host = UInt(reg(0x08))
        XCTAssertEqual(config(0x18), UInt32(base(2)) | 0x8, "a prefetchable 32-bit memory BAR")
        XCTAssertEqual(mapper.events.filter { if case .mapRAM = $0 { return true }; return false },
                       [.mapRAM(address: base(2), size: 0x10000, host: host)])
        mapper.clearEvents()
        setConfig(0x18, 0xE800_0000)
        XCTAssertEqual(mapper.events, [.unmapRAM(address: 0xE000_0000), .mapRAM(address: 0xE800_0000, size: 0x10000, host: host)])
        XCTAssertNotNil(mmio.region(at: 0xE800_FFFF))
        mapper.clearEvents()
        setConfig(0x04, 0x1, size: 2)                          // memory decode off
        XCTAssertTrue(mapper.events.contains(.unmapRAM(address: 0xE800_0000)))
        XCTAssertFalse(mapper.events.contains { if case .mapRAM = $0 { return true }; return false })
        mapper.clearEvents()
        setConfig(0x04, 0x3, size: 2)
        XCTAssertTrue(mapper.events.contains(.mapRAM(address: 0xE800_0000, size: 0x10000, host: host)))
    }

    func testRAMBARSharesItsMemoryAndReportsWhatTheGuestWrote() throws {
        let bar = base(2)
        // Pages 0 and 3 written through exits, page 9 "through the memslot" (KVM's log).
        mmio.write(bar + 0x10, size: 4, value: 0xCAFE_0000)
        mmio.write(bar + 3 * 4096 + 0x10, size: 4, value: 0xCAFE_0003)
        ram.storeBytes(of: UInt32(0xCAFE_0009), toByteOffset: 9 * 4096 + 0x10, as: UInt32.self)
        mapper.guestWrote(pages: [9], inMappingAt: bar)
        setReg(0x10, 0x209)
        XCTAssertEqual(reg(0x10), 1, "the device saw the pattern through its host pointer")
        XCTAssertEqual(reg(0x18), 0x209)
        XCTAssertEqual(reg(0x20), 3, "three dirty pages")
        XCTAssertEqual(mmio.read(bar + 0xF800, size: 4), UInt64(~UInt32(0x209)), "the guest sees what the device wrote")
        setReg(0x10, 0)
        XCTAssertEqual(reg(0x18), 0, "cleared by the previous query")
        setConfig(0x18, 0xE800_0000)                           // move: every page counts as written
        XCTAssertEqual(mmio.read(0xE800_0000 + 3 * 4096 + 0x10, size: 4), 0xCAFE_0003, "the contents moved with the BAR")
        setReg(0x10, 0)
        XCTAssertEqual(reg(0x18), 0xFFFF)
        XCTAssertEqual(reg(0x20), 16)
    }

    // MARK: hv.msix/1

    func testMSIXNotifyMaskAndPendingThroughTheProbe() {
        setReg(0x28, 8)
        XCTAssertEqual(Int64(bitPattern: reg(0x28)), -34, "HV_ERANGE beyond 8 vectors")
        setReg(0x28, 1)
        XCTAssertEqual(Int64(bitPattern: reg(0x28)), -2, "HV_ENOENT while MSI-X is disabled")
        let entry = base(0) + 0x800 + 16
        mmio.write(entry, size: 8, value: 0xFEE0_0000)
        mmio.write(entry + 8, size: 4, value: 0x51)
        mmio.write(entry + 12, size: 4, value: 0)
        setConfig(0x04, 0x7, size: 2)
        setConfig(0x62, 0x8000, size: 2)
        setReg(0x28, 1)
        XCTAssertEqual(reg(0x28), 0)
        XCTAssertEqual(sink.messages.last?.1, 0x51)
        mmio.write(entry + 12, size: 4, value: 1)
        setReg(0x28, 1)
        XCTAssertEqual(Int64(bitPattern: reg(0x28)), -11, "HV_EAGAIN while masked")
        XCTAssertEqual(mmio.read(base(0) + 0xC00, size: 8), 0b10, "pending bit 1")
        let sent = sink.messages.count
        mmio.write(entry + 12, size: 4, value: 0)
        XCTAssertEqual(sink.messages.count, sent + 1, "sent on unmask")
        XCTAssertEqual(mmio.read(base(0) + 0xC00, size: 8), 0)
        XCTAssertEqual(reg(0x00), 7, "the rest of BAR0 still reaches the plugin")
    }

    func testInterruptFallsBackFromMSIXToMSIToINTx() {
        let gsi = Int(config(0x3C, size: 1))
        setConfig(0x04, 0x7, size: 2)
        setReg(0x30, 0)
        XCTAssertEqual(reg(0x30), 3, "neither enabled: INTx")
        XCTAssertEqual(sink.levels[gsi], true)
        setConfig(0x44, 0xFEE0_0000)
        setConfig(0x4C, 0x61, size: 2)
        setConfig(0x42, 0x0001, size: 2)
        XCTAssertEqual(sink.levels[gsi], false, "INTx is off while MSI is enabled")
        setReg(0x30, 0)
        XCTAssertEqual(reg(0x30), 2, "MSI")
        XCTAssertEqual(sink.messages.last?.1, 0x61)
        setConfig(0x62, 0x8000, size: 2)
        setReg(0x30, 0)
        XCTAssertEqual(reg(0x30), 1, "MSI-X wins over MSI")
    }

    // MARK: hv.doorbell/1

    func testDoorbellNotifiersFollowTheBAR() {
        let regs = base(0), io = base(1)
        let added = mapper.events.filter { if case .addNotifier = $0 { return true }; return false }
        XCTAssertEqual(added, [.addNotifier(.memory, address: regs + 0x100, size: 4, datamatch: nil),
                               .addNotifier(.memory, address: regs + 0x108, size: 4, datamatch: 0xD00D),
                               .addNotifier(.port, address: io, size: 2, datamatch: nil)])
        XCTAssertTrue(function.doorbells.allSatisfy(\.inBackend))
        mapper.clearEvents()
        setConfig(0x10, 0xE900_0000)
        XCTAssertEqual(mapper.events, [.removeNotifier(.memory, address: regs + 0x100), .removeNotifier(.memory, address: regs + 0x108),
                                       .addNotifier(.memory, address: 0xE900_0100, size: 4, datamatch: nil),
                                       .addNotifier(.memory, address: 0xE900_0108, size: 4, datamatch: 0xD00D)])
        mapper.clearEvents()
        setConfig(0x04, 0x2, size: 2)                          // I/O decode off
        XCTAssertEqual(mapper.events, [.removeNotifier(.port, address: io)])
        XCTAssertFalse(function.doorbells[2].inBackend)
    }

    func testRingsOnTheExitPathCallTheDeviceOnItsThread() {
        ram.storeBytes(of: UInt32(20), toByteOffset: 0xE000, as: UInt32.self)
        mmio.write(base(0) + 0x100, size: 4, value: 0x1234)
        waitFor(0x40, toReach: 1)
        XCTAssertEqual(ram.load(fromByteOffset: 0xE004, as: UInt32.self), 41, "the device answered from the ring callback")
        mmio.write(base(0) + 0x100, size: 2, value: 1)         // another size: the register's handler
        mmio.write(base(0) + 0x108, size: 4, value: 0x1234)    // another value: the handler too
        XCTAssertEqual(reg(0x58), 2)
        mmio.write(base(0) + 0x108, size: 4, value: 0xD00D)
        waitFor(0x48, toReach: 1)
        XCTAssertEqual(reg(0x68), 3, "doorbell B raised INTx (no MSI enabled)")
        ports.write(base(1), size: 2, value: 0xFFFF)
        waitFor(0x50, toReach: 1)
        XCTAssertEqual(ram.load(fromByteOffset: 0xE008, as: UInt32.self), 1)
        XCTAssertEqual(reg(0x40), 1, "no stray rings")
    }

    func testRingsWhileTheDeviceIsBusyCoalesce() {
        device.lock.withLock {
            for _ in 0..<5 { mmio.write(base(0) + 0x100, size: 4, value: 0) }
        }
        waitFor(0x40, toReach: 5)
        XCTAssertLessThanOrEqual(reg(0x60), 2, "at most one call before the lock was taken and one after")
    }

    func testRefusedNotifiersLeaveTheExitPathWorking() {
        mapper.refuseNotifiers = true
        setConfig(0x10, 0xE900_0000)
        XCTAssertFalse(function.doorbells[0].inBackend)
        mmio.write(0xE900_0100, size: 4, value: 0)
        waitFor(0x40, toReach: 1)
    }

    func testNoRingReachesTheDeviceAfterDestroy() {
        let doorbellAddress = base(0) + 0x100
        device.destroy()
        mmio.write(doorbellAddress, size: 4, value: 0)          // would crash if the freed device were called
        ports.write(base(1), size: 2, value: 0)
        XCTAssertEqual(function.doorbells[0].event.take(), 1, "the ring was left unserved")
    }
}
