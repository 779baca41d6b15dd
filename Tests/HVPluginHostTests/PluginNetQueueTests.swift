import Foundation
import Logging
import Synchronization
import XCTest
@testable import HVDevices
@testable import HVHostIO
@testable import HVMemory
@testable import HVPluginHost
@testable import HVSupport

/// Network ports as queues through the real loader: a C NIC probe (Fixtures/net_probe.c)
/// sends frames gathered from its guest memory ("hv.net-queue/1" send_guest), receives on
/// its port's own thread with back-pressure (rx_backpressure / rx_ready), and a build of
/// the same probe against the frozen 1.0 header still sends and receives.
final class PluginNetQueueTests: XCTestCase {
    final class NoInterrupts: PCIInterruptSink {
        func setGSI(_ gsi: Int, level: Bool) {}
        func deliverMSI(address: UInt64, data: UInt32) {}
    }

    static let pluginDir = ProbeFixtures.build(
        "net_probe.c", into: "netprobe",
        variants: [(ProbeFixtures.currentHeaders, "netprobe"), (ProbeFixtures.frozen10Headers, "netprobe10")], defineName: true)

    final class Received: Sendable {
        let frames = Mutex<[[UInt8]]>([])
    }

    static let network = "probe-net"
    let switches = SwitchRegistry()
    var devices: [PluginDevice] = []
    var timers: [TimerQueue] = []
    let peerFrames = Received()
    var peer: VirtualPort!
    let peerMAC: [UInt8] = [0x00, 0x50, 0x56, 0x00, 0x00, 0x99]

    var lab: VirtualSwitch { switches.virtualSwitch(named: Self.network) }

    override func setUp() {
        let frames = peerFrames
        peer = lab.makePort(name: "peer", mac: peerMAC, receive: { f in
            frames.frames.withLock { $0.append(Array(f)) }
            return .taken
        }, linkChanged: { _ in })
    }

    override func tearDown() {
        for d in devices { d.destroy() }
        for t in timers { t.stop() }
        for p in lab.ports { lab.removePort(p) }
    }

    /// A probe instance with its own 1 MiB of guest memory on the "probe-net" switch.
    private func makeProbe(_ model: String = "netprobe", mac: String) throws -> PluginDevice {
        let catalog = PluginCatalog.load(searchPath: PluginSearchPath(directories: [Self.pluginDir]))
        let match = try catalog.deviceModel(named: model)
        XCTAssertEqual(match.plugin.abiString, model == "netprobe10" ? "1.0" : "1.4")
        let clock = VMClock()
        let queue = TimerQueue(clock: clock, name: "net-probe")
        timers.append(queue)
        let bridge = try PCIHostBridge(portBus: AddressBus(), mmioBus: AddressBus(), interrupts: NoInterrupts())
        let backends = PluginBackends(switches: switches, diskQueue: DiskIOQueue(name: "net-probe-disk")) { _ in nil }
        let config = ["generatedaddress": mac, "networkname": Self.network]
        let context = PluginDeviceContext(
            vmName: "vm-\(model)-\(mac.suffix(2))", prefix: "ethernet0", memory: try GuestMemory(size: 1 << 20),
            clock: clock, timers: queue, pci: bridge, configValue: { config[$0.lowercased()] },
            logger: Logger(label: "net-probe"), backends: backends)
        let d = PluginDevice(model: match.model, pluginName: match.plugin.name, context: context)
        try d.create()
        devices.append(d)
        return d
    }

    private func reg(_ d: PluginDevice, _ offset: UInt64) -> UInt64 { d.barRead(bar: 0, offset: offset, size: 8) }
    private func set(_ d: PluginDevice, _ offset: UInt64, _ value: UInt64) { d.barWrite(bar: 0, offset: offset, size: 8, value: value) }
    private func result(_ d: PluginDevice, _ offset: UInt64) -> Int32 { Int32(truncatingIfNeeded: Int64(bitPattern: reg(d, offset))) }

    private func port(of d: PluginDevice) throws -> VirtualPort {
        try XCTUnwrap(lab.ports.first { $0.name == "\(d.context.vmName).ethernet0" })
    }

    /// The frame a probe took last, read back through its registers.
    private func lastFrame(_ d: PluginDevice) -> [UInt8] {
        let n = Int(reg(d, 0x50))
        var bytes: [UInt8] = []
        for off in stride(from: 0, to: n, by: 8) { withUnsafeBytes(of: reg(d, 0x100 + UInt64(off))) { bytes += $0 } }
        return Array(bytes.prefix(n))
    }

    /// Writes `pieces` into the device's guest memory at `gpas` and appends them as segments.
    private func stage(_ d: PluginDevice, _ pieces: [[UInt8]], at gpas: [UInt64]) throws {
        for (piece, gpa) in zip(pieces, gpas) {
            try d.context.memory.write(piece, at: gpa)
            set(d, 0x08, gpa)
            set(d, 0x10, UInt64(piece.count))
        }
    }

    private func settle() { XCTAssertTrue(lab.waitUntilDelivered(), "the switch did not settle") }

    private func frame(to dst: [UInt8], from src: [UInt8], _ tag: UInt8, length: Int = 60) -> [UInt8] {
        var f = dst + src + [0x88, 0xB5, tag]
        while f.count < length { f.append(UInt8(truncatingIfNeeded: f.count &* 5 &+ Int(tag))) }
        return f
    }

    private let macA: [UInt8] = [0x00, 0x50, 0x56, 0x00, 0x00, 0x0A]
    private let macB: [UInt8] = [0x00, 0x50, 0x56, 0x00, 0x00, 0x0B]

    func testSendGuestGathersSegmentsFromGuestMemoryAndPads() throws {
        let a = try makeProbe(mac: "00:50:56:00:00:0a")
        XCTAssertEqual(reg(a, 0x00), 1, "hv.net-queue/1 offered, back-pressure enabled")
        let f = frame(to: peerMAC, from: macA, 1, length: 34)
        try stage(a, [Array(f[0..<10]), Array(f[10..<30]), Array(f[30...])], at: [0x1000, 0x5003, 0xFFFFC])
        set(a, 0x18, 60)
        XCTAssertEqual(result(a, 0x18), 0)
        settle()
        XCTAssertEqual(peerFrames.frames.withLock { $0 }, [f + [UInt8](repeating: 0, count: 26)], "gathered in order, padded to 60")
        XCTAssertEqual(try port(of: a).counters.txFrames, 1)
        XCTAssertEqual(try port(of: a).counters.txBytes, 60)
    }

    func testSendGuestValidatesEverySegmentBeforeCopying() throws {
        let a = try makeProbe(mac: "00:50:56:00:00:0a")
        let f = frame(to: peerMAC, from: macA, 2)
        func send(_ pieces: [(UInt64, Int)], pad: UInt64 = 0, reserved: UInt64 = 0) -> Int32 {
            set(a, 0x58, reserved)
            for (gpa, len) in pieces {
                set(a, 0x08, gpa)
                set(a, 0x10, UInt64(len))
            }
            set(a, 0x18, pad)
            return result(a, 0x18)
        }
        try a.context.memory.write(f, at: 0x2000)
        XCTAssertEqual(send([(0x2000, 30), (0x10_0000 - 10, 30)]), -14, "HV_EFAULT: the second segment leaves RAM")
        XCTAssertEqual(send([]), -22, "no segment")
        XCTAssertEqual(send([(0x2000, 30), (0x2100, 0)]), -22, "a segment of length 0")
        XCTAssertEqual(send([(0x2000, 60)], reserved: 1), -22, "reserved must be 0")
        XCTAssertEqual(send([(0x2000, 10)]), -22, "10 bytes is no frame")
        XCTAssertEqual(send([(0x0, 40000), (0x20000, 25536)]), -22, "65536 bytes is too long")
        XCTAssertEqual(send(Array(repeating: (0x2000, 1), count: 65)), -22, "more than HV_NET_MAX_SEGMENTS")
        XCTAssertEqual(send([(0x2000, 60)], pad: 70000), -22, "pad beyond the longest frame")
        settle()
        XCTAssertEqual(peerFrames.frames.withLock { $0.count }, 0, "nothing is sent from a refused list")

        // The limits themselves are fine: 64 one-byte segments, 10 bytes padded to 60.
        XCTAssertEqual(send((0..<64).map { (0x2000 + UInt64($0), 1) }), 0)
        XCTAssertEqual(send([(0x2000, 10)], pad: 60), 0)
        settle()
        XCTAssertEqual(peerFrames.frames.withLock { $0 }, [f + [UInt8](repeating: 0, count: 4), Array(f[0..<10]) + [UInt8](repeating: 0, count: 50)])

        try port(of: a).setLink(up: false)
        XCTAssertEqual(send([(0x2000, 60)]), -11, "HV_EAGAIN: link down")
    }

    /// Probe A sends from its guest memory; probe B receives on its port's thread, never
    /// on A's sending thread, holding frames it has no room for until it calls rx_ready.
    func testProbeToProbeWithBackPressure() throws {
        let a = try makeProbe(mac: "00:50:56:00:00:0a")
        let b = try makeProbe(mac: "00:50:56:00:00:0b")
        let frames = (1...3).map { frame(to: macB, from: macA, UInt8($0)) }
        for (i, f) in frames.enumerated() {
            try stage(a, [f], at: [0x4000 + UInt64(i) * 0x100])
            set(a, 0x18, 0)
            XCTAssertEqual(result(a, 0x18), 0)
        }
        settle()
        let portB = try port(of: b)
        XCTAssertEqual(reg(b, 0x30), 0, "no room: nothing taken")
        XCTAssertEqual(reg(b, 0x38), 1, "asked once, then held")
        XCTAssertEqual(portB.queuedFrames, 3)
        XCTAssertEqual(portB.counters.rxDrops, 0)

        set(b, 0x28, 2)   // room for two, rx_ready
        settle()
        XCTAssertEqual(reg(b, 0x30), 2)
        XCTAssertEqual(reg(b, 0x38), 2, "the third frame found no room and is held again")
        XCTAssertEqual(lastFrame(b), frames[1])
        XCTAssertEqual(portB.queuedFrames, 1)

        set(b, 0x28, 5)
        settle()
        XCTAssertEqual(reg(b, 0x30), 3)
        XCTAssertEqual(lastFrame(b), frames[2])
        XCTAssertEqual(portB.queuedFrames, 0)
        XCTAssertEqual(portB.counters.rxFrames, 3)
        XCTAssertEqual(portB.counters.rxDrops, 0)
        XCTAssertNotEqual(reg(b, 0x40), 0)
        XCTAssertNotEqual(reg(b, 0x40), reg(a, 0x48), "B's receive ran on A's sending thread")
        XCTAssertNotEqual(reg(b, 0x40), UInt64(pthread_self()), "B's receive ran on the test thread")
    }

    /// Built against the 1.0 header: no extension; net_send still works, receive now runs
    /// on the port's thread, and HV_EAGAIN drops the frame and counts it, as 1.0 promised.
    func testA10ProbeStillSendsAndReceives() throws {
        let old = try makeProbe("netprobe10", mac: "00:50:56:00:00:0c")
        XCTAssertEqual(reg(old, 0x00), 0)
        let out = frame(to: peerMAC, from: [0x00, 0x50, 0x56, 0x00, 0x00, 0x0C], 7)
        try stage(old, [Array(out[0..<20]), Array(out[20...])], at: [0x3000, 0x8000])
        set(old, 0x20, 0)
        XCTAssertEqual(result(old, 0x20), 0)
        settle()
        XCTAssertEqual(peerFrames.frames.withLock { $0 }, [out])

        let portOld = try port(of: old)
        XCTAssertFalse(portOld.holdsFramesWhenFull)
        let incoming = frame(to: [0x00, 0x50, 0x56, 0x00, 0x00, 0x0C], from: peerMAC, 8)
        XCTAssertEqual(peer.send(incoming), .sent)
        settle()
        XCTAssertEqual(reg(old, 0x38), 1)
        XCTAssertEqual(portOld.counters.rxDrops, 1, "HV_EAGAIN drops for a 1.0 plugin")
        XCTAssertEqual(portOld.queuedFrames, 0)

        set(old, 0x28, 1)
        XCTAssertEqual(peer.send(incoming), .sent)
        settle()
        XCTAssertEqual(reg(old, 0x30), 1)
        XCTAssertEqual(lastFrame(old), incoming)
        XCTAssertEqual(portOld.counters.rxFrames, 1)
        XCTAssertNotEqual(reg(old, 0x40), UInt64(pthread_self()), "receive ran on the sending (test) thread")
    }
}
