import Foundation
import Logging
import PluginABI
import XCTest
@testable import HVDevices
@testable import HVHostIO
@testable import HVMemory
@testable import HVPluginHost
@testable import HVSupport

/// Host services against a hostile plugin (Fixtures/hostile_probe.c): guest ranges of
/// 2^63 bytes and more, or wrapping past 2^64, are HV_EFAULT (they used to trap in the
/// buffer constructor); forged, foreign-kind and stale handles are HV_EINVAL (they used
/// to be dereferenced as objects).
final class PluginHostileCallTests: XCTestCase {
    final class NoInterrupts: PCIInterruptSink {
        func setGSI(_ gsi: Int, level: Bool) {}
        func deliverMSI(address: UInt64, data: UInt32) {}
    }

    static let pluginDir = ProbeFixtures.build("hostile_probe.c", into: "hostileprobe",
                                               variants: [(ProbeFixtures.currentHeaders, "hostileprobe")])

    private var timers: TimerQueue!

    private func makeDevice() throws -> PluginDevice {
        let catalog = PluginCatalog.load(searchPath: PluginSearchPath(directories: [Self.pluginDir]))
        let match = try catalog.deviceModel(named: "hostileprobe")
        let clock = VMClock()
        if timers == nil {
            timers = TimerQueue(clock: clock, name: "hostile-test")
            timers.start()
        }
        let bridge = try PCIHostBridge(portBus: AddressBus(), mmioBus: AddressBus(), interrupts: NoInterrupts())
        let backends = PluginBackends(switches: SwitchRegistry(), diskQueue: DiskIOQueue(name: "hostile-disk")) { _ in nil }
        let context = PluginDeviceContext(
            vmName: "vm", prefix: "hv.device0", memory: try GuestMemory(size: 1 << 20), clock: clock, timers: timers,
            pci: bridge, configValue: { _ in nil }, logger: Logger(label: "hostile-test"), backends: backends)
        let device = PluginDevice(model: match.model, pluginName: match.plugin.name, context: context)
        try device.create()
        return device
    }

    override func tearDown() { timers?.stop() }

    private func run(_ device: PluginDevice, _ n: UInt64) -> Int64 {
        device.barWrite(bar: 0, offset: 0, size: 8, value: n)
        return Int64(bitPattern: device.barRead(bar: 0, offset: 8, size: 8))
    }

    func testHugeAndWrappingGuestRangesAreFaults() throws {
        let device = try makeDevice()
        defer { device.destroy() }
        XCTAssertEqual(run(device, 16), Int64(HV_OK), "the control call")
        for n: UInt64 in 1...6 {
            XCTAssertEqual(run(device, n), Int64(HV_EFAULT), "case \(n)")
        }
        XCTAssertEqual(run(device, 12), 0, "mem_map of SIZE_MAX bytes is NULL")
        XCTAssertEqual(run(device, 13), 0, "mem_map wrapping past 2^64 is NULL")
    }

    func testForgedForeignAndStaleHandlesAreRefused() throws {
        let first = try makeDevice()
        first.destroy()                                   // its hv_host is now stale
        let device = try makeDevice()
        defer { device.destroy() }
        XCTAssertEqual(run(device, 7), Int64(HV_EINVAL), "a forged hv_host")
        XCTAssertEqual(run(device, 8), Int64(HV_EINVAL), "a destroyed instance's hv_host")
        XCTAssertEqual(run(device, 9), Int64(HV_EINVAL), "hv_host 0x1")
        XCTAssertEqual(run(device, 10), 0, "config_get on a forged hv_host is NULL")
        XCTAssertEqual(run(device, 11), Int64(HV_EINVAL), "an hv_host passed as an hv_net_port")
        XCTAssertEqual(run(device, 14), Int64(HV_EINVAL), "a forged hv_disk")
        XCTAssertEqual(run(device, 15), 0, "timer_arm of a forged timer is ignored")
        XCTAssertEqual(run(device, 16), Int64(HV_OK), "the device's own handle still works")
    }

    func testHandleTableTokensCarryKindAndGeneration() {
        final class Thing {}
        let a = PluginHandleTable<Thing>(magic: 0x4141), b = PluginHandleTable<Thing>(magic: 0x4242)
        var t: Thing? = Thing()
        let h = a.register(t!)
        XCTAssertTrue(a.lookup(h) === t)
        XCTAssertNil(b.lookup(h), "another kind's table")
        a.release(h)
        XCTAssertNil(a.lookup(h), "released")
        let again = a.register(t!)                        // reuses the slot under a new generation
        XCTAssertNotEqual(again, h)
        XCTAssertNil(a.lookup(h))
        XCTAssertTrue(a.lookup(again) === t)
        t = nil
        XCTAssertNil(a.lookup(again), "objects are held weakly")
    }
}
