import XCTest
@testable import HVDevices
@testable import HVHostIO
@testable import HVSupport

/// Saved chipset and PCI state: a fresh model loaded with it is the model that saved it,
/// and a state no guest could have produced is refused.
final class PlatformStateTests: XCTestCase {
    /// A machine whose timers never fire, so that nothing changes between two looks.
    private func still(vcpus: Int = 2) throws -> PlatformTestMachine {
        let m = try PlatformTestMachine(vcpus: vcpus)
        m.timers.stop()
        return m
    }

    /// A machine with every model off its reset state.
    private func programmed() throws -> PlatformTestMachine {
        let m = try still()
        m.initPIC(unmasked: 0x0013)
        m.chipset.setGSI(4, level: true)                 // pending on the PIC
        m.out(0x43, 0x34); m.out(0x40, 0x34); m.out(0x40, 0x12)   // PIT ch0 mode 2, count 0x1234
        m.out(0x70, 0x40); m.out(0x71, 0x5A)             // CMOS RAM byte
        m.out(0x3FB, 0x03); m.out(0x3F9, 0x01); m.out(0x3FF, 0x77)   // UART: 8N1, IER, scratch
        m.out(0x3FC, 0x10); m.out(0x3F8, 0x41)           // loopback: a byte in the receiver
        m.out(0x64, 0x20)                                 // i8042: command byte to the output buffer
        m.ioapic(0x18, 0x44)                              // pin 4 → vector 0x44
        m.lapic(0, 0x80, 0x20)                            // TPR
        m.lapic(0, 0x3E0, 0x3)
        m.lapic(0, 0x320, 0x20030)                        // periodic timer, vector 0x30
        m.lapic(0, 0x380, 1_000_000)
        m.lapic(1, 0xF0, 0x1FF)
        return m
    }

    func testChipsetStateLoadsIntoAFreshChipset() throws {
        let m = try programmed()
        let saved = m.chipset.saveState()
        let fresh = try still()
        try fresh.chipset.loadState(saved)
        XCTAssertEqual(fresh.chipset.saveState(), saved)
        // What the guest sees.
        XCTAssertEqual(fresh.inb(0x21), m.inb(0x21))
        XCTAssertEqual(fresh.chipset.nextInterrupt(vcpu: 0), 0x21, "IRQ 1 (8042 output) before IRQ 4")
        XCTAssertEqual(m.chipset.nextInterrupt(vcpu: 0), 0x21)
        XCTAssertEqual(fresh.inb(0x3FF), 0x77)
        XCTAssertEqual(fresh.inb(0x3F8), 0x41)
        XCTAssertEqual(fresh.inb(0x64) & 0x01, 1, "8042 output buffer full")
        XCTAssertEqual(fresh.inb(0x60), m.inb(0x60))
        XCTAssertEqual(fresh.ioapic(0x18), 0x44)
        XCTAssertEqual(fresh.lapic(0, 0x80), 0x20)
        XCTAssertEqual(fresh.lapic(0, 0x320), 0x20030)
        XCTAssertEqual(fresh.lapic(1, 0xF0), 0x1FF)
        fresh.out(0x70, 0x40)
        XCTAssertEqual(fresh.inb(0x71), 0x5A)
    }

    func testImpossibleOrForeignChipsetStateIsRefused() throws {
        let saved = try programmed().chipset.saveState()
        let fresh = try still()
        XCTAssertThrowsError(try fresh.chipset.loadState(Array(saved.prefix(100)))) {
            XCTAssertTrue("\($0)".contains("section 'chipset': truncated"), "\($0)")
        }
        XCTAssertEqual(fresh.inb(0x21), 0, "a failed load leaves the reset state")
        var zeroCount = saved
        for i in 34..<42 { zeroCount[i] = 0 }             // PIT channel 0's count (after two 17-byte PICs)
        XCTAssertThrowsError(try fresh.chipset.loadState(zeroCount)) {
            XCTAssertTrue("\($0)".contains("8254 channel 0 holds values a guest cannot program"), "\($0)")
        }
        XCTAssertThrowsError(try still(vcpus: 1).chipset.loadState(saved)) {
            XCTAssertTrue("\($0)".contains("2 local APICs saved, this VM has 1 vCPUs"), "\($0)")
        }
        XCTAssertThrowsError(try fresh.chipset.loadState(saved + [0])) {
            XCTAssertTrue("\($0)".contains("1 unexpected trailing bytes"), "\($0)")
        }
    }

    final class Sink: PCIInterruptSink {
        var levels: [Int: Bool] = [:]
        func setGSI(_ gsi: Int, level: Bool) { levels[gsi] = level }
        func deliverMSI(address: UInt64, data: UInt32) {}
    }

    private func bridge(device: UInt16 = 0x5A5A) throws -> (PCIHostBridge, PCIFunction, AddressBus, Sink) {
        let ports = AddressBus(), sink = Sink()
        let b = try PCIHostBridge(portBus: ports, mmioBus: AddressBus(), interrupts: sink)
        let f = PCIFunction(name: "test", identity: PCIIdentity(vendorID: 0x1234, deviceID: device, classCode: 0xFF0000,
                                                               interruptPin: 1))
        try f.addBAR(PCIBARDescription(index: 0, kind: .io, size: 32), device: InertBAR())
        try f.addMSI(vectors: 4)
        try b.attach(f)
        try b.assignResources()
        return (b, f, ports, sink)
    }

    private func configWrite(_ b: PCIHostBridge, _ f: PCIFunction, _ reg: Int, _ value: UInt32) {
        b.ioWrite(offset: 0, size: 4, value: 0x8000_0000 | UInt32(f.slot) << 11 | UInt32(reg))
        b.ioWrite(offset: 4, size: 4, value: value)
    }

    func testPCIStateMovesBARsAndINTxAndRefusesAnotherDevice() throws {
        let (b, f, _, _) = try bridge()
        configWrite(b, f, 0x10, 0xD000)                   // the guest moves BAR0
        configWrite(b, f, 0x04, 0x0405)                   // I/O + bus master + interrupt disable
        configWrite(b, f, 0x44, 0xFEE0_0000)              // MSI address
        b.setINTx(f, asserted: true)
        let saved = b.saveState()

        let (b2, f2, ports2, sink2) = try bridge()
        XCTAssertEqual(b2.mappedAddress(of: f2, bar: 0), 0xC000)
        try b2.loadState(saved)
        XCTAssertEqual(b2.mappedAddress(of: f2, bar: 0), 0xD000)
        XCTAssertNotNil(ports2.lookup(0xD000))
        XCTAssertNil(ports2.lookup(0xC000))
        XCTAssertEqual(b2.command(of: f2), 0x0405)
        XCTAssertEqual(f2.readConfig(offset: 0x44, size: 4), 0xFEE0_0000)
        XCTAssertTrue(f2.intxAsserted)
        XCTAssertEqual(sink2.levels[10], false, "interrupt disable keeps the line low")
        XCTAssertEqual(b2.saveState(), saved)

        let (other, _, _, _) = try bridge(device: 0x0001)
        XCTAssertThrowsError(try other.loadState(saved)) {
            XCTAssertTrue("\($0)".contains("slot 2 held 1234:5a5a, this VM has test (1234:0001) in slot 2"), "\($0)")
        }
    }
}
