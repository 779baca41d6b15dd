import Foundation
import Logging
import PluginABI
import XCTest
@testable import HVDevices
@testable import HVHostIO
@testable import HVMemory
@testable import HVPluginHost
@testable import HVSupport

/// The ABI 1.1 device extensions through the real loader: a C probe device
/// (Fixtures/devext_probe.c) claims legacy ports and a memory window, brings an
/// expansion ROM, publishes a display surface and takes input events. The probe
/// records every result code; guest-like accesses go through the VM's buses with the
/// real chipset and PCI host bridge on them.
final class PluginDeviceExtensionTests: XCTestCase {
    static let pluginDir = ProbeFixtures.build("devext_probe.c", into: "devext",
                                               variants: [(ProbeFixtures.currentHeaders, "devext")])

    let ports = AddressBus()
    let mmio = AddressBus()
    let display = DisplaySurface()
    let input = InputRouter()
    let capture = PluginExtensionTests.Capture()
    var legacy: LegacySpace!
    var memory: GuestMemory!
    var timers: TimerQueue!
    var chipset: Chipset!
    var bridge: PCIHostBridge!
    var devices: [PluginDevice] = []

    override func setUpWithError() throws {
        let clock = VMClock()
        timers = TimerQueue(clock: clock, name: "devext-test")
        memory = try GuestMemory(size: 2 << 20)
        chipset = try Chipset(configuration: ChipsetConfiguration(memorySize: 2 << 20, vcpuCount: 1),
                              clock: clock, timers: timers)
        try chipset.register(portBus: ports, mmioBus: mmio)
        bridge = try PCIHostBridge(portBus: ports, mmioBus: mmio, interrupts: chipset)
        legacy = LegacySpace(portBus: ports, mmioBus: mmio)
    }

    override func tearDown() {
        for d in devices { d.destroy() }
        timers?.stop()
    }

    /// Creates a probe instance as hv.deviceN with `config` keys.
    @discardableResult
    func makeDevice(_ index: Int = 0, config: [String: String] = [:], directory: String = "/") throws -> PluginDevice {
        let catalog = PluginCatalog.load(searchPath: PluginSearchPath(directories: [Self.pluginDir]))
        let match = try catalog.deviceModel(named: "devext")
        let backends = PluginBackends(switches: SwitchRegistry(), diskQueue: DiskIOQueue(name: "devext-disk")) { _ in nil }
        let capture = self.capture
        var context = PluginDeviceContext(
            vmName: "vm1", prefix: "hv.device\(index)", memory: memory, clock: VMClock(), timers: timers, pci: bridge,
            configValue: { config[$0.lowercased()] }, logger: Logger(label: "devext") { _ in capture },
            backends: backends)
        context.legacy = legacy
        context.display = display
        context.input = input
        context.configDirectory = directory
        let device = PluginDevice(model: match.model, pluginName: match.plugin.name, context: context)
        try device.create()
        devices.append(device)
        return device
    }

    func reg(_ d: PluginDevice, _ offset: UInt64) -> Int64 { Int64(bitPattern: d.barRead(bar: 0, offset: offset, size: 8)) }
    func poke(_ d: PluginDevice, _ offset: UInt64, _ value: UInt64) { d.barWrite(bar: 0, offset: offset, size: 8, value: value) }

    /// Selects `reg` of the function in `slot` through 0xCF8 (as a guest does).
    func config(_ slot: Int, _ reg: Int) -> UInt32 {
        ports.write(0xCF8, size: 4, value: 0x8000_0000 | UInt64(slot) << 11 | UInt64(reg))
        return UInt32(ports.read(0xCFC, size: 4))
    }

    func setConfig(_ slot: Int, _ reg: Int, _ value: UInt32, size: Int = 4) {
        ports.write(0xCF8, size: 4, value: 0x8000_0000 | UInt64(slot) << 11 | UInt64(reg))
        ports.write(0xCFC, size: size, value: UInt64(value))
    }

    // MARK: hv.legacy-io/1

    func testClaimsDecodeOnTheBusesWithAbsoluteAddresses() throws {
        let d = try makeDevice()
        XCTAssertEqual((0..<3).map { reg(d, UInt64(8 * $0)) }, [0, 0, 0], "vga, wide port, vga-window claimed")
        XCTAssertEqual(ports.read(0x3C4, size: 2), 0x03C4, "the handler sees the port number")
        XCTAssertEqual(ports.read(0x0E00, size: 4), 0xC0DE_5EED, "one 32-bit read of the 4-port claim")
        XCTAssertEqual(mmio.read(0xA_0010, size: 8), 3 << 56 | 0xA_0010, "memory window, 8-byte access")
        XCTAssertEqual(mmio.read(0xB_FFFE, size: 4), 0xFFFF_0000 | 0xFFFE, "clipped at the window's end: the rest is open bus")
        mmio.write(0xA_8000, size: 2, value: 0xBEEF)
        XCTAssertEqual([reg(d, 0x200), reg(d, 0x208), reg(d, 0x210), reg(d, 0x218)], [0xA_8000, 2, 0xBEEF, 3])
        ports.write(0x3DF, size: 1, value: 0x7F)
        XCTAssertEqual([reg(d, 0x200), reg(d, 0x208), reg(d, 0x210), reg(d, 0x218)], [0x3DF, 1, 0x7F, 1])
        XCTAssertEqual(ports.read(0x3E0, size: 1), 0xFF, "just past the claim: nothing decodes")
        XCTAssertEqual(legacy.memoryWindows, [0xA_0000..<0xC_0000])
    }

    func testBadClaimsAreRefusedAndLogNameTheCollision() throws {
        let d = try makeDevice()
        let busy = Int64(HV_EBUSY), invalid = Int64(HV_EINVAL)
        XCTAssertEqual((3..<12).map { reg(d, UInt64(8 * $0)) },
                       [busy, busy, invalid, invalid, invalid, invalid, busy, invalid, invalid],
                       "own claim, i8042, PCI I/O window, past 0xffff, below the hole, unaligned, inside own window, no handlers, bad space")
        let lines = capture.lines.withLock { $0 }
        XCTAssertTrue(lines.contains { $0.contains("'hv.device0 (devext) keyboard'") && $0.contains("overlaps 'i8042-data'") }, "\(lines)")
        XCTAssertTrue(lines.contains { $0.contains("'hv.device0 (devext) overlaps-vga'") && $0.contains("overlaps 'hv.device0 (devext) vga'") }, "\(lines)")
        XCTAssertTrue(lines.contains { $0.contains("pci-window") && $0.contains("ports 0xc000-0xffff are the PCI I/O window") }, "\(lines)")
        XCTAssertTrue(lines.contains { $0.contains("unaligned") && $0.contains("4 KiB-aligned") }, "\(lines)")
        XCTAssertEqual(reg(d, 0x220), 0, "refused claims never reached the handlers")
    }

    func testASecondDeviceCannotClaimTheSameRangesUntilTheFirstIsDestroyed() throws {
        let first = try makeDevice(0)
        XCTAssertThrowsError(try makeDevice(1)) { error in
            XCTAssertTrue("\(error)".contains("hv.device1: device model 'devext'"), "\(error)")
            XCTAssertTrue("\(error)".contains("create failed: Device or resource busy (-16)"), "\(error)")
            XCTAssertTrue("\(error)".contains("region 'hv.device1 (devext) vga' at 0x3c0 (+0x20) overlaps 'hv.device0 (devext) vga'"), "\(error)")
        }
        XCTAssertEqual(ports.read(0x3C0, size: 1), 0xC0, "the first device still decodes")
        first.destroy()
        XCTAssertEqual(ports.read(0x3C0, size: 1), 0xFF, "released with the instance")
        XCTAssertEqual(legacy.memoryWindows, [])
        let second = try makeDevice(1)
        XCTAssertEqual(reg(second, 0), 0)
        XCTAssertEqual(mmio.read(0xA_0000, size: 4), 0xA_0000)
    }

    func testAFailedCreateReleasesTheClaimsItGot() throws {
        final class Window: BusDevice {
            func read(offset: UInt64, data: UnsafeMutableRawBufferPointer) { data.storeLittleEndian(0x77) }
            func write(offset: UInt64, data: UnsafeRawBufferPointer) {}
        }
        try legacy.claim(.memory, base: 0xB_F000, size: 0x1000, name: "other window", device: Window())
        XCTAssertThrowsError(try makeDevice()) { error in
            XCTAssertTrue("\(error)".contains("'hv.device0 (devext) vga-window' at 0xa0000 (+0x20000) overlaps 'other window'"), "\(error)")
        }
        XCTAssertNil(ports.region(at: 0x3C0), "the ports it had claimed are free again")
        XCTAssertNil(ports.region(at: 0x0E00))
        XCTAssertEqual(legacy.memoryWindows, [0xB_F000..<0xC_0000])
    }

    func testExtensionsRefuseCallsAfterCreate() throws {
        let d = try makeDevice()
        try d.realize()
        let perm = Int64(HV_EPERM)
        XCTAssertEqual([reg(d, 0x100), reg(d, 0x108), reg(d, 0x110), reg(d, 0x118)], [perm, perm, perm, perm],
                       "claim, ROM, display attach, input attach")
    }

    func testMemoryWindowsAreCarvedOutOfGuestRAM() throws {
        try makeDevice()
        for w in legacy.memoryWindows { memory.exclude(w) }
        XCTAssertEqual(memory.regions.map { $0.guestAddress..<($0.guestAddress + $0.size) },
                       [0..<0xA_0000, 0xC_0000..<0x20_0000])
        XCTAssertEqual(memory.regions.map(\.offset), [0, 0xC_0000], "the host mapping keeps its layout")
        XCTAssertFalse(memory.contains(0xA_0000, length: 1))
        XCTAssertFalse(memory.contains(0x9_FFFF, length: 2), "a range running into the window")
        XCTAssertTrue(memory.contains(0xC_0000, length: 0x1000))
        XCTAssertThrowsError(try memory.write([1], at: 0xB_0000))
        try memory.write([0xAB], at: 0xC_0000)
        XCTAssertEqual(try memory.read(at: 0xC_0000, count: 1), [0xAB])
    }

    // MARK: hv.rom/1

    func testROMFromBytesIsPlacedDisabledAndReadableOnceEnabled() throws {
        let d = try makeDevice()
        XCTAssertEqual([reg(d, 0x80), reg(d, 0x88), reg(d, 0x90)], [Int64(HV_EINVAL), 0, Int64(HV_EEXIST)],
                       "before the identity, the ROM, a second ROM")
        try bridge.assignResources()
        let slot = try XCTUnwrap(d.function).slot
        let setting = config(slot, 0x30)
        XCTAssertEqual(setting & 1, 0, "firmware leaves the ROM disabled")
        let base = UInt64(setting & ~0x7FF)
        XCTAssertTrue(PCIHostBridge.mmioWindow.contains(base))
        XCTAssertEqual(base % 0x1000, 0, "naturally aligned: 3000 bytes make a 4 KiB ROM")
        XCTAssertNil(mmio.region(at: base), "not decoded while disabled")
        setConfig(slot, 0x30, UInt32(base) | 1)
        XCTAssertEqual(mmio.read(base, size: 2), 0xAA55, "the option-ROM signature")
        XCTAssertEqual(mmio.read(base + 2999, size: 1), UInt64(UInt8(truncatingIfNeeded: 2999 * 7 + 1)))
        XCTAssertEqual(mmio.read(base + 3000, size: 8), 0, "padding to the power of two reads as zero")
        mmio.write(base + 4, size: 4, value: 0)
        XCTAssertEqual(mmio.read(base + 4, size: 1), 29, "read-only")
    }

    func testROMFromAFileResolvesAgainstTheVMXDirectory() throws {
        let dir = NSTemporaryDirectory() + "hv-devext-rom-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir + "/roms", withIntermediateDirectories: true)
        let image = (0..<5000).map { UInt8(truncatingIfNeeded: $0 ^ 0x5A) }
        _ = FileManager.default.createFile(atPath: dir + "/roms/probe.rom", contents: Data(image))
        let d = try makeDevice(config: ["features": "romfile", "romfile": "roms/probe.rom"], directory: dir)
        XCTAssertEqual(reg(d, 0x88), 0)
        try bridge.assignResources()
        let slot = try XCTUnwrap(d.function).slot
        let command = config(slot, 0x04) & 0xFFFF
        setConfig(slot, 0x04, command & ~0x2, size: 2)
        setConfig(slot, 0x30, 0xFFFF_FFFF)
        XCTAssertEqual(config(slot, 0x30), 0xFFFF_E001, "sizing: 5000 bytes make an 8 KiB ROM; the enable bit stays")
        setConfig(slot, 0x30, 0xE800_0001)
        XCTAssertNil(mmio.region(at: 0xE800_0000), "enabled, but memory decoding is off")
        setConfig(slot, 0x04, command | 0x2, size: 2)
        var read = [UInt8](repeating: 0, count: 5000)
        read.withUnsafeMutableBytes { mmio.read(0xE800_0000, data: $0) }
        XCTAssertEqual(read, image, "the file's bytes through the MMIO bus")
        setConfig(slot, 0x30, 0xE800_0000)
        XCTAssertNil(mmio.region(at: 0xE800_0000), "disabled again")
    }

    func testABadROMFileFailsCreateNamingTheFile() throws {
        let dir = NSTemporaryDirectory() + "hv-devext-badrom-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: dir + "/empty.rom", contents: Data())
        let cases = [("missing.rom", "expansion ROM file \(dir)/missing.rom: No such file or directory", "No such file or directory (-2)"),
                     ("empty.rom", "expansion ROM file \(dir)/empty.rom: empty", "Invalid argument (-22)"),
                     (".", "expansion ROM file \(dir): not a regular file", "Invalid argument (-22)")]
        for (name, message, code) in cases {
            XCTAssertThrowsError(try makeDevice(config: ["features": "romfile", "romfile": name], directory: dir)) { error in
                XCTAssertTrue("\(error)".contains("create failed: \(code): \(message)"), "\(error)")
            }
        }
    }

    // MARK: hv.display/1

    func testDisplayModeFramebufferAndDamage() throws {
        let d = try makeDevice()
        XCTAssertEqual(reg(d, 0xC0), 0)
        XCTAssertNil(display.mode)
        XCTAssertNil(display.snapshot())
        poke(d, 0x300, 64 | 32 << 16)
        XCTAssertEqual(reg(d, 0x3F8), 0)
        XCTAssertEqual(display.mode, try DisplayMode(width: 64, height: 32, pitch: 256, format: .xrgb8888))
        XCTAssertEqual(display.takeDamage(), [DisplayRect(x: 0, y: 0, width: 64, height: 32)], "a new mode is all damage")
        XCTAssertEqual(display.takeDamage(), [], "taken once")
        poke(d, 0x348, 0x00AB_CDEF)
        let frame = try XCTUnwrap(display.snapshot())
        XCTAssertEqual(frame.bytes.count, 256 * 32)
        func pixel(_ x: Int, _ y: Int) -> UInt32 {
            frame.bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: y * 256 + x * 4, as: UInt32.self) }
        }
        XCTAssertEqual(pixel(0, 0), 0x00AB_CDEF, "copied from the device's live buffer")
        // The probe fills pixel i of its buffer with 0xff000000 | i.
        for y in 0..<32 {
            for x in 0..<64 where x + y > 0 { XCTAssertEqual(pixel(x, y), 0xFF00_0000 | UInt32(y * 64 + x)) }
        }
        // Damage is clipped and coalesced.
        poke(d, 0x320, 60 | 30 << 16 | 10 << 32 | 10 << 48)
        poke(d, 0x320, 61 | 31 << 16 | 1 << 32 | 1 << 48)
        poke(d, 0x320, 64 | 0 << 16 | 5 << 32 | 5 << 48)
        poke(d, 0x320, 1 | 1 << 16 | 0 << 32 | 5 << 48)
        XCTAssertEqual(display.takeDamage(), [DisplayRect(x: 60, y: 30, width: 4, height: 2)],
                       "clipped; the contained, the off-screen and the empty rectangle record nothing")
        for i in 0..<70 { poke(d, 0x320, UInt64(i % 64) | UInt64(i / 64) << 16 | 1 << 32 | 1 << 48) }
        XCTAssertEqual(display.takeDamage(), [DisplayRect(x: 0, y: 0, width: 64, height: 2)],
                       "past 64 rectangles: their union, which holds the rest")
        // Refused modes leave the mode as it was.
        poke(d, 0x308, 64 | 32 << 16)
        XCTAssertEqual(reg(d, 0x3F8), Int64(HV_EINVAL), "pitch below width * 4")
        poke(d, 0x310, 64 | 32 << 16)
        XCTAssertEqual(reg(d, 0x3F8), Int64(HV_EINVAL), "24 bpp is not XRGB8888")
        poke(d, 0x300, 0 | 32 << 16)
        XCTAssertEqual(reg(d, 0x3F8), Int64(HV_EINVAL), "zero width")
        XCTAssertEqual(display.mode?.width, 64)
        poke(d, 0x318, 0)
        XCTAssertNil(display.mode, "set_mode(NULL) blanks")
        poke(d, 0x320, 0 | 0 << 16 | 1 << 32 | 1 << 48)
        XCTAssertEqual(reg(d, 0x3F8), 0, "update without a mode is fine")
        XCTAssertEqual(display.takeDamage(), [])
    }

    func testCursorPaletteAndASecondDisplayDevice() throws {
        let d = try makeDevice()
        XCTAssertFalse(display.cursor.visible, "starts hidden")
        poke(d, 0x328, 0)
        XCTAssertEqual(reg(d, 0x3F8), 0)
        poke(d, 0x330, UInt64(UInt32(bitPattern: -5)) | 40 << 32)
        poke(d, 0x338, 1)
        var cursor = display.cursor
        XCTAssertEqual([cursor.width, cursor.height, cursor.hotX, cursor.hotY, cursor.x, cursor.y], [2, 3, 1, 2, -5, 40])
        XCTAssertEqual(cursor.pixels, [0xFF00_0001, 0xFF00_0002, 0xFF00_0003, 0xFF00_0004, 0xFF00_0005, 0xFF00_0006])
        XCTAssertTrue(cursor.visible)
        poke(d, 0x328, 1)
        XCTAssertEqual(reg(d, 0x3F8), Int64(HV_EINVAL), "hotspot outside the image")
        poke(d, 0x330, 70000)
        XCTAssertEqual(reg(d, 0x3F8), Int64(HV_EINVAL), "position beyond 65535")
        cursor = display.cursor
        XCTAssertEqual([cursor.hotX, cursor.x], [1, -5], "refusals change nothing")
        XCTAssertEqual(cursor.imageSerial, 1)
        poke(d, 0x340, 254)
        XCTAssertEqual(reg(d, 0x3F8), 0)
        poke(d, 0x300, 8 | 8 << 16)
        XCTAssertEqual(display.snapshot()?.palette[254...], [0x11_2233, 0x44_5566], "top byte dropped")
        poke(d, 0x340, 255)
        XCTAssertEqual(reg(d, 0x3F8), Int64(HV_EINVAL), "entries 255 and 256")
        // Only one display per VM; its surface goes blank when the device goes away.
        XCTAssertThrowsError(try makeDevice(1, config: ["features": "display"])) { error in
            XCTAssertTrue("\(error)".contains("Device or resource busy (-16): another device of the VM is its display already"), "\(error)")
        }
        XCTAssertNotNil(display.mode)
        d.destroy()
        XCTAssertNil(display.mode)
        XCTAssertFalse(display.cursor.visible)
        let next = try makeDevice(1, config: ["features": "display"])
        XCTAssertEqual(reg(next, 0xC0), 0)
    }

    // MARK: hv.input/1

    func testInputEventsReachTheDeviceThatTakesThem() throws {
        XCTAssertFalse(try input.sendKey(scancode: 0x1E, pressed: true), "no device attached")
        let a = try makeDevice(0, config: ["features": "input"])
        let b = try makeDevice(1, config: ["features": "input"])
        XCTAssertEqual([reg(a, 0xC8), reg(a, 0xD0)], [0, Int64(HV_EEXIST)], "attach, a second attach")
        XCTAssertTrue(try input.sendKey(scancode: 0xE048, pressed: true))
        XCTAssertEqual([reg(a, 0x400), reg(a, 0x408), reg(a, 0x438)], [0xE048, 1, 1])
        XCTAssertEqual(reg(b, 0x438), 0, "the first client took it")
        XCTAssertTrue(input.sendPointer(try PointerEvent(kind: .absolute, x: 0xFFFF, y: 0x8000, wheel: -3,
                                                         buttons: [.left, .extra])))
        let offsets: [UInt64] = [0x410, 0x418, 0x420, 0x428, 0x430, 0x440, 0x450]
        XCTAssertEqual(offsets.map { reg(a, $0) }, [1, 0xFFFF, 0x8000, -3, 0x11, 1, 24],
                       "kind, x, y, wheel, buttons, pointer events, struct_size")
        // A device that refuses (its guest has not enabled it) passes the event on.
        poke(a, 0x448, 0)
        XCTAssertTrue(input.sendPointer(try PointerEvent(kind: .relative, x: -7, y: 12)))
        XCTAssertEqual([reg(b, 0x410), reg(b, 0x418), reg(b, 0x420), reg(b, 0x440)], [2, -7, 12, 1])
        XCTAssertEqual(reg(a, 0x440), 1)
        poke(b, 0x448, 0)
        XCTAssertFalse(try input.sendKey(scancode: 0x1E, pressed: false), "nobody took it")
        // Destroyed devices get nothing.
        poke(a, 0x448, 1)
        a.destroy()
        poke(b, 0x448, 1)
        XCTAssertTrue(try input.sendKey(scancode: Scancode.pause, pressed: true))
        XCTAssertEqual([reg(b, 0x400), reg(b, 0x438)], [0xE11D, 1])
    }

    func testInvalidInputIsRefusedBeforeAnyDevice() throws {
        let d = try makeDevice(0, config: ["features": "input"])
        for code: UInt32 in [0, 0x80, 0xE000, 0xE080, 0x1E1E, 0xE11E] {
            XCTAssertThrowsError(try input.sendKey(scancode: code, pressed: true), "0x\(String(code, radix: 16))")
        }
        XCTAssertThrowsError(try input.sendKey(scancode: Scancode.pause, pressed: false))
        XCTAssertThrowsError(try PointerEvent(kind: .absolute, x: 0x10000, y: 0))
        XCTAssertThrowsError(try PointerEvent(kind: .absolute, x: -1, y: 0))
        XCTAssertThrowsError(try PointerEvent(kind: .relative, x: 0, y: 40000))
        XCTAssertThrowsError(try PointerEvent(kind: .relative, x: 0, y: 0, wheel: 128))
        XCTAssertThrowsError(try PointerEvent(kind: .relative, x: 0, y: 0, buttons: PointerButtons(rawValue: 0x20)))
        XCTAssertEqual([reg(d, 0x438), reg(d, 0x440)], [0, 0])
    }
}
