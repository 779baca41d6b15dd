import XCTest
@testable import HVDevices
@testable import HVHostIO
@testable import HVMemory
@testable import HVSupport

/// MSI-X on the PCI host bridge: the capability, the table and PBA decoded inside a BAR,
/// notify / mask / pending, and MSI, MSI-X and INTx excluding each other.
final class PlatformMSIXTests: XCTestCase {
    typealias Sink = PlatformPCITests.Sink
    typealias Registers = PlatformPCITests.Registers

    var mmio = AddressBus()
    var sink = Sink()
    var bridge: PCIHostBridge!
    var f: PCIFunction!
    let regs = Registers()
    let slot = 4

    override func setUpWithError() throws {
        bridge = try PCIHostBridge(portBus: AddressBus(), mmioBus: mmio, interrupts: sink)
        f = PCIFunction(name: "x", identity: PCIIdentity(vendorID: 1, deviceID: 9, classCode: 0, interruptPin: 1))
        try f.addBAR(PCIBARDescription(index: 0, kind: .memory32, size: 0x4000), device: regs.bar(0))
        try f.addMSIX(vectors: 70, bar: 0, tableOffset: 0x2000, pbaOffset: 0x3000)
        try bridge.attach(f, slot: slot)
        try bridge.assignResources()
    }

    var base: UInt64 { bridge.mappedAddress(of: f, bar: 0) }

    func config(_ reg: Int, size: Int = 4) -> UInt32 {
        bridge.ioWrite(offset: 0, size: 4, value: 0x8000_0000 | UInt32(slot) << 11 | UInt32(reg & 0xFC))
        return bridge.ioRead(offset: UInt16(4 + (reg & 3)), size: size)
    }

    func setConfig(_ reg: Int, _ value: UInt32, size: Int = 4) {
        bridge.ioWrite(offset: 0, size: 4, value: 0x8000_0000 | UInt32(slot) << 11 | UInt32(reg & 0xFC))
        bridge.ioWrite(offset: UInt16(4 + (reg & 3)), size: size, value: value)
    }

    /// Programs table entry `vector` (address, data, unmasked) and enables MSI-X and bus mastering.
    func enable(vector: Int, data: UInt32) {
        let e = base + 0x2000 + UInt64(16 * vector)
        mmio.write(e, size: 8, value: 0xFEE0_0000)
        mmio.write(e + 8, size: 4, value: UInt64(data))
        mmio.write(e + 12, size: 4, value: 0)
        setConfig(0x04, 0x6, size: 2)
        setConfig(0x62, 0x8000, size: 2)
    }

    func pending(_ vector: Int) -> Bool {
        mmio.read(base + 0x3000 + UInt64(8 * (vector / 64)), size: 8) >> UInt64(vector % 64) & 1 == 1
    }

    func testHostHeldStateIsNamedForSuspend() throws {
        XCTAssertNil(f.unsavedHostState, "the MSI-X table and PBA travel in the 'pci' section")
        let plain = PCIFunction(name: "y", identity: PCIIdentity(vendorID: 1, deviceID: 8, classCode: 0))
        XCTAssertNil(plain.unsavedHostState)
        let ram = try PCIRAMBAR(memory: SharedMemoryRegion(size: 0x4000, name: "msix-test-ram"))
        try plain.addRAMBAR(PCIBARDescription(index: 2, kind: .memory32, size: 0x4000), ram: ram)
        XCTAssertEqual(plain.unsavedHostState, "the RAM-backed BAR2")
    }

    /// The "pci" section carries the MSI-X table and PBA: a fresh bridge restored from it
    /// has the guest's message and the pending vector, which goes out on unmask.
    func testSavedStateCarriesTheMSIXTableAndPBA() throws {
        enable(vector: 67, data: 0x4567)
        mmio.write(base + 0x2000 + 16 * 67 + 12, size: 4, value: 1)   // mask vector 67
        XCTAssertEqual(bridge.sendMSIX(f, vector: 67), .masked)
        XCTAssertTrue(pending(67))
        let saved = bridge.saveState()

        let mmio2 = AddressBus(), sink2 = Sink()
        let bridge2 = try PCIHostBridge(portBus: AddressBus(), mmioBus: mmio2, interrupts: sink2)
        let f2 = PCIFunction(name: "x", identity: PCIIdentity(vendorID: 1, deviceID: 9, classCode: 0, interruptPin: 1))
        try f2.addBAR(PCIBARDescription(index: 0, kind: .memory32, size: 0x4000), device: Registers().bar(0))
        try f2.addMSIX(vectors: 70, bar: 0, tableOffset: 0x2000, pbaOffset: 0x3000)
        try bridge2.attach(f2, slot: slot)
        try bridge2.loadState(saved)
        let base2 = bridge2.mappedAddress(of: f2, bar: 0)
        XCTAssertEqual(base2, base)
        XCTAssertEqual(mmio2.read(base2 + 0x2000 + 16 * 67 + 8, size: 4), 0x4567, "message data")
        XCTAssertEqual(mmio2.read(base2 + 0x3000 + 8, size: 8) >> 3 & 1, 1, "vector 67 still pending")
        XCTAssertTrue(sink2.messages.isEmpty)
        mmio2.write(base2 + 0x2000 + 16 * 67 + 12, size: 4, value: 0)
        XCTAssertEqual(sink2.messages.map(\.1), [0x4567], "the pending vector goes out on unmask")

        // A version-1 section (no MSI-X) still loads: every vector masked, none pending.
        let bridge3 = try PCIHostBridge(portBus: AddressBus(), mmioBus: AddressBus(), interrupts: Sink())
        let f3 = PCIFunction(name: "x", identity: PCIIdentity(vendorID: 1, deviceID: 9, classCode: 0, interruptPin: 1))
        try f3.addBAR(PCIBARDescription(index: 0, kind: .memory32, size: 0x4000), device: Registers().bar(0))
        try f3.addMSIX(vectors: 70, bar: 0, tableOffset: 0x2000, pbaOffset: 0x3000)
        try bridge3.attach(f3, slot: slot)
        var v1 = StateEncoder()
        var d = StateDecoder(saved, context: "test")
        v1.u32(try d.u32())
        let functions = try d.u32()
        v1.u32(functions)
        for _ in 0..<functions {
            v1.u8(try d.u8()); v1.u16(try d.u16()); v1.u16(try d.u16())
            v1.data(try d.data(count: 256)); v1.bool(try d.bool()); v1.u32(try d.u32())
            if try d.bool() {
                _ = try d.data()
                for _ in 0..<(try d.u32()) { _ = try d.u64() }
            }
        }
        try bridge3.loadState(v1.bytes, version: 1)
        XCTAssertTrue(f3.msix!.vectorMasked(67))
        XCTAssertFalse(f3.msix!.isPending(67))
    }

    func testCapabilityLayout() {
        XCTAssertEqual(config(0x06, size: 2) & 0x10, 0x10, "capability list")
        XCTAssertEqual(config(0x34, size: 1), 0x60)
        XCTAssertEqual(config(0x60) & 0xFFFF, 0x0011, "MSI-X, end of list")
        XCTAssertEqual(config(0x62, size: 2), 69, "table size N - 1, disabled, not masked")
        XCTAssertEqual(config(0x64), 0x2000, "table at 0x2000 in BAR0")
        XCTAssertEqual(config(0x68), 0x3000, "PBA at 0x3000 in BAR0")
        setConfig(0x62, 0xFFFF, size: 2)
        XCTAssertEqual(config(0x62, size: 2), 0xC000 | 69, "only enable and function mask are writable")
    }

    func testMSIAndMSIXChainTheirCapabilities() throws {
        let g = PCIFunction(name: "g", identity: PCIIdentity(vendorID: 1, deviceID: 10, classCode: 0))
        try g.addBAR(PCIBARDescription(index: 2, kind: .memory64, size: 0x1000), device: regs.bar(2))
        try g.addMSIX(vectors: 1, bar: 2, tableOffset: 0, pbaOffset: 0x800)
        try g.addMSI(vectors: 1)
        try bridge.attach(g, slot: 5)
        bridge.ioWrite(offset: 0, size: 4, value: 0x8000_0000 | 5 << 11 | 0x34)
        XCTAssertEqual(bridge.ioRead(offset: 4, size: 1), 0x40)
        bridge.ioWrite(offset: 0, size: 4, value: 0x8000_0000 | 5 << 11 | 0x40)
        XCTAssertEqual(bridge.ioRead(offset: 4, size: 2), 0x6005, "MSI, next MSI-X at 0x60")
        bridge.ioWrite(offset: 0, size: 4, value: 0x8000_0000 | 5 << 11 | 0x64)
        XCTAssertEqual(bridge.ioRead(offset: 4, size: 4), 0x0000_0002, "table at 0 in BAR2")
    }

    func testBadLayoutsAreRefused() throws {
        let g = PCIFunction(name: "g", identity: PCIIdentity(vendorID: 1, deviceID: 10, classCode: 0))
        try g.addBAR(PCIBARDescription(index: 0, kind: .memory32, size: 0x1000), device: regs.bar(0))
        try g.addBAR(PCIBARDescription(index: 1, kind: .io, size: 0x100), device: regs.bar(1))
        XCTAssertThrowsError(try g.addMSIX(vectors: 0, bar: 0, tableOffset: 0, pbaOffset: 0x800))
        XCTAssertThrowsError(try g.addMSIX(vectors: 2049, bar: 0, tableOffset: 0, pbaOffset: 0x800))
        XCTAssertThrowsError(try g.addMSIX(vectors: 8, bar: 1, tableOffset: 0, pbaOffset: 0x80), "I/O BAR")
        XCTAssertThrowsError(try g.addMSIX(vectors: 8, bar: 3, tableOffset: 0, pbaOffset: 0x80), "no such BAR")
        XCTAssertThrowsError(try g.addMSIX(vectors: 8, bar: 0, tableOffset: 4, pbaOffset: 0x800), "misaligned table")
        XCTAssertThrowsError(try g.addMSIX(vectors: 8, bar: 0, tableOffset: 0, pbaOffset: 0x78), "PBA inside the table")
        XCTAssertThrowsError(try g.addMSIX(vectors: 256, bar: 0, tableOffset: 0, pbaOffset: 0x800), "table past the BAR")
        XCTAssertNoThrow(try g.addMSIX(vectors: 8, bar: 0, tableOffset: 0, pbaOffset: 0x80))
        XCTAssertThrowsError(try g.addMSIX(vectors: 8, bar: 0, tableOffset: 0x100, pbaOffset: 0x180), "a second one")
    }

    func testTableIsDecodedByTheHostAndTheRestOfTheBARByTheDevice() {
        XCTAssertEqual(mmio.read(base + 0x2000 + 12, size: 4), 1, "vectors start masked")
        mmio.write(base + 0x2000, size: 4, value: 0xFFFF_FFFF)
        mmio.write(base + 0x2000 + 12, size: 4, value: 0xFFFF_FFFF)
        XCTAssertEqual(mmio.read(base + 0x2000, size: 4), 0xFFFF_FFFC, "address bits 1:0 are reserved")
        XCTAssertEqual(mmio.read(base + 0x2000 + 12, size: 4), 1, "vector control has only the mask bit")
        mmio.write(base + 0x2000 + 16 * 69 + 8, size: 8, value: 0x0000_0001_0000_0041)
        XCTAssertEqual(mmio.read(base + 0x2000 + 16 * 69 + 8, size: 8), 0x0000_0001_0000_0041, "a qword access")
        mmio.write(base + 0x3000, size: 8, value: ~0)
        XCTAssertEqual(mmio.read(base + 0x3000, size: 8), 0, "the PBA is read-only")
        XCTAssertEqual(mmio.read(base + 0x3010, size: 4), 0xA0 + 0x3010, "past the PBA: the device")
        XCTAssertEqual(mmio.read(base + 0x1FFC, size: 4), 0xA0 + 0x1FFC, "below the table: the device")
        mmio.write(base + 0x1000, size: 4, value: 7)
        mmio.write(base + 0x2000, size: 4, value: 7)
        XCTAssertEqual(regs.writes.count, 1, "only the write outside the table reached the device")
    }

    func testNotifyMaskAndPending() {
        XCTAssertEqual(bridge.sendMSIX(f, vector: 70), .outOfRange)
        XCTAssertEqual(bridge.sendMSIX(f, vector: 1), .notEnabled)
        enable(vector: 1, data: 0x41)
        XCTAssertEqual(bridge.sendMSIX(f, vector: 1), .sent)
        XCTAssertEqual(sink.messages.last?.0, 0xFEE0_0000)
        XCTAssertEqual(sink.messages.last?.1, 0x41)
        XCTAssertEqual(bridge.sendMSIX(f, vector: 65), .masked, "never unmasked")
        XCTAssertTrue(pending(65))
        // Vector mask: pending, then sent on unmask.
        mmio.write(base + 0x2000 + 16 + 12, size: 4, value: 1)
        XCTAssertEqual(bridge.sendMSIX(f, vector: 1), .masked)
        XCTAssertTrue(pending(1))
        let sent = sink.messages.count
        mmio.write(base + 0x2000 + 16 + 12, size: 4, value: 0)
        XCTAssertEqual(sink.messages.count, sent + 1)
        XCTAssertFalse(pending(1))
        // Function mask: the same through the capability.
        setConfig(0x62, 0xC000, size: 2)
        XCTAssertEqual(bridge.sendMSIX(f, vector: 1), .masked)
        XCTAssertEqual(sink.messages.count, sent + 1)
        setConfig(0x62, 0x8000, size: 2)
        XCTAssertEqual(sink.messages.count, sent + 2)
        XCTAssertFalse(pending(1))
        XCTAssertTrue(pending(65), "still masked by its own vector control")
    }

    func testMessagesOutsideTheInterruptWindowAndWithoutBusMasterGoNowhereHarmful() {
        enable(vector: 2, data: 0x42)
        mmio.write(base + 0x2000 + 32, size: 8, value: 0x1234_5000)
        XCTAssertEqual(bridge.sendMSIX(f, vector: 2), .sent)
        XCTAssertEqual(sink.messages.last?.0, 0x1234_5000, "the sink gets the guest's address; the APIC bus drops it")
        XCTAssertNil(APICMessage(msiAddress: 0x1234_5000, data: 0x42))
        setConfig(0x04, 0x2, size: 2)
        let sent = sink.messages.count
        XCTAssertEqual(bridge.sendMSIX(f, vector: 2), .sent)
        XCTAssertEqual(sink.messages.count, sent, "no bus mastering, no message")
    }

    func testMSIAndMSIXExcludeEachOtherAndINTx() throws {
        let g = PCIFunction(name: "g", identity: PCIIdentity(vendorID: 1, deviceID: 11, classCode: 0, interruptPin: 1))
        try g.addBAR(PCIBARDescription(index: 0, kind: .memory32, size: 0x1000), device: regs.bar(0))
        try g.addMSI(vectors: 1)
        try g.addMSIX(vectors: 2, bar: 0, tableOffset: 0x800, pbaOffset: 0xC00)
        try bridge.attach(g, slot: 6)
        try bridge.assignResources()
        func set(_ reg: Int, _ v: UInt32, size: Int) {
            bridge.ioWrite(offset: 0, size: 4, value: 0x8000_0000 | 6 << 11 | UInt32(reg & 0xFC))
            bridge.ioWrite(offset: UInt16(4 + (reg & 3)), size: size, value: v)
        }
        let gsi = Int(PCIHostBridge.pirqToGSI[(0 + 6 - 1) & 3])
        set(0x04, 0x6, size: 2)
        bridge.setINTx(g, asserted: true)
        XCTAssertEqual(sink.levels[gsi], true)
        set(0x44, 0xFEE0_0000, size: 4)
        set(0x42, 0x0001, size: 2)                              // MSI on
        XCTAssertEqual(sink.levels[gsi], false, "no INTx while MSI is enabled")
        XCTAssertEqual(bridge.sendMSI(g, vector: 0), .sent)
        set(0x62, 0x8000, size: 2)                              // MSI-X on as well
        XCTAssertEqual(bridge.sendMSI(g, vector: 0), .notEnabled, "MSI-X wins")
        XCTAssertEqual(bridge.sendMSIX(g, vector: 0), .masked)
        set(0x42, 0x0000, size: 2)
        XCTAssertEqual(sink.levels[gsi], false, "no INTx while MSI-X is enabled")
        set(0x62, 0x0000, size: 2)
        XCTAssertEqual(sink.levels[gsi], true, "INTx again with both off")
    }
}
