import Dispatch
import Synchronization
import XCTest
@testable import HVDevices
@testable import HVHostIO
@testable import HVSupport

final class PlatformChipsetTests: XCTestCase {
    func testPICVirtualWireReachesOnlyTheBSP() throws {
        let m = try PlatformTestMachine(vcpus: 2)
        m.initPIC(unmasked: 0xFFFF)
        m.chipset.setGSI(3, level: true)
        XCTAssertEqual(m.chipset.nextInterrupt(vcpu: 0), 0x23)
        XCTAssertNil(m.chipset.nextInterrupt(vcpu: 1), "APs do not take the PIC")
        XCTAssertTrue(m.log.all.contains("kick0"))
        XCTAssertFalse(m.log.all.contains("kick1"))
        XCTAssertEqual(m.chipset.acknowledgeInterrupt(vcpu: 0), 0x23)
        XCTAssertNil(m.chipset.nextInterrupt(vcpu: 0), "IRQ 3 in service")
        m.chipset.setGSI(11, level: true)                // preset level-triggered in the ELCR
        XCTAssertEqual(m.inb(0x4D1), 0x0C)
        XCTAssertEqual(m.chipset.nextInterrupt(vcpu: 0), 0x2B, "cascade outranks IRQ 3")
        XCTAssertEqual(m.chipset.acknowledgeInterrupt(vcpu: 0), 0x2B)
        m.out(0xA0, 0x20); m.out(0x20, 0x20)             // EOI IRQ 11 (slave, then cascade)
        XCTAssertEqual(m.chipset.nextInterrupt(vcpu: 0), 0x2B, "level line still high")
        m.chipset.setGSI(11, level: false)
        XCTAssertNil(m.chipset.nextInterrupt(vcpu: 0))
        m.out(0x20, 0x20)                                 // EOI IRQ 3

        // LINT0 masked: the PIC no longer reaches the BSP...
        m.lapic(0, 0x350, 0x10700)
        m.chipset.setGSI(4, level: true)
        XCTAssertNil(m.chipset.nextInterrupt(vcpu: 0))
        // ...unless the local APIC is software-disabled (legacy PIC mode).
        m.lapic(0, 0xF0, 0xFF)
        XCTAssertEqual(m.chipset.nextInterrupt(vcpu: 0), 0x24)
        // An AP whose LINT0 is ExtINT takes it too.
        m.lapic(1, 0xF0, 0x1FF)
        m.lapic(1, 0x350, 0x700)
        XCTAssertEqual(m.chipset.nextInterrupt(vcpu: 1), 0x24)
        XCTAssertEqual(m.chipset.acknowledgeInterrupt(vcpu: 1), 0x24)
        XCTAssertNil(m.chipset.acknowledgeInterrupt(vcpu: 0), "the request was taken by vCPU 1")
    }

    func testLAPICVectorsComeBeforeThePIC() throws {
        let m = try PlatformTestMachine()
        m.initPIC(unmasked: 0xFFFF)
        m.chipset.setGSI(6, level: true)
        m.chipset.deliverMSI(address: 0xFEE0_0000, data: 0x90)
        XCTAssertEqual(m.chipset.nextInterrupt(vcpu: 0), 0x90)
        XCTAssertEqual(m.chipset.acknowledgeInterrupt(vcpu: 0), 0x90)
        XCTAssertEqual(m.chipset.acknowledgeInterrupt(vcpu: 0), 0x26, "then the PIC (ExtINT bypasses PPR)")
        XCTAssertNil(m.chipset.acknowledgeInterrupt(vcpu: 0))
        XCTAssertNil(m.chipset.nextInterrupt(vcpu: 7), "no such vCPU")
        // I/O APIC ExtINT delivery routes the PIC to a vCPU for one INTA.
        m.lapic(0, 0x350, 0x10700)
        m.out(0x20, 0x20)
        m.chipset.setGSI(6, level: false)
        m.ioapic(0x10, 0x700)                            // pin 0: ExtINT to APIC 0
        m.chipset.setGSI(7, level: true)
        XCTAssertNil(m.chipset.nextInterrupt(vcpu: 0))
        m.chipset.ioapicWrite(offset: 0, size: 4, value: 0x10)
        _ = m.chipset.ioapicRead(offset: 0x10, size: 4)
        m.chipset.setGSI(16, level: true)                // unrelated GSI: nothing
        XCTAssertNil(m.chipset.nextInterrupt(vcpu: 0))
    }

    func testResetCallbackFromI8042AndControllerCommands() throws {
        let m = try PlatformTestMachine()
        XCTAssertEqual(m.inb(0x64) & 0x01, 0)
        m.out(0x64, 0xAA)
        XCTAssertEqual(m.inb(0x64) & 0x01, 0x01)
        XCTAssertEqual(m.inb(0x60), 0x55, "self-test passed")
        m.out(0x64, 0xAB)
        XCTAssertEqual(m.inb(0x60), 0x00, "interface test passed")
        m.out(0x64, 0x20)
        let ctr = m.inb(0x60)
        m.out(0x64, 0x60); m.out(0x60, ctr & ~0x01)
        m.out(0x64, 0x20)
        XCTAssertEqual(m.inb(0x60), ctr & ~0x01)
        m.out(0x60, 0xFF)                                 // keyboard reset
        XCTAssertEqual(m.inb(0x60), 0xFA)
        XCTAssertEqual(m.inb(0x60), 0xAA)
        m.out(0x64, 0xD1); m.out(0x60, 0x03)             // A20 on, reset line inactive
        XCTAssertEqual(m.log.count("reset"), 0)
        m.out(0x64, 0xFE)                                 // pulse reset
        XCTAssertEqual(m.log.count("reset"), 1)
        m.out(0x64, 0xD1); m.out(0x60, 0x00)             // output port with reset bit low
        XCTAssertEqual(m.log.count("reset"), 2)
    }

    func testKeyboardIRQ1() throws {
        let kbc = I8042()
        var levels: [String] = []
        kbc.irqLine = { levels.append("\($0):\($1)") }
        kbc.write(port: 0x60, value: 0xF2)
        XCTAssertEqual(levels, ["1:true"])
        XCTAssertEqual(kbc.read(port: 0x60), 0xFA)
        XCTAssertEqual(levels, ["1:true", "1:false", "1:true"], "a new edge for the next byte")
        XCTAssertEqual(kbc.read(port: 0x60), 0xAB)
        XCTAssertEqual(kbc.read(port: 0x60), 0x41, "ID byte 0x83 through the set 2 → 1 translation")
        XCTAssertEqual(levels.last, "1:false")
        kbc.write(port: 0x64, value: 0xD4); kbc.write(port: 0x60, value: 0xF2)
        XCTAssertEqual(kbc.read(port: 0x64) & 0x21, 0x21, "aux data: the mouse answers")
        XCTAssertEqual(kbc.read(port: 0x60), 0xFA)
        XCTAssertEqual(kbc.read(port: 0x60), 0x00, "standard PS/2 mouse ID")
    }

    func testDebugExitCallback() throws {
        let m = try PlatformTestMachine()
        m.out(0x501, 0x31)
        XCTAssertEqual(m.log.all.filter { $0.hasPrefix("exit") }, ["exit49"])
        XCTAssertEqual(DebugExit.exitStatus(for: 0x31), 0x63)
        m.chipset.portWrite(0x501, size: 2, value: 0x0102)
        XCTAssertEqual(m.log.all.filter { $0.hasPrefix("exit") }, ["exit49", "exit2"])
        XCTAssertEqual(m.chipset.portRead(0x501, size: 1), 0)
    }

    func testBusRegistrationAndResetState() throws {
        let m = try PlatformTestMachine()
        let ports = AddressBus(), mmio = AddressBus()
        try m.chipset.register(portBus: ports, mmioBus: mmio)
        let names = ports.snapshot.map(\.name)
        XCTAssertEqual(Set(names), ["pic-master", "pic-slave", "pic-elcr", "pit", "system-control-b",
                                    "i8042-data", "i8042-command", "rtc-cmos", "com1", "debug-exit",
                                    "system-control-a", "vmware-backdoor", "vmware-balloon"])
        let (handler, offset) = try XCTUnwrap(ports.lookup(0x3FD))
        XCTAssertEqual(offset, 5)
        XCTAssertEqual(handler.ioRead(offset: 5, size: 1) & 0x60, 0x60)
        XCTAssertEqual(ports.read(0x3FF, size: 2) >> 8, 0xFF, "bytes past the region read 0xFF")
        XCTAssertEqual(ports.read(0x3FF0, size: 4), 0xFFFF_FFFF, "an open bus reads all ones")
        let (io, o2) = try XCTUnwrap(mmio.lookup(0xFEC0_0010))
        io.mmioWrite(offset: 0, size: 4, value: 1)
        XCTAssertEqual(io.mmioRead(offset: o2, size: 4), 0x0017_0020)
        XCTAssertThrowsError(try m.chipset.register(portBus: ports, mmioBus: mmio), "overlap")

        m.initPIC(unmasked: 0xFFFF)
        m.chipset.setGSI(5, level: true)
        m.chipset.reset()
        XCTAssertEqual(m.inb(0x21), 0)
        XCTAssertNil(m.chipset.nextInterrupt(vcpu: 0))
        XCTAssertThrowsError(try Chipset(configuration: ChipsetConfiguration(memorySize: 1 << 20, vcpuCount: 0),
                                         clock: m.clock, timers: m.timers))
    }

    /// 200k random port, MMIO, LAPIC, GSI and MSI accesses across every device.
    func testFuzzRandomAccessesNeverCrash() throws {
        let sink = CaptureSerialSink(capacity: 4096)
        let m = try PlatformTestMachine(vcpus: 2, serial: sink)
        var rng = SplitMix64(seed: 0x5EED_CAFE)
        let ports: [UInt16] = [0x20, 0x21, 0xA0, 0xA1, 0x4D0, 0x4D1, 0x40, 0x41, 0x42, 0x43, 0x61,
                               0x60, 0x64, 0x70, 0x71, 0x3F8, 0x3F9, 0x3FA, 0x3FB, 0x3FC, 0x3FD,
                               0x3FE, 0x3FF, 0x501, 0x502, 0xFFFF, 0x0000]
        let lapicRegs: [UInt64] = [0x20, 0x30, 0x80, 0x90, 0xA0, 0xB0, 0xD0, 0xE0, 0xF0, 0x100, 0x200,
                                   0x280, 0x300, 0x310, 0x320, 0x330, 0x340, 0x350, 0x360, 0x370,
                                   0x380, 0x390, 0x3E0]
        let sizes = [1, 2, 4, 8, 3, 0]
        let start = VMClock.hostNanoseconds()
        for i in 0..<200_000 {
            let r = rng.next()
            let value = rng.next()
            let size = sizes[Int(r >> 8 & 0xFF) % sizes.count]
            switch r % 16 {
            case 0, 1, 2, 3:
                let p = r & 0x10000 != 0 ? UInt16(truncatingIfNeeded: value >> 32) : ports[Int(r >> 20) % ports.count]
                m.chipset.portWrite(p, size: size, value: UInt32(truncatingIfNeeded: value))
            case 4, 5, 6:
                let p = ports[Int(r >> 20) % ports.count]
                _ = m.chipset.portRead(p, size: size)
            case 7, 8:
                let vcpu = Int(r >> 24) % 3
                let off = r & 0x10000 != 0 ? (value >> 40) & 0xFFF : lapicRegs[Int(r >> 32) % lapicRegs.count]
                var v = UInt64(truncatingIfNeeded: value)
                if off == 0x380 { v &= 0xFFFF }                    // keep timers short-lived
                if off == 0x320 || off == 0x350 { v &= ~0x400 }     // keep NMIs rare
                m.chipset.lapicWrite(vcpu: vcpu, offset: off, size: r & 0x20000 != 0 ? 4 : size, value: v)
            case 9:
                _ = m.chipset.lapicRead(vcpu: Int(r >> 24) % 3, offset: lapicRegs[Int(r >> 32) % lapicRegs.count],
                                        size: size)
            case 10:
                let off: UInt64 = [0x00, 0x10, 0x40, 0x04, 0x14, 0xFFF][Int(r >> 20) % 6]
                m.chipset.ioapicWrite(offset: off, size: size, value: r & 0x40000 != 0 ? value & 0x3F : value)
            case 11:
                _ = m.chipset.ioapicRead(offset: [0x00, 0x10, 0x40, 0x13][Int(r >> 20) % 4], size: size)
            case 12:
                m.chipset.setGSI(Int(r >> 16 & 0x1F) - 2, level: value & 1 != 0)
            case 13:
                m.chipset.deliverMSI(address: r & 1 != 0 ? 0xFEE0_0000 | (value & 0xFFFFF) : value,
                                     data: UInt32(truncatingIfNeeded: value >> 20))
            case 14:
                let vcpu = Int(r >> 24) % 3
                _ = m.chipset.nextInterrupt(vcpu: vcpu)
                _ = m.chipset.acknowledgeInterrupt(vcpu: vcpu)
                _ = m.chipset.takeNMI(vcpu: vcpu)
            default:
                if i % 20_000 == 0 { m.chipset.reset() }
                _ = sink.feed([UInt8(truncatingIfNeeded: value)])
            }
        }
        let seconds = Double(VMClock.hostNanoseconds() - start) / 1e9
        print("fuzz: 200000 operations in \(seconds) s; callbacks: \(m.log.all.count)")
        // Still a working machine afterwards.
        m.chipset.reset()
        m.initPIC(unmasked: 0xFFFF)
        m.chipset.setGSI(9, level: true)
        XCTAssertEqual(m.chipset.acknowledgeInterrupt(vcpu: 0), 0x29)
    }
}

extension PlatformChipsetTests {
    /// Several vCPU-like threads at once, with callbacks that call back into the chipset.
    func testConcurrentAccessWithReentrantCallbacks() throws {
        let m = try PlatformTestMachine(vcpus: 4, serial: CaptureSerialSink(capacity: 1024))
        let chipset = m.chipset
        let calls = Mutex(0)
        chipset.onInterruptPending = { vcpu in
            _ = chipset.nextInterrupt(vcpu: vcpu)
            calls.withLock { $0 += 1 }
        }
        chipset.onINIT = { vcpu in _ = chipset.lapicRead(vcpu: vcpu, offset: 0x20, size: 4) }
        chipset.onSIPI = { vcpu, _ in chipset.lapicWrite(vcpu: vcpu, offset: 0xF0, size: 4, value: 0x1FF) }
        chipset.onResetRequest = { chipset.reset() }
        m.initPIC(unmasked: 0xFFFF)
        m.out(0x43, 0x34); m.out(0x40, 0xA9); m.out(0x40, 0x04)   // PIT at ~1 kHz
        for v in 0..<4 {
            m.lapic(v, 0xF0, 0x1FF)
            m.lapic(v, 0x3E0, 0xB)
            m.lapic(v, 0x320, 0x20040 + UInt32(v))
            m.lapic(v, 0x380, 300_000)
        }
        DispatchQueue.concurrentPerform(iterations: 4) { v in
            var rng = SplitMix64(seed: UInt64(v) &+ 77)
            for _ in 0..<20_000 {
                let r = rng.next()
                switch r % 8 {
                case 0: chipset.lapicWrite(vcpu: v, offset: 0x300, size: 4,
                                           value: [0x000C_4050, 0x0004_4051, 0x000C_4500, 0x000C_4610][Int(r >> 8) % 4])
                case 1: chipset.lapicWrite(vcpu: v, offset: 0xB0, size: 4, value: 0)
                case 2: chipset.setGSI(Int(r >> 8) % 24, level: r & 0x100 != 0)
                case 3: chipset.portWrite(0x3F8, size: 1, value: UInt32(r >> 16 & 0xFF))
                case 4: _ = chipset.acknowledgeInterrupt(vcpu: v)
                case 5: _ = chipset.portRead([0x40, 0x61, 0x71, 0x20, 0x3FD][Int(r >> 8) % 5], size: 1)
                case 6: chipset.deliverMSI(address: 0xFEE0_0000 | (r >> 8 & 3) << 12, data: 0x60)
                default: if r & 0xFFF0 == 0 { chipset.portWrite(0x64, size: 1, value: 0xFE) }
                }
            }
        }
        XCTAssertGreaterThan(calls.withLock { $0 }, 0)
    }
}

/// Deterministic pseudo-random numbers for the fuzz test.
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

extension PlatformChipsetTests {
    /// What firmware needs from the platform beyond the models: the 0x402 debug console
    /// (present only with a log, answering 0xE9), port 0x92's fast reset and A20 bit,
    /// and the CMOS boot order.
    func testFirmwarePortsAndBootOrder() throws {
        let log = CaptureSerialSink(capacity: 64)
        var config = ChipsetConfiguration(memorySize: 64 << 20, vcpuCount: 1)
        config.firmwareLog = log
        config.bootOrder = [.hardDisk, .network, .cdrom]
        let timers = TimerQueue(clock: VMClock(), name: "fw-test")
        let chipset = try Chipset(configuration: config, clock: VMClock(), timers: timers)
        let resets = Mutex(0)
        chipset.onResetRequest = { resets.withLock { $0 += 1 } }
        XCTAssertEqual(chipset.portRead(0x402, size: 1), 0xE9)
        for b in "SeaBIOS\n".utf8 { chipset.portWrite(0x402, size: 1, value: UInt32(b)) }
        XCTAssertEqual(log.text, "SeaBIOS\n")

        XCTAssertEqual(chipset.portRead(0x92, size: 1), 0x02, "A20 on at reset")
        chipset.portWrite(0x92, size: 1, value: 0x00)
        XCTAssertEqual(chipset.portRead(0x92, size: 1), 0x00)
        XCTAssertEqual(resets.withLock { $0 }, 0)
        chipset.portWrite(0x92, size: 1, value: 0x03)
        XCTAssertEqual(resets.withLock { $0 }, 1, "bit 0 rising pulses reset")
        chipset.portWrite(0x92, size: 1, value: 0x03)
        XCTAssertEqual(resets.withLock { $0 }, 1, "no edge, no reset")

        // 0x3D: first device low nibble, second high; 0x38 bits 4-7 third, bit 0 no floppy check.
        chipset.portWrite(0x70, size: 1, value: 0x3D)
        XCTAssertEqual(chipset.portRead(0x71, size: 1), 0x42)
        chipset.portWrite(0x70, size: 1, value: 0x38)
        XCTAssertEqual(chipset.portRead(0x71, size: 1), 0x31)
        chipset.portWrite(0x70, size: 1, value: 0x10)
        XCTAssertEqual(chipset.portRead(0x71, size: 1), 0x00, "no floppy drives")

        // Without a log the port is not there: the firmware's probe reads an open bus.
        let plain = try Chipset(configuration: ChipsetConfiguration(memorySize: 64 << 20, vcpuCount: 1),
                                clock: VMClock(), timers: timers)
        let ports = AddressBus(), mmio = AddressBus()
        try plain.register(portBus: ports, mmioBus: mmio)
        XCTAssertEqual(ports.read(0x402, size: 1), 0xFF)
    }
}
