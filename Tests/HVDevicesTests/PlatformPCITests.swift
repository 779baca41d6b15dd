import Synchronization
import XCTest
@testable import HVDevices
@testable import HVHostIO
@testable import HVSupport

/// The i440BX/PIIX4 PCI host bridge: configuration mechanism #1, BARs, INTx, MSI.
final class PlatformPCITests: XCTestCase {
    final class Sink: PCIInterruptSink {
        var levels: [Int: Bool] = [:]
        var messages: [(UInt64, UInt32)] = []
        func setGSI(_ gsi: Int, level: Bool) { levels[gsi] = level }
        func deliverMSI(address: UInt64, data: UInt32) { messages.append((address, data)) }
    }

    /// A device's registers behind several BARs; records the writes.
    final class Registers {
        var writes: [(Int, UInt64, UInt64)] = []
        final class BAR: BusDevice {
            unowned let owner: Registers
            let index: Int
            init(owner: Registers, index: Int) { self.owner = owner; self.index = index }
            func read(offset: UInt64, data: UnsafeMutableRawBufferPointer) { data.storeLittleEndian(0xA0 + offset) }
            func write(offset: UInt64, data: UnsafeRawBufferPointer) { owner.writes.append((index, offset, data.littleEndianValue)) }
        }
        func bar(_ index: Int) -> BAR { BAR(owner: self, index: index) }
    }

    var ports = AddressBus()
    var mmio = AddressBus()
    var sink = Sink()

    func makeBridge() throws -> PCIHostBridge {
        try PCIHostBridge(portBus: ports, mmioBus: mmio, interrupts: sink)
    }

    func config(_ bridge: PCIHostBridge, slot: Int, _ reg: Int, size: Int = 4) -> UInt32 {
        bridge.ioWrite(offset: 0, size: 4, value: 0x8000_0000 | UInt32(slot) << 11 | UInt32(reg & 0xFC))
        return bridge.ioRead(offset: UInt16(4 + (reg & 3)), size: size)
    }

    func setConfig(_ bridge: PCIHostBridge, slot: Int, _ reg: Int, _ value: UInt32, size: Int = 4) {
        bridge.ioWrite(offset: 0, size: 4, value: 0x8000_0000 | UInt32(slot) << 11 | UInt32(reg & 0xFC))
        bridge.ioWrite(offset: UInt16(4 + (reg & 3)), size: size, value: value)
    }

    func testLinuxProbeAndHostBridgeIdentity() throws {
        let bridge = try makeBridge()
        bridge.ioWrite(offset: 3, size: 1, value: 0x01)                 // outb(0x01, 0xCFB)
        bridge.ioWrite(offset: 0, size: 4, value: 0x8000_0000)
        XCTAssertEqual(bridge.ioRead(offset: 0, size: 4), 0x8000_0000)
        XCTAssertEqual(config(bridge, slot: 0, 0), 0x7190_8086)
        XCTAssertEqual(config(bridge, slot: 0, 0x08) >> 8, 0x06_00_00)
        XCTAssertEqual(config(bridge, slot: 1, 0), 0x7110_8086)
        XCTAssertEqual(config(bridge, slot: 1, 0x0E, size: 1), 0x80, "PIIX4 is multi-function")
        XCTAssertEqual(config(bridge, slot: 5, 0), 0xFFFF_FFFF, "empty slot")
        XCTAssertEqual(config(bridge, slot: 0, 0x02, size: 2), 0x7190, "word access at an offset")
    }

    func testBARSizingAssignmentAndDecode() throws {
        let bridge = try makeBridge()
        let regs = Registers()
        let f = PCIFunction(name: "dev", identity: PCIIdentity(vendorID: 0x1234, deviceID: 1, classCode: 0xFF0000, interruptPin: 1))
        try f.addBAR(PCIBARDescription(index: 0, kind: .memory32, size: 0x1000), device: regs.bar(0))
        try f.addBAR(PCIBARDescription(index: 1, kind: .io, size: 0x20), device: regs.bar(1))
        try bridge.attach(f)
        try bridge.assignResources()
        XCTAssertEqual(f.slot, 2)
        XCTAssertEqual(config(bridge, slot: 2, 0x10), 0xE000_0000)
        XCTAssertEqual(config(bridge, slot: 2, 0x14), 0xC001)
        XCTAssertEqual(config(bridge, slot: 2, 0x3C, size: 1), 10, "slot 2 INTA -> PIRQB -> GSI 10")
        // The BARs decode on the buses.
        let (h, off) = try XCTUnwrap(mmio.lookup(0xE000_0010))
        XCTAssertEqual(h.mmioRead(offset: off, size: 4), 0xB0)
        XCTAssertNotNil(ports.lookup(0xC01F))
        // Sizing: write all ones, read the mask, and the old mapping goes away.
        setConfig(bridge, slot: 2, 0x10, 0xFFFF_FFFF)
        XCTAssertEqual(config(bridge, slot: 2, 0x10), 0xFFFF_F000)
        XCTAssertNil(mmio.lookup(0xE000_0010))
        setConfig(bridge, slot: 2, 0x10, 0xE010_0000)
        XCTAssertNotNil(mmio.lookup(0xE010_0FFF))
        // Memory decode off unmaps; back on maps again.
        setConfig(bridge, slot: 2, 0x04, 0x1, size: 2)
        XCTAssertNil(mmio.lookup(0xE010_0000))
        XCTAssertNotNil(ports.lookup(0xC000))
        setConfig(bridge, slot: 2, 0x04, 0x3, size: 2)
        XCTAssertNotNil(mmio.lookup(0xE010_0000))
    }

    func testExpansionROMSizingEnableAndDecode() throws {
        let bridge = try makeBridge()
        let regs = Registers()
        let f = PCIFunction(name: "rom", identity: PCIIdentity(vendorID: 0x1234, deviceID: 2, classCode: 0x030000))
        try f.addBAR(PCIBARDescription(index: 0, kind: .memory32, size: 0x1000), device: regs.bar(0))
        let rom = try XCTUnwrap(PCIExpansionROM(contents: [0x55, 0xAA, 0x10] + [UInt8](repeating: 0xEE, count: 0x9000)))
        XCTAssertEqual(rom.size, 0x10000, "0x9003 bytes round up to 64 KiB")
        try f.addROM(rom)
        XCTAssertThrowsError(try f.addROM(rom), "one ROM per function")
        try bridge.attach(f, slot: 4)
        try bridge.assignResources()
        // Firmware placed it after the BAR, aligned to its size, and left it disabled.
        XCTAssertEqual(config(bridge, slot: 4, 0x30), 0xE001_0000)
        XCTAssertNil(mmio.lookup(0xE001_0000))
        // Sizing: all ones read back as the size mask (and the enable bit).
        setConfig(bridge, slot: 4, 0x30, 0xFFFF_FFFE)
        XCTAssertEqual(config(bridge, slot: 4, 0x30), 0xFFFF_0000)
        setConfig(bridge, slot: 4, 0x30, 0xFFFF_FFFF)
        XCTAssertEqual(config(bridge, slot: 4, 0x30), 0xFFFF_0001)
        // Enabled at an address: decodes read-only while memory decoding is on.
        setConfig(bridge, slot: 4, 0x30, 0xE020_0001)
        let (h, off) = try XCTUnwrap(mmio.lookup(0xE020_0000))
        XCTAssertEqual(h.mmioRead(offset: off, size: 4), 0xEE10_AA55)
        XCTAssertEqual(h.mmioRead(offset: 0x9002, size: 4), 0x0000_00EE, "padding reads as zero")
        h.mmioWrite(offset: 0, size: 4, value: 0)
        XCTAssertEqual(h.mmioRead(offset: 0, size: 2), 0xAA55, "writes are ignored")
        XCTAssertNotNil(mmio.lookup(0xE020_FFFF))
        XCTAssertNil(mmio.lookup(0xE021_0000))
        setConfig(bridge, slot: 4, 0x04, 0x0, size: 2)
        XCTAssertNil(mmio.lookup(0xE020_0000), "memory decoding off")
        setConfig(bridge, slot: 4, 0x04, 0x2, size: 2)
        XCTAssertNotNil(mmio.lookup(0xE020_0000))
        setConfig(bridge, slot: 4, 0x30, 0xE020_0000)
        XCTAssertNil(mmio.lookup(0xE020_0000), "enable bit cleared")
        setConfig(bridge, slot: 4, 0x31, 0x01, size: 1)
        XCTAssertEqual(config(bridge, slot: 4, 0x30), 0xE020_0000, "address bits below the size are read-only zero")
        // A function without a ROM reads 0 at 0x30 and ignores writes.
        setConfig(bridge, slot: 0, 0x30, 0xFFFF_FFFF)
        XCTAssertEqual(config(bridge, slot: 0, 0x30), 0)
        XCTAssertNil(PCIExpansionROM(contents: []))
        XCTAssertNil(PCIExpansionROM(contents: [UInt8](repeating: 0, count: (16 << 20) + 1)))
        XCTAssertEqual(PCIExpansionROM(contents: [1])?.size, 2048, "at least 2 KiB")
    }

    func testBadBARsAreRefused() {
        let f = PCIFunction(name: "dev", identity: PCIIdentity(vendorID: 0x1234, deviceID: 1, classCode: 0))
        let regs = Registers()
        XCTAssertThrowsError(try f.addBAR(PCIBARDescription(index: 0, kind: .memory32, size: 0x1001), device: regs.bar(0)))
        XCTAssertThrowsError(try f.addBAR(PCIBARDescription(index: 6, kind: .io, size: 16), device: regs.bar(6)))
        XCTAssertThrowsError(try f.addBAR(PCIBARDescription(index: 0, kind: .io, size: 512), device: regs.bar(0)))
        XCTAssertNoThrow(try f.addBAR(PCIBARDescription(index: 4, kind: .memory64, size: 0x4000), device: regs.bar(4)))
        XCTAssertThrowsError(try f.addBAR(PCIBARDescription(index: 5, kind: .io, size: 16), device: regs.bar(5)), "upper half of BAR4")
        XCTAssertThrowsError(try f.addBAR(PCIBARDescription(index: 5, kind: .memory64, size: 0x4000), device: regs.bar(5)), "would need BAR6")
    }

    func testSharedINTxAndInterruptDisable() throws {
        let bridge = try makeBridge()
        let a = PCIFunction(name: "a", identity: PCIIdentity(vendorID: 1, deviceID: 1, classCode: 0, interruptPin: 1))
        let b = PCIFunction(name: "b", identity: PCIIdentity(vendorID: 1, deviceID: 2, classCode: 0, interruptPin: 1))
        try bridge.attach(a, slot: 2)   // PIRQB -> 10
        try bridge.attach(b, slot: 6)   // (0 + 6 - 1) & 3 = PIRQB -> 10: shared
        try bridge.assignResources()
        bridge.setINTx(a, asserted: true)
        bridge.setINTx(b, asserted: true)
        XCTAssertEqual(sink.levels[10], true)
        bridge.setINTx(a, asserted: false)
        XCTAssertEqual(sink.levels[10], true, "b still asserts the shared line")
        XCTAssertEqual(config(bridge, slot: 6, 0x06, size: 2) & 0x08, 0x08, "interrupt status")
        setConfig(bridge, slot: 6, 0x04, 0x400, size: 2)
        XCTAssertEqual(sink.levels[10], false, "Interrupt Disable masks b")
        setConfig(bridge, slot: 6, 0x04, 0x000, size: 2)
        XCTAssertEqual(sink.levels[10], true)
    }

    func testMSIMaskPendingAndMultipleVectors() throws {
        let bridge = try makeBridge()
        let f = PCIFunction(name: "m", identity: PCIIdentity(vendorID: 1, deviceID: 3, classCode: 0))
        try f.addMSI(vectors: 4)
        try bridge.attach(f, slot: 3)
        XCTAssertEqual(bridge.sendMSI(f, vector: 0), .notEnabled)
        XCTAssertEqual(config(bridge, slot: 3, 0x34, size: 1), 0x40)
        XCTAssertEqual(config(bridge, slot: 3, 0x40) & 0xFF, 0x05)
        setConfig(bridge, slot: 3, 0x44, 0xFEE0_0000)
        setConfig(bridge, slot: 3, 0x4C, 0x40, size: 2)
        setConfig(bridge, slot: 3, 0x42, 0x0011, size: 2)           // enable, MME = 1: 2 vectors
        setConfig(bridge, slot: 3, 0x04, 0x4, size: 2)               // bus master
        XCTAssertEqual(bridge.sendMSI(f, vector: 1), .sent)
        XCTAssertEqual(sink.messages.last?.1, 0x41)
        XCTAssertEqual(bridge.sendMSI(f, vector: 2), .outOfRange)
        setConfig(bridge, slot: 3, 0x50, 0x1)                        // mask vector 0
        XCTAssertEqual(bridge.sendMSI(f, vector: 0), .masked)
        XCTAssertEqual(config(bridge, slot: 3, 0x54) & 1, 1, "pending bit")
        let sent = sink.messages.count
        setConfig(bridge, slot: 3, 0x50, 0x0)                        // unmask: pending message goes out
        XCTAssertEqual(sink.messages.count, sent + 1)
        XCTAssertEqual(sink.messages.last?.1, 0x40)
        XCTAssertEqual(config(bridge, slot: 3, 0x54) & 1, 0)
    }
}

extension PlatformPCITests {
    /// PIIX4's reset control register at 0xCF9 (a byte inside the mechanism #1 range):
    /// bit 2 rising starts a reset; dword accesses at 0xCF8 stay the address register.
    func testResetControlRegister() throws {
        let bridge = try makeBridge()
        let resets = Mutex(0)
        bridge.resetRequest = { resets.withLock { $0 += 1 } }
        bridge.ioWrite(offset: 1, size: 1, value: 0x02)
        XCTAssertEqual(bridge.ioRead(offset: 1, size: 1), 0x02)
        XCTAssertEqual(resets.withLock { $0 }, 0)
        bridge.ioWrite(offset: 1, size: 1, value: 0x06)
        XCTAssertEqual(resets.withLock { $0 }, 1)
        bridge.ioWrite(offset: 0, size: 4, value: 0x8000_0000)
        XCTAssertEqual(bridge.ioRead(offset: 0, size: 4), 0x8000_0000)
        XCTAssertEqual(config(bridge, slot: 0, 0), 0x7190_8086)
        XCTAssertEqual(resets.withLock { $0 }, 1)
    }
}
