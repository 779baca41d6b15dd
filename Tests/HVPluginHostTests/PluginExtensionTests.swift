import Foundation
import Logging
import Synchronization
import XCTest
@testable import HVDevices
@testable import HVHostIO
@testable import HVMemory
@testable import HVPluginHost
@testable import HVSupport

/// The ABI 1.1 core through the real loader: a C probe device (Fixtures/ext_probe.c)
/// learns its path in init_with_info, looks extensions up with get_extension, uses
/// "hv.timer/1" and logs through the host.
final class PluginExtensionTests: XCTestCase {
    final class NoInterrupts: PCIInterruptSink {
        func setGSI(_ gsi: Int, level: Bool) {}
        func deliverMSI(address: UInt64, data: UInt32) {}
    }

    /// Collects the messages logged through swift-log.
    final class Capture: LogHandler, @unchecked Sendable {
        let lines = Mutex<[String]>([])
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String,
                 file: String, function: String, line: UInt) {
            lines.withLock { $0.append("\(message)") }
        }
    }

    static let pluginDir = ProbeFixtures.build("ext_probe.c", into: "extprobe", std: "c11",
                                               variants: [(ProbeFixtures.currentHeaders, "extprobe")])

    var timers: TimerQueue!
    var device: PluginDevice!
    let capture = Capture()

    override func setUpWithError() throws {
        let catalog = PluginCatalog.load(searchPath: PluginSearchPath(directories: [Self.pluginDir]))
        let match = try catalog.deviceModel(named: "extprobe")
        XCTAssertEqual(match.plugin.abiString, "1.4")
        let clock = VMClock()
        timers = TimerQueue(clock: clock, name: "ext-test")
        timers.start()
        let bridge = try PCIHostBridge(portBus: AddressBus(), mmioBus: AddressBus(), interrupts: NoInterrupts())
        let backends = PluginBackends(switches: SwitchRegistry(), diskQueue: DiskIOQueue(name: "ext-disk")) { _ in nil }
        let capture = self.capture
        let context = PluginDeviceContext(
            vmName: "web01", prefix: "hv.device3", memory: try GuestMemory(size: 1 << 20), clock: clock, timers: timers,
            pci: bridge, configValue: { _ in nil }, logger: Logger(label: "ext-test") { _ in capture },
            backends: backends)
        device = PluginDevice(model: match.model, pluginName: match.plugin.name, context: context)
        try device.create()
    }

    override func tearDown() {
        device?.destroy()
        timers?.stop()
    }

    private func reg(_ offset: UInt64) -> UInt64 { device.barRead(bar: 0, offset: offset, size: 8) }

    func testInitWithInfoGivesThePluginItsPathAndTheHostVersion() {
        XCTAssertEqual(reg(0x00), 1, "init_with_info saw the absolute path of libextprobe.so")
        XCTAssertEqual(reg(0x18), 0x1_0004, "host ABI 1.4")
    }

    func testGetExtensionAnswersKnownIdsAndNullForOthers() {
        XCTAssertEqual(reg(0x08), 1, "hv.timer/1 offered")
        XCTAssertEqual(reg(0x10), 1, "an unknown id answers NULL")
    }

    func testTimerCancelWaitWaitsOutARunningCallback() {
        device.barWrite(bar: 0, offset: 0x20, size: 8, value: 0)
        device.barWrite(bar: 0, offset: 0x28, size: 8, value: 0)
        XCTAssertEqual(reg(0x30), 0, "HV_OK")
        XCTAssertEqual(reg(0x38), 1, "the callback had returned before timer_cancel_wait did")
        XCTAssertEqual(Int64(bitPattern: reg(0x40)), -35, "HV_EDEADLK from inside the timer's own callback")
    }

    func testPluginLogLinesNameTheVMAndTheDevice() {
        device.barWrite(bar: 0, offset: 0x48, size: 8, value: 42)
        let lines = capture.lines.withLock { $0 }
        XCTAssertTrue(lines.contains("web01: hv.device3 (extprobe): probe value 42"), "\(lines)")
    }
}
