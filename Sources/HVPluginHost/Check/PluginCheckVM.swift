import Glibc
import HVDevices
import HVHostIO
import HVMemory
import HVSupport
import Logging
import PluginABI

/// The mock VM `hvhost plugin-check` runs device models in: real guest memory (32 MiB),
/// a real VM clock and timer thread, a virtual switch with a loopback port (every frame a
/// NIC sends comes back to it), and a scratch disk for unit 0 of a SCSI adapter. Each
/// instance gets a PCI bus of its own with BARs assigned as firmware would, and bus
/// mastering on, so DMA paths run.
package final class PluginCheckVM: @unchecked Sendable {
    package static let memorySize: UInt64 = 32 << 20
    package let memory: GuestMemory
    let clock = VMClock()
    let timers: TimerQueue
    let switches = SwitchRegistry()
    let diskQueue = DiskIOQueue(name: "plugin-check-disk")
    let scratchDisk: String
    private let loopback: VirtualPort
    let logger: Logger

    static let networkName = "plugin-check"

    package init(logger: Logger) throws {
        self.logger = logger
        memory = try GuestMemory(size: Self.memorySize, name: "plugin-check-ram")
        timers = TimerQueue(clock: clock, name: "plugin-check-timers")
        timers.start()
        var template = Array("/tmp/hvhost-plugin-check-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw PluginDeviceError(message: "cannot create a scratch disk in /tmp: \(String(cString: strerror(errno)))") }
        ftruncate(fd, 8 << 20)
        close(fd)
        scratchDisk = String(cString: template)
        let echo = Box<VirtualPort>()
        loopback = switches.virtualSwitch(named: Self.networkName).makePort(
            name: "loopback", mac: [0x02, 0x00, 0x00, 0x00, 0x00, 0x01],
            receive: { frame in
                // Back to the sender: destination := its source.
                guard frame.count >= 14, let port = echo.value else { return .taken }
                var bytes = Array(frame)
                for i in 0..<6 { bytes[i] = bytes[6 + i]; bytes[6 + i] = i == 5 ? 0x01 : (i == 0 ? 0x02 : 0) }
                _ = port.send(bytes)
                return .taken
            }, linkChanged: { _ in })
        echo.value = loopback
    }

    deinit {
        timers.stop()
        unlink(scratchDisk)
    }

    /// The .vmx prefix an instance of `kind` gets.
    static func prefix(for kind: UInt32) -> String {
        switch kind {
        case HV_DEVICE_KIND_NIC: "ethernet0"
        case HV_DEVICE_KIND_SCSI: "scsi0"
        case HV_DEVICE_KIND_DISPLAY: "svga"
        default: "hv.device0"
        }
    }

    /// An instance of `model` on a fresh PCI bus, created (not yet realized).
    package func makeDevice(_ model: LoadedPlugin.DeviceModel, pluginName: String,
                            monitor: DeviceEntryMonitor? = nil) throws -> PluginDevice {
        let bridge = try PCIHostBridge(portBus: AddressBus(), mmioBus: AddressBus(), interrupts: NoInterrupts())
        let scratch = scratchDisk
        let backends = PluginBackends(switches: switches, diskQueue: diskQueue) { unit in
            unit == 0 ? try FlatDisk(path: scratch, readOnly: false) : nil
        }
        let config: [String: String] = [
            "networkname": Self.networkName, "generatedaddress": "00:50:56:80:00:02",
            ":0.present": "TRUE", ":0.filename": scratch,
        ]
        var context = PluginDeviceContext(
            vmName: "plugin-check", prefix: Self.prefix(for: model.kind), memory: memory, clock: clock, timers: timers,
            pci: bridge, configValue: { config[$0] }, logger: logger, backends: backends)
        // A display plugin needs its legacy windows and a surface to publish to (each
        // instance its own: one publisher per surface).
        context.legacy = LegacySpace(portBus: AddressBus(), mmioBus: AddressBus())
        context.display = DisplaySurface()
        let device = PluginDevice(model: model.pointer, pluginName: pluginName, context: context,
                                  declarations: model.declarations)
        device.entryMonitor = monitor
        try device.create()
        try bridge.assignResources()
        Self.enableBusMaster(bridge)
        return device
    }

    /// Sets the command register's bus-master bit of every function on `bridge`, through
    /// configuration mechanism #1 (ports 0xCF8/0xCFC), as a guest driver would.
    private static func enableBusMaster(_ bridge: PCIHostBridge) {
        for slot in 1..<32 {
            let address: UInt32 = 0x8000_0000 | UInt32(slot) << 11 | 0x04
            withUnsafeBytes(of: address.littleEndian) { bridge.write(offset: 0, data: $0) }
            var command: UInt16 = 0
            withUnsafeMutableBytes(of: &command) { bridge.read(offset: 4, data: $0) }
            guard command != 0xFFFF else { continue }
            let value = command | 0x4
            withUnsafeBytes(of: value.littleEndian) { bridge.write(offset: 4, data: $0) }
        }
    }

    /// Sends a frame from the loopback port: to a NIC under test, a received frame.
    package func inject(_ frame: [UInt8]) { _ = loopback.send(frame) }

    /// Fills guest memory with bytes from `random`: what a fuzzed device reads by DMA.
    package func scribble(_ random: inout CheckRandom) {
        var page = [UInt8](repeating: 0, count: 4096)
        var gpa: UInt64 = 0
        while gpa < Self.memorySize {
            for i in 0..<page.count { page[i] = UInt8(truncatingIfNeeded: random.next()) }
            try? memory.write(page, at: gpa)
            gpa += 4096
        }
    }

    private final class NoInterrupts: PCIInterruptSink {
        func setGSI(_ gsi: Int, level: Bool) {}
        func deliverMSI(address: UInt64, data: UInt32) {}
    }

    private final class Box<T>: @unchecked Sendable { var value: T? }
}

/// A small deterministic generator (splitmix64) for fuzzing and scribbling.
package struct CheckRandom {
    private var state: UInt64
    package init(seed: UInt64) { state = seed }
    package mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    package mutating func below(_ n: UInt64) -> UInt64 { n == 0 ? 0 : next() % n }
}
