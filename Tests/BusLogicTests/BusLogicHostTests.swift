import Foundation
import Logging
import PluginABI
import XCTest
@testable import HVDevices
@testable import HVHostIO
@testable import HVMemory
@testable import HVPluginHost
@testable import HVSupport

/// The BusLogic plugin on the real host side: PluginDevice, the VMkernel SCSI layer and
/// its disk I/O threads over flat images. Completions arrive on host threads while the
/// test hammers the registers, so this is where lock order and reset races show; and
/// suspend/resume through the host's saved-state sections.
final class BusLogicHostTests: XCTestCase {
    final class Sink: PCIInterruptSink, @unchecked Sendable {
        let lock = NSLock()
        var level = false
        func setGSI(_ gsi: Int, level: Bool) { lock.withLock { self.level = level } }
        func deliverMSI(address: UInt64, data: UInt32) {}
    }

    /// The second register-accessing thread's stop flag and result.
    final class SecondVCPU: @unchecked Sendable {
        private let lock = NSLock()
        private var stop = false
        private var operations = 0
        private let done = DispatchSemaphore(value: 0)
        private var joined = false

        var stopRequested: Bool { lock.withLock { stop } }

        func finished(operations n: Int) {
            lock.withLock { operations = n }
            done.signal()
        }

        /// Stops the thread and waits for it (once); its operation count.
        @discardableResult
        func join() -> Int {
            let first = lock.withLock { () -> Bool in
                stop = true
                defer { joined = true }
                return !joined
            }
            if first { done.wait() }
            return lock.withLock { operations }
        }
    }

    static let mailboxBase: UInt64 = 0x10000
    static let ccbBase: UInt64 = 0x20000
    static let sgBase: UInt64 = 0x40000
    static let dataBase: UInt64 = 0x100000
    static let memorySize: UInt64 = 4 << 20

    var memory: GuestMemory!
    var queue: DiskIOQueue!
    var device: PluginDevice!
    var images: [String] = []
    let sink = Sink()

    var backends: PluginBackends!
    var model: UnsafePointer<hv_device_model>!

    override func setUpWithError() throws {
        let catalog = PluginCatalog.load(searchPath: PluginSearchPath(directories: [BusLogicTests.pluginPath]))
        model = try catalog.deviceModel(named: "buslogic").model
        memory = try GuestMemory(size: Self.memorySize)
        queue = DiskIOQueue(name: "buslogic-host")
        var paths: [Int: String] = [:]
        for unit in [0, 3] {
            let path = NSTemporaryDirectory() + "hv-buslogic-\(getpid())-\(unit)-\(UUID().uuidString.prefix(6)).img"
            XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(count: 256 * 512)))
            paths[unit] = path
            images.append(path)
        }
        backends = PluginBackends(switches: SwitchRegistry(), diskQueue: queue) { unit in
            try paths[unit].map { try FlatDisk(path: $0, readOnly: false) }
        }
        device = try makeDevice(restoring: nil)
    }

    /// An instance on its own PCI bus: create, resources, realize, then reset (power-on)
    /// or load_state and resume (restore); I/O, memory and bus mastering enabled.
    func makeDevice(restoring section: DeviceStateSection?) throws -> PluginDevice {
        let clock = VMClock()
        let ports = AddressBus()
        let bridge = try PCIHostBridge(portBus: ports, mmioBus: AddressBus(), interrupts: sink)
        var logger = Logger(label: "buslogic-host")
        logger.logLevel = .error   // the fuzz makes (rate-limited) guest-error warnings
        let context = PluginDeviceContext(vmName: "host", prefix: "scsi0", memory: memory, clock: clock,
                                          timers: TimerQueue(clock: clock, name: "buslogic-host"), pci: bridge,
                                          configValue: { _ in nil }, logger: logger, backends: backends)
        let d = PluginDevice(model: model, pluginName: "BusLogic", context: context)
        try d.create()
        try bridge.assignResources()
        try d.realize()
        if let section {
            try d.loadState(section)
            d.resume()
        } else {
            d.reset()
        }
        ports.write(0xCF8, size: 4, value: UInt64(0x8000_0000 | UInt32(d.function!.slot) << 11 | 0x04))
        ports.write(0xCFC, size: 2, value: 0x0007)
        return d
    }

    override func tearDown() {
        device?.destroy()
        queue?.shutdown()
        for path in images { try? FileManager.default.removeItem(atPath: path) }
    }

    private func read(_ offset: UInt64, size: Int = 1) -> UInt64 { device.barRead(bar: 0, offset: offset, size: size) }
    private func write(_ offset: UInt64, _ value: UInt64, size: Int = 1) {
        device.barWrite(bar: 0, offset: offset, size: size, value: value)
    }
    private func poke(_ gpa: UInt64, _ bytes: [UInt8]) { try? memory.write(bytes, at: gpa) }
    private func poke32(_ gpa: UInt64, _ v: UInt32) {
        poke(gpa, [UInt8(v & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v >> 16 & 0xFF), UInt8(v >> 24)])
    }
    private func peek(_ gpa: UInt64, _ n: Int) -> [UInt8] { (try? memory.read(at: gpa, count: n)) ?? [] }

    private func putCCB(_ i: UInt64, opcode: UInt8, direction: UInt8, cdb: [UInt8], target: UInt8,
                        dataLength: UInt32, data: UInt32, senseLength: UInt8) {
        var c = [UInt8](repeating: 0, count: 40)
        c[0] = opcode
        c[1] = direction << 3
        c[2] = UInt8(cdb.count)
        c[3] = senseLength
        for k in 0..<4 { c[4 + k] = UInt8(dataLength >> (8 * k) & 0xFF); c[8 + k] = UInt8(data >> (8 * k) & 0xFF) }
        c[16] = target
        for (k, b) in cdb.prefix(12).enumerated() { c[18 + k] = b }
        let sense = UInt32(Self.dataBase + 0x200000)
        for k in 0..<4 { c[36 + k] = UInt8(sense >> (8 * k) & 0xFF) }
        poke(Self.ccbBase + i * 0x100, c)
    }

    private func initMailboxes(_ count: UInt8) {
        let b = UInt32(Self.mailboxBase)
        for v in [0x81, count, UInt8(b & 0xFF), UInt8(b >> 8 & 0xFF), UInt8(b >> 16 & 0xFF), UInt8(b >> 24)] {
            write(1, UInt64(v))
        }
        write(0, 0x20)
    }

    /// Random register traffic, commands, mailbox entries and CCBs (many of them hostile)
    /// against real hv.scsi completions on the host's I/O threads; every step checks the
    /// register invariants. Afterwards a hard reset gives a working adapter, and destroy
    /// returns (no request is left hanging). Meanwhile a second "vCPU" thread reads the
    /// registers and kicks the mailboxes. 300k operations (about 10 s), 1M with
    /// HV_SLOW_TESTS=1 (the mock-host fuzz in BusLogicTests always does 1M).
    func testFuzzAgainstTheHostSCSILayer() throws {
        let operations = ProcessInfo.processInfo.environment["HV_SLOW_TESTS"] == "1" ? 1_000_000 : 300_000
        let second = SecondVCPU()
        let dev = try XCTUnwrap(device)
        let other = Thread {
            var r = SplitMix(seed: 77)
            var n = 0
            while !second.stopRequested {
                switch r.next() % 4 {
                case 0: dev.barWrite(bar: 1, offset: 1, size: 1, value: 0x02)
                case 1: _ = dev.barRead(bar: 1, offset: 2, size: 1)
                default: _ = dev.barRead(bar: 0, offset: 0, size: 1)
                }
                n += 1
            }
            second.finished(operations: n)
        }
        other.start()
        defer { second.join() }
        var rng = SplitMix(seed: 0x5C51_B05)
        let cdbOps: [UInt8] = [0x00, 0x12, 0x25, 0x28, 0x2A, 0x03, 0x35, 0xA0, 0x1A, 0x9E, 0xFF]
        let ccbOpcodes: [UInt8] = [0, 2, 3, 4, 0x81, 0x55]
        poke(Self.mailboxBase, [UInt8](repeating: 0, count: 256))
        initMailboxes(8)
        var started = 0
        for step in 0..<operations {
            switch rng.next() % 16 {
            case 0:
                let r = rng.next() % 64
                write(0, r == 0 ? 0x80 : r == 1 ? 0x40 : r == 2 ? 0x10 : 0x20)
            case 1, 2:
                write(1, rng.next() & 0xFF)
            case 3:
                _ = read(rng.next() % 32, size: [1, 2, 4][Int(rng.next() % 3)])
            case 4:
                if rng.next() % 4 == 0 {
                    initMailboxes(UInt8(1 + rng.next() % 8))
                } else {
                    write(rng.next() % 32, rng.next(), size: [1, 2, 4][Int(rng.next() % 3)])
                }
            case 5, 6, 7:
                let i = rng.next() % 8
                var cdb = (0..<10).map { _ in UInt8(rng.next() & 0xFF) }
                cdb[0] = cdbOps[Int(rng.next() % UInt64(cdbOps.count))]
                if cdb[0] == 0x28 || cdb[0] == 0x2A {
                    cdb[1] = 0; cdb[2...5] = [0, 0, 0, UInt8(rng.next() % 300 & 0xFF)]; cdb[6] = 0; cdb[7] = 0
                    cdb[8] = UInt8(rng.next() % 9)
                }
                let sgCount = Int(rng.next() % 5)
                for k in 0..<sgCount {
                    let len = UInt32(rng.next() % 3 == 0 ? 512 : rng.next() % 4096)
                    let addr = rng.next() % 16 == 0 ? UInt32(truncatingIfNeeded: rng.next())
                        : UInt32(Self.dataBase + rng.next() % 0x100000)
                    poke32(Self.sgBase + i * 0x100 + UInt64(8 * k), len)
                    poke32(Self.sgBase + i * 0x100 + UInt64(8 * k + 4), addr)
                }
                let op = ccbOpcodes[Int(rng.next() % UInt64(ccbOpcodes.count))]
                let sg = op == 2 || op == 4
                putCCB(i, opcode: op, direction: UInt8(rng.next() % 4), cdb: Array(cdb.prefix(Int(rng.next() % 13))),
                       target: UInt8(rng.next() % 2 == 0 ? 0 : rng.next() % 17),
                       dataLength: sg ? UInt32(sgCount * 8) : UInt32(rng.next() % 8192),
                       data: sg ? UInt32(Self.sgBase + i * 0x100) : UInt32(Self.dataBase),
                       senseLength: UInt8(rng.next() % 20))
                let box = rng.next() % 8
                poke32(Self.mailboxBase + 8 * box, UInt32(Self.ccbBase + i * 0x100))
                poke(Self.mailboxBase + 8 * box + 7, [UInt8(rng.next() % 4)])
                write(1, 0x02)
                started += 1
            case 8:
                poke(Self.mailboxBase + rng.next() % 256, [UInt8(rng.next() & 0xFF)])
            case 9, 10:
                // The driver side: free every incoming mailbox and reset the interrupt.
                for j in 0..<16 { poke(Self.mailboxBase + 64 + 8 * UInt64(j) + 7, [0]) }
                write(0, 0x20)
            default:
                _ = read(rng.next() % 4)
            }
            let s = UInt8(read(0) & 0xFF)
            if s & 0x02 != 0 { XCTFail("reserved status bit set at step \(step)"); break }
            let ir = UInt8(read(2) & 0xFF)
            if (ir & 0x0F != 0) != (ir & 0x80 != 0) { XCTFail("INTV disagrees at step \(step)"); break }
        }
        XCTAssertGreaterThan(started, operations / 8)
        XCTAssertGreaterThan(second.join(), 0, "the second vCPU ran")

        // A hard reset drops whatever is in flight; the adapter then works.
        write(0, 0x80)
        _ = read(0)
        XCTAssertEqual(read(0), 0x30)
        poke(Self.mailboxBase, [UInt8](repeating: 0, count: 64))
        initMailboxes(4)
        putCCB(0, opcode: 0x00, direction: 1, cdb: [0x12, 0, 0, 0, 36, 0], target: 3, dataLength: 36,
               data: UInt32(Self.dataBase), senseLength: 18)
        var code: [UInt8] = [0]
        // TEST UNIT READY-style retry: the reset leaves UNIT ATTENTION, which INQUIRY ignores.
        poke32(Self.mailboxBase, UInt32(Self.ccbBase))
        poke(Self.mailboxBase + 7, [1])
        write(1, 0x02)
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            code = peek(Self.mailboxBase + 32 + 7, 1)
            if code != [0] { break }
            usleep(1000)
        }
        XCTAssertEqual(code, [1], "INQUIRY after the fuzz")
        XCTAssertEqual(peek(Self.dataBase, 1), [0x00], "a direct-access device")
        XCTAssertTrue(sink.lock.withLock { sink.level }, "INTx raised for the completion")
    }

    /// Polls incoming mailbox `i` of a `count`-entry area until the adapter fills it.
    private func waitIncoming(_ i: UInt64, count: UInt64) -> [UInt8] {
        let deadline = Date().addingTimeInterval(30)
        var entry = peek(Self.mailboxBase + 8 * count + 8 * i, 8)
        while entry[7] == 0 && Date() < deadline {
            usleep(500)
            entry = peek(Self.mailboxBase + 8 * count + 8 * i, 8)
        }
        return entry
    }

    private func startMailbox(_ i: UInt64, ccb: UInt64) {
        poke32(Self.mailboxBase + 8 * i, UInt32(Self.ccbBase + ccb * 0x100))
        poke(Self.mailboxBase + 8 * i + 7, [1])
        write(1, 0x02)
    }

    /// Suspend in the middle of a command reply and after a completion, restore into a
    /// new instance: the reply continues, the mailboxes carry on where they were.
    func testSuspendAndRestoreKeepMailboxesAndAReplyInProgress() throws {
        poke(Self.mailboxBase, [UInt8](repeating: 0, count: 64))
        initMailboxes(4)
        write(1, 0x8F); write(1, 1); write(0, 0x20)   // strict round robin
        let pattern = (0..<512).map { UInt8(truncatingIfNeeded: $0 &* 13) }
        poke(Self.dataBase, pattern)
        putCCB(0, opcode: 0x00, direction: 2, cdb: [0x2A, 0, 0, 0, 0, 5, 0, 0, 1, 0], target: 3, dataLength: 512,
               data: UInt32(Self.dataBase), senseLength: 18)
        startMailbox(0, ccb: 0)
        var entry = waitIncoming(0, count: 4)
        var used: UInt64 = 1   // mailboxes used so far (strict round robin: both directions)
        if entry[7] == 4 {   // a power-on UNIT ATTENTION first: once more
            write(0, 0x20)
            startMailbox(1, ccb: 0)
            entry = waitIncoming(1, count: 4)
            used = 2
        }
        XCTAssertEqual(entry[7], 1, "WRITE completed good: \(entry)")
        write(0, 0x20)
        write(1, 0x04)   // Inquire Board ID: read half of the reply
        XCTAssertEqual([read(1), read(1)], [UInt64(UInt8(ascii: "A")), UInt64(UInt8(ascii: "A"))])

        device.pause()
        let section = try XCTUnwrap(try device.saveState())
        device.destroy()
        device = try makeDevice(restoring: section)

        XCTAssertEqual(read(0) & 0x14, 0x04, "still in the reply: data-in ready, not ready")
        XCTAssertEqual([read(1), read(1)], [UInt64(UInt8(ascii: "5")), UInt64(UInt8(ascii: "0"))])
        XCTAssertEqual(read(2), 0x84, "then Command Complete")
        write(0, 0x20)
        XCTAssertEqual(read(0), 0x10, "ready, mailboxes still initialized")
        // READ(10) of the same block through the next outgoing mailbox.
        let next = used
        putCCB(1, opcode: 0x00, direction: 1, cdb: [0x28, 0, 0, 0, 0, 5, 0, 0, 1, 0], target: 3, dataLength: 512,
               data: UInt32(Self.dataBase + 0x1000), senseLength: 18)
        startMailbox(next, ccb: 1)
        XCTAssertEqual(waitIncoming(next, count: 4)[7], 1)
        XCTAssertEqual(peek(Self.dataBase + 0x1000, 512), pattern)
    }
}
