import Foundation
import Logging
import XCTest
@testable import HVDevices
@testable import HVHostIO
@testable import HVMemory
@testable import HVPluginHost
@testable import HVSupport

/// The device lifecycle through the real loader, with a thread-safe C probe
/// (Fixtures/lifecycle_probe.c): pause and resume reach the plugin, a paused device gets
/// no frames (the switch drops and counts them), and a thread-safe model frees itself in
/// destroy after timer_cancel_wait has waited out a callback in flight.
final class PluginLifecycleTests: XCTestCase {
    final class NoInterrupts: PCIInterruptSink {
        func setGSI(_ gsi: Int, level: Bool) {}
        func deliverMSI(address: UInt64, data: UInt32) {}
    }

    static let pluginDir = ProbeFixtures.build("lifecycle_probe.c", into: "lifecycleprobe", std: "c11",
                                               variants: [(ProbeFixtures.currentHeaders, "lifecycleprobe")])

    var timers: TimerQueue!
    var device: PluginDevice!
    var peer: VirtualPort!
    let switches = SwitchRegistry()

    override func setUpWithError() throws {
        let catalog = PluginCatalog.load(searchPath: PluginSearchPath(directories: [Self.pluginDir]))
        let match = try catalog.deviceModel(named: "lifecycleprobe")
        let clock = VMClock()
        timers = TimerQueue(clock: clock, name: "lifecycle-test")
        timers.start()
        let bridge = try PCIHostBridge(portBus: AddressBus(), mmioBus: AddressBus(), interrupts: NoInterrupts())
        let backends = PluginBackends(switches: switches, diskQueue: DiskIOQueue(name: "lifecycle-disk")) { _ in nil }
        let context = PluginDeviceContext(
            vmName: "vm", prefix: "hv.device0", memory: try GuestMemory(size: 1 << 20), clock: clock, timers: timers,
            pci: bridge, configValue: { $0 == "networkname" ? "lifecycle-net" : nil }, logger: Logger(label: "lifecycle-test"),
            backends: backends)
        device = PluginDevice(model: match.model, pluginName: match.plugin.name, context: context)
        try device.create()
        peer = switches.virtualSwitch(named: "lifecycle-net").makePort(
            name: "peer", mac: [0x02, 0, 0, 0, 0, 0x99], receive: { _ in .taken }, linkChanged: { _ in })
    }

    override func tearDown() {
        device?.destroy()
        timers?.stop()
    }

    private func reg(_ offset: UInt64) -> UInt64 { device.barRead(bar: 0, offset: offset, size: 8) }

    /// Sends a frame to the probe and waits until the switch has delivered it (ports are queues).
    private func sendToProbe() -> SendResult {
        let result = peer.send([0x02, 0, 0, 0, 0x11, 0xFE, 0x02, 0, 0, 0, 0, 0x99, 0x08, 0x00] + [UInt8](repeating: 0, count: 46))
        XCTAssertTrue(switches.virtualSwitch(named: "lifecycle-net").waitUntilDelivered())
        return result
    }

    private var probePort: VirtualPort {
        switches.virtualSwitch(named: "lifecycle-net").ports.first { $0.name == "vm.hv.device0" }!
    }

    func testPausedDeviceGetsNoFramesAndResumeLetsThemIn() {
        XCTAssertEqual(sendToProbe(), .sent)
        XCTAssertEqual(reg(0x10), 1)
        device.pause()
        XCTAssertEqual(reg(0x00), 1, "pause op called")
        XCTAssertEqual(sendToProbe(), .sent)
        XCTAssertEqual(reg(0x10), 1, "no receive while paused")
        XCTAssertEqual(probePort.counters.rxDrops, 1, "the switch counted the drop")
        device.resume()
        XCTAssertEqual(reg(0x08), 1, "resume op called")
        XCTAssertEqual(sendToProbe(), .sent)
        XCTAssertEqual(reg(0x10), 2)
    }

    func testDestroyWaitsOutARunningTimerCallbackThroughTimerCancelWait() throws {
        guard let lib = dlopen(Self.pluginDir + "/liblifecycleprobe.so", RTLD_NOW | RTLD_NOLOAD),
              let sym = dlsym(lib, "lifecycle_probe_report") else {
            return XCTFail("the probe's report function is not loaded")
        }
        let report = unsafeBitCast(sym, to: (@convention(c) (UnsafeMutablePointer<Int32>, UnsafeMutablePointer<Int32>) -> Void).self)
        device.barWrite(bar: 0, offset: 0x18, size: 8, value: 0)
        let deadline = Date().addingTimeInterval(5)
        while reg(0x20) == 0 && Date() < deadline { usleep(1000) }
        XCTAssertEqual(reg(0x20), 1, "the slow callback started")
        device.destroy()
        var rc: Int32 = 0, finished: Int32 = 0
        report(&rc, &finished)
        XCTAssertEqual(rc, 0, "timer_cancel_wait in destroy: HV_OK (the handle is still valid there)")
        XCTAssertEqual(finished, 1, "the callback had returned before destroy freed the instance")
        XCTAssertEqual(sendToProbe(), .sent)
        XCTAssertNil(switches.virtualSwitch(named: "lifecycle-net").ports.first { $0.name == "vm.hv.device0" },
                     "the port was detached")
    }
}
