import Foundation
import Logging
import PluginABI
import XCTest
@testable import HVDevices
@testable import HVHostIO
@testable import HVMemory
@testable import HVPluginHost
@testable import HVSupport

/// The SVGA plugin (Plugins/SVGA), loaded as `libSVGA.so` from the build directory and
/// driven in-process the way vmwgfx and a VGA BIOS drive it: the SVGA II index/value
/// ports, the FIFO in its RAM BAR, the VGA ports and the 0xA0000 window.
final class SVGATests: XCTestCase {
    static let pluginPath: String = {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? ""
        return URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("libSVGA.so").path
    }()
    static let catalog = PluginCatalog.load(searchPath: PluginSearchPath(directories: [pluginPath]))

    final class Sink: PCIInterruptSink, @unchecked Sendable {
        let lock = NSLock()
        var levels: [Int: Bool] = [:]
        func setGSI(_ gsi: Int, level: Bool) { lock.withLock { levels[gsi] = level } }
        func deliverMSI(address: UInt64, data: UInt32) {}
        var anyAsserted: Bool { lock.withLock { levels.values.contains(true) } }
    }

    let ports = AddressBus()
    let mmio = AddressBus()
    let display = DisplaySurface()
    let sink = Sink()
    var timers: TimerQueue!
    var device: PluginDevice!
    var fifo: UnsafeMutablePointer<UInt32>!
    var vram: UnsafeMutablePointer<UInt32>!

    var context: PluginDeviceContext!
    var bridge: PCIHostBridge!

    override func setUpWithError() throws {
        guard FileManager.default.fileExists(atPath: Self.pluginPath) else {
            throw PluginDeviceError(message: "\(Self.pluginPath) is not built (swift build --product SVGA)")
        }
        let memory = try GuestMemory(size: 2 << 20)
        let clock = VMClock()
        timers = TimerQueue(clock: clock, name: "svga-test")
        timers.start()
        bridge = try PCIHostBridge(portBus: ports, mmioBus: mmio, interrupts: sink)
        let backends = PluginBackends(switches: SwitchRegistry(), diskQueue: DiskIOQueue(name: "svga-disk")) { _ in nil }
        var logger = Logger(label: "svga-test")
        logger.logLevel = .error   // hostile-input tests make (rate-limited) guest-error warnings
        let config = ["vgabios": "none"]
        context = PluginDeviceContext(
            vmName: "vm1", prefix: "svga", memory: memory, clock: clock, timers: timers, pci: bridge,
            configValue: { config[$0.lowercased()] }, logger: logger, backends: backends)
        context.legacy = LegacySpace(portBus: ports, mmioBus: mmio)
        context.display = display
        try makeDevice()
        device.reset()
    }

    /// Creates and realizes an instance (not yet reset) as `device`.
    func makeDevice() throws {
        let match = try Self.catalog.deviceModel(named: "svga", kind: HV_DEVICE_KIND_DISPLAY, kindName: "display", context: "svga.virtualDev")
        device = PluginDevice(match: match, context: context)
        try device.create()
        try bridge.assignResources()
        try device.realize()
        let f = try XCTUnwrap(device.function)
        fifo = try XCTUnwrap((f.barDevices[2] as? PCIRAMBAR)?.memory.base).assumingMemoryBound(to: UInt32.self)
        vram = try XCTUnwrap((f.barDevices[1] as? PCIRAMBAR)?.memory.base).assumingMemoryBound(to: UInt32.self)
    }

    override func tearDown() {
        device?.destroy()
        timers?.stop()
    }

    // MARK: access

    func reg(_ index: UInt32) -> UInt32 {
        device.barWrite(bar: 0, offset: 0, size: 4, value: UInt64(index))
        return UInt32(truncatingIfNeeded: device.barRead(bar: 0, offset: 1, size: 4))
    }

    func setReg(_ index: UInt32, _ value: UInt32) {
        device.barWrite(bar: 0, offset: 0, size: 4, value: UInt64(index))
        device.barWrite(bar: 0, offset: 1, size: 4, value: UInt64(value))
    }

    /// 64x32x32, a FIFO ring at 4 KiB..64 KiB, enabled.
    func enable(width: UInt32 = 64, height: UInt32 = 32) {
        setReg(0, 0x9000_0002)
        setReg(2, width)
        setReg(3, height)
        setReg(7, 32)
        fifo[0] = 4096
        fifo[1] = 65536
        fifo[2] = 4096
        fifo[3] = 4096
        setReg(1, 1)
        setReg(20, 1)
    }

    /// Appends `words` at NEXT_CMD (wrapping) and SYNCs.
    func submit(_ words: [UInt32]) {
        var next = Int(fifo[2])
        for w in words {
            fifo[next / 4] = w
            next += 4
            if next >= Int(fifo[1]) { next = Int(fifo[0]) }
        }
        fifo[2] = UInt32(next)
        setReg(21, 1)
    }

    func frame() throws -> DisplayFrame { try XCTUnwrap(display.snapshot()) }

    func pixel(_ f: DisplayFrame, _ x: Int, _ y: Int) -> UInt32 {
        let o = y * f.mode.pitch + x * 4
        return UInt32(f.bytes[o]) | UInt32(f.bytes[o + 1]) << 8 | UInt32(f.bytes[o + 2]) << 16 | UInt32(f.bytes[o + 3]) << 24
    }

    // MARK: tests

    func testIdentityBarsAndVersionNegotiation() throws {
        let f = try XCTUnwrap(device.function)
        XCTAssertEqual([f.identity.vendorID, f.identity.deviceID], [0x15AD, 0x0405])
        XCTAssertEqual(f.identity.classCode, 0x03_00_00)
        XCTAssertEqual(f.bars.map(\.index), [0, 1, 2])
        XCTAssertEqual(f.bars.map(\.kind), [.io, .memory32, .memory32])
        XCTAssertEqual(f.bars[1].size, 16 << 20)
        // A newer version than 2 is refused (reads back invalid); 2, 1 and 0 are accepted.
        setReg(0, 0x9000_0003)
        XCTAssertEqual(reg(0), 0xFFFF_FFFF)
        setReg(0, 0x9000_0000)
        XCTAssertEqual(reg(17), 0, "SVGA_ID_0 has no capabilities register")
        setReg(0, 0x9000_0002)
        XCTAssertEqual(reg(0), 0x9000_0002)
        let caps = reg(17)
        for (bit, name) in [(0x1, "RECT_FILL"), (0x2, "RECT_COPY"), (0x20, "CURSOR"), (0x200, "ALPHA_CURSOR"),
                            (0x8000, "EXTENDED_FIFO"), (0x20000, "PITCHLOCK"), (0x40000, "IRQMASK")] as [(UInt32, String)] {
            XCTAssertEqual(caps & bit, bit, name)
        }
        XCTAssertEqual(reg(15), 16 << 20, "VRAM_SIZE")
        XCTAssertEqual(reg(19), 256 << 10, "MEM_SIZE")
        XCTAssertEqual(reg(4), 2560)
        XCTAssertEqual(fifo[4] & 0x1, 0x1, "SVGA_FIFO_CAP_FENCE")
        // Before the SVGA mode: the VGA text screen (720x400) is shown.
        XCTAssertEqual(display.mode?.width, 720)
        XCTAssertEqual(display.mode?.height, 400)
    }

    func testModeSetDrawingCommandsCursorAndFence() throws {
        enable()
        XCTAssertEqual(reg(12), 256, "BYTES_PER_LINE")
        XCTAssertEqual(display.mode, try DisplayMode(width: 64, height: 32, pitch: 256, format: .xrgb8888))
        submit([2, 0x00FF_0000, 0, 0, 64, 32])              // RECT_FILL red, the whole screen
        submit([2, 0x0000_FF00, 60, 28, 100, 100])          // clipped to 4x4 at the corner
        for y in 0..<4 { for x in 0..<4 { vram[y * 64 + x] = 0x0000_00FF } }
        submit([1, 0, 0, 4, 4])                              // UPDATE
        _ = display.takeChanges()
        submit([3, 0, 0, 10, 10, 4, 4])                      // RECT_COPY blue block to (10,10)
        XCTAssertEqual(display.takeChanges(), [.copy(source: DisplayRect(x: 0, y: 0, width: 4, height: 4), toX: 10, toY: 10)],
                       "consoles see the blit as a copy (hv_display_ext.copy)")
        var f = try frame()
        XCTAssertEqual(pixel(f, 5, 5) & 0xFF_FFFF, 0xFF0000)
        XCTAssertEqual(pixel(f, 63, 31) & 0xFF_FFFF, 0x00FF00)
        XCTAssertEqual(pixel(f, 59, 27) & 0xFF_FFFF, 0xFF0000)
        XCTAssertEqual(pixel(f, 10, 10) & 0xFF_FFFF, 0x0000FF)
        XCTAssertEqual(pixel(f, 13, 13) & 0xFF_FFFF, 0x0000FF)
        XCTAssertEqual(pixel(f, 14, 14) & 0xFF_FFFF, 0xFF0000)
        XCTAssertEqual(fifo[3], fifo[2], "STOP caught up with NEXT_CMD")

        // Alpha cursor 2x2 with hotspot (1, 0), moved by the FIFO and shown by register.
        submit([22, 7, 1, 0, 2, 2, 0xFF11_2233, 0x0000_0000, 0x8000_0000, 0xFFFF_FFFF])
        submit([21, 30, 20])
        setReg(27, 1)
        var c = display.cursor
        XCTAssertEqual([c.width, c.height, c.hotX, c.hotY, c.x, c.y], [2, 2, 1, 0, 30, 20])
        XCTAssertEqual(c.pixels, [0xFF11_2233, 0, 0x8000_0000, 0xFFFF_FFFF])
        XCTAssertTrue(c.visible)
        // A monochrome cursor: AND 1 = transparent, AND 0 = the XOR colour.
        submit([19, 0, 0, 0, 2, 1, 1, 1, 0x0000_0040, 0x0000_0080])
        c = display.cursor
        XCTAssertEqual(c.pixels, [0xFFFF_FFFF, 0], "first pixel drawn white (AND 0, XOR 1), second transparent")
        setReg(25, 5)
        XCTAssertEqual(display.cursor.x, 5)

        // FENCE with the IRQ mask: SVGA_FIFO_FENCE, ANY_FENCE in the status port, INTx.
        setReg(33, 0x1)
        XCTAssertFalse(sink.anyAsserted)
        submit([30, 0x1234])
        XCTAssertEqual(fifo[6], 0x1234)
        XCTAssertEqual(UInt32(device.barRead(bar: 0, offset: 8, size: 4)), 0x1)
        XCTAssertTrue(sink.anyAsserted)
        device.barWrite(bar: 0, offset: 8, size: 4, value: 0x1)
        XCTAssertEqual(UInt32(device.barRead(bar: 0, offset: 8, size: 4)), 0)
        XCTAssertFalse(sink.anyAsserted)
        // Pitchlock widens the line.
        setReg(32, 512)
        XCTAssertEqual(reg(12), 512)
        XCTAssertEqual(display.mode?.pitch, 512)
        f = try frame()
        XCTAssertEqual(f.mode.pitch, 512)
    }

    func testHostileFIFOStopsWithoutHarm() throws {
        enable()
        submit([2, 0x00AB_CDEF, 0, 0, 64, 32])
        let processed = fifo[3]
        // MIN above MAX: nothing runs, STOP stays.
        fifo[0] = 65536
        fifo[1] = 4096
        submit([2, 0, 0, 0, 64, 32])
        XCTAssertEqual(fifo[3], processed)
        XCTAssertEqual(pixel(try frame(), 0, 0) & 0xFF_FFFF, 0xABCDEF)
        // A ring beyond the BAR, an unaligned NEXT_CMD: refused.
        fifo[0] = 4096
        fifo[1] = 1 << 30
        setReg(21, 1)
        fifo[1] = 65536
        fifo[2] = 4097
        setReg(21, 1)
        XCTAssertEqual(fifo[3], processed)
        // An unknown command drops what is queued; a huge cursor too.
        fifo[2] = processed
        submit([0xDEAD, 1, 2, 3])
        XCTAssertEqual(fifo[3], fifo[2])
        submit([22, 0, 0, 0, 100_000, 100_000])
        XCTAssertEqual(fifo[3], fifo[2])
        XCTAssertEqual(display.cursor.width, 0, "no cursor defined")
        // Rectangles outside the screen and copies from outside are clipped or ignored.
        submit([2, 0, 0xFFFF_FFF0, 0xFFFF_FFF0, 0xFFFF_FFFF, 0xFFFF_FFFF])
        submit([3, 60, 30, 0, 0, 0xFFFF_FFFF, 0xFFFF_FFFF])
        submit([3, 1000, 1000, 0, 0, 4, 4])
        XCTAssertEqual(pixel(try frame(), 10, 10) & 0xFF_FFFF, 0xABCDEF)
        // A command split across the wrap point waits for its last words, then runs.
        fifo[2] = 65536 - 8
        fifo[3] = 65536 - 8
        fifo[65536 / 4 - 2] = 2
        fifo[65536 / 4 - 1] = 0x0013_5790
        fifo[4096 / 4] = 8
        fifo[2] = 4096 + 4
        setReg(21, 1)
        XCTAssertEqual(fifo[3], 65536 - 8, "incomplete: STOP waits")
        fifo[4096 / 4 + 1] = 8
        fifo[4096 / 4 + 2] = 2
        fifo[4096 / 4 + 3] = 2
        fifo[2] = 4096 + 16
        setReg(21, 1)
        XCTAssertEqual(fifo[3], 4096 + 16)
        XCTAssertEqual(pixel(try frame(), 9, 9) & 0xFF_FFFF, 0x135790)
        let out = try device.runCommand("fifo", words: []).rendered
        let errors = out.split(separator: " ").last.flatMap { Int($0) } ?? 0
        XCTAssertEqual(errors, 5, out)
    }

    func testVGATextModeAndBochsDISPI() throws {
        // Mode 3 as the BIOS leaves it: text written at 0xB8000 in odd/even mode.
        for (i, ch) in "Hi".utf8.enumerated() {
            mmio.write(0xB8000 + UInt64(i * 2), size: 1, value: UInt64(ch))
            mmio.write(0xB8001 + UInt64(i * 2), size: 1, value: 0x1F)
        }
        XCTAssertEqual(mmio.read(0xB8000, size: 2), 0x1F48)
        XCTAssertTrue(try device.runCommand("text", words: []).rendered.hasPrefix("Hi"))
        // Planar write mode 0 with set/reset to plane 2 (how a BIOS loads a font).
        ports.write(0x3C4, size: 2, value: 0x0402)   // map mask: plane 2
        ports.write(0x3C4, size: 2, value: 0x0704)   // memory mode: no odd/even, extended
        ports.write(0x3CE, size: 2, value: 0x0204)   // read map: plane 2
        ports.write(0x3CE, size: 2, value: 0x0005)   // mode: write 0, read 0
        ports.write(0x3CE, size: 2, value: 0x0406)   // map A0000, no odd/even
        mmio.write(0xA0000 + 0x48 * 32, size: 1, value: 0x81)
        XCTAssertEqual(mmio.read(0xA0000 + 0x48 * 32, size: 1), 0x81)
        // DAC: write index 1, read it back.
        ports.write(0x3C8, size: 1, value: 1)
        for v in [0x3F, 0x20, 0x01] { ports.write(0x3C9, size: 1, value: UInt64(v)) }
        ports.write(0x3C7, size: 1, value: 1)
        XCTAssertEqual((0..<3).map { _ in ports.read(0x3C9, size: 1) }, [0x3F, 0x20, 0x01])

        // Bochs DISPI: ID, capabilities, a 32-bit LFB mode in VRAM.
        ports.write(0x1CE, size: 2, value: 0)
        XCTAssertEqual(ports.read(0x1CF, size: 2), 0xB0C5)
        ports.write(0x1CE, size: 2, value: 10)
        XCTAssertEqual(ports.read(0x1CF, size: 2), 256, "VRAM in 64 KiB units")
        for (index, value) in [(1, 320), (2, 200), (3, 32), (4, 0x41)] {
            ports.write(0x1CE, size: 2, value: UInt64(index))
            ports.write(0x1CF, size: 2, value: UInt64(value))
        }
        XCTAssertEqual(display.mode, try DisplayMode(width: 320, height: 200, pitch: 1280, format: .xrgb8888))
        vram[0] = 0x00C0_FFEE
        XCTAssertEqual(pixel(try frame(), 0, 0) & 0xFF_FFFF, 0xC0FFEE)
        // The banked window reaches VRAM while DISPI is on.
        XCTAssertEqual(mmio.read(0xA0000, size: 4), 0x00C0_FFEE)
    }

    func testSavedStateRestoresTheScreen() throws {
        enable()
        submit([2, 0x0055_AA11, 0, 0, 64, 32])
        submit([22, 0, 0, 0, 1, 1, 0xFF12_3456])
        setReg(25, 7)
        setReg(27, 1)
        setReg(33, 0x1)
        submit([30, 9])
        let section = try XCTUnwrap(try device.saveState())
        device.destroy()
        XCTAssertNil(display.mode, "blank without the device")
        try makeDevice()
        try device.loadState(section)
        XCTAssertEqual(display.mode, try DisplayMode(width: 64, height: 32, pitch: 256, format: .xrgb8888))
        XCTAssertEqual(pixel(try frame(), 63, 31) & 0xFF_FFFF, 0x55AA11)
        XCTAssertEqual([reg(0), reg(2), reg(3), reg(33), reg(25)], [0x9000_0002, 64, 32, 1, 7])
        XCTAssertEqual(fifo[6], 9)
        XCTAssertTrue(sink.anyAsserted, "the pending fence IRQ is asserted again")
        XCTAssertEqual(display.cursor.pixels, [0xFF12_3456])
        XCTAssertTrue(display.cursor.visible)
        // The restored device keeps working.
        submit([2, 0x0000_0001, 0, 0, 1, 1])
        XCTAssertEqual(pixel(try frame(), 0, 0) & 0xFF_FFFF, 1)
    }

    func testFuzzOneMillionOperations() throws {
        enable()
        let operations = ProcessInfo.processInfo.environment["HV_FUZZ_ITERATIONS"].flatMap(Int.init) ?? 1_000_000
        var state: UInt64 = 0x5EED_5F6A_0000_0001
        func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        let registers: [UInt32] = [0, 1, 2, 3, 7, 12, 14, 17, 20, 21, 22, 24, 25, 26, 27, 32, 33, 1024, 1791, 5000]
        let opcodes: [UInt32] = [1, 2, 3, 19, 20, 21, 22, 25, 30, 0, 99]
        let start = Date()
        for _ in 0..<operations {
            let r = next(), v = next()
            switch r % 100 {
            case 0..<20:
                // A register write, with values biased to the interesting edges.
                let value: UInt32 = v & 1 == 0 ? UInt32(truncatingIfNeeded: v >> 8) : UInt32(truncatingIfNeeded: (v >> 8) % 2600)
                setReg(registers[Int(v >> 40) % registers.count], value)
            case 20..<25:
                _ = reg(registers[Int(v >> 40) % registers.count])
            case 25..<60:
                // A FIFO word: commands and arguments, sometimes MIN/MAX/NEXT_CMD/STOP.
                let slot = v & 7 == 0 ? Int(v >> 8) % 4 : 1024 + Int(v >> 8) % 15000
                let word: UInt32 = v & 0x30 == 0 ? opcodes[Int(v >> 24) % opcodes.count]
                    : (v & 0x30 == 0x10 ? UInt32(truncatingIfNeeded: v >> 32) : UInt32(truncatingIfNeeded: (v >> 32) % 300))
                fifo[slot] = slot == 2 && v & 0x40 == 0 ? UInt32(4096 + 4 * (Int(v >> 16) % 15000)) : word
            case 60..<70:
                setReg(21, 1)
            case 70..<80:
                ports.write(0x3C0 + (v & 0x1F), size: Int(1 << ((v >> 8) % 3)), value: v >> 16)
            case 80..<85:
                _ = ports.read(0x3C0 + (v & 0x1F), size: 1)
            case 85..<92:
                mmio.write(0xA0000 + (v >> 8) % 0x20000, size: 1, value: v >> 40)
            case 92..<96:
                ports.write(0x1CE + (v & 3), size: 2, value: (v >> 8) % 5 == 0 ? v >> 16 : (v >> 16) % 12)
            default:
                device.barWrite(bar: 0, offset: 8, size: 4, value: v >> 8)
            }
        }
        print("SVGA fuzz: \(operations) operations in \(String(format: "%.1f", Date().timeIntervalSince(start))) s")
        // Still a working device: a clean mode set and fill draw.
        device.reset()
        enable()
        submit([2, 0x0012_3456, 0, 0, 64, 32])
        XCTAssertEqual(pixel(try frame(), 3, 3) & 0xFF_FFFF, 0x123456)
    }
}
