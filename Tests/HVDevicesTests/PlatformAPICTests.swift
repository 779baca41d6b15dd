import Synchronization
import XCTest
@testable import HVDevices
@testable import HVHostIO
@testable import HVSupport

/// Thread-safe event recording for chipset callbacks.
final class PlatformCallbackLog: Sendable {
    private let events = Mutex<[String]>([])
    func add(_ e: String) { events.withLock { $0.append(e) } }
    var all: [String] { events.withLock { $0 } }
    func count(_ e: String) -> Int { all.filter { $0 == e }.count }
    func clear() { events.withLock { $0.removeAll() } }
}

/// A chipset with a running timer thread, for tests.
final class PlatformTestMachine {
    let clock = VMClock()
    let timers: TimerQueue
    let chipset: Chipset
    let log = PlatformCallbackLog()

    init(vcpus: Int = 1, memory: UInt64 = 64 << 20, serial: (any SerialSink)? = nil) throws {
        timers = TimerQueue(clock: clock, name: "platform-test")
        chipset = try Chipset(configuration: ChipsetConfiguration(memorySize: memory, vcpuCount: vcpus, serial: serial),
                              clock: clock, timers: timers)
        let log = log
        chipset.onInterruptPending = { log.add("kick\($0)") }
        chipset.onDebugExit = { log.add("exit\($0)") }
        chipset.onResetRequest = { log.add("reset") }
        chipset.onINIT = { log.add("init\($0)") }
        chipset.onSIPI = { log.add("sipi\($0):\($1)") }
        timers.start()
    }

    deinit { timers.stop() }

    func out(_ port: UInt16, _ value: UInt8) { chipset.portWrite(port, size: 1, value: UInt32(value)) }
    func inb(_ port: UInt16) -> UInt8 { UInt8(truncatingIfNeeded: chipset.portRead(port, size: 1)) }

    func lapic(_ vcpu: Int, _ offset: UInt64) -> UInt32 {
        UInt32(truncatingIfNeeded: chipset.lapicRead(vcpu: vcpu, offset: offset, size: 4))
    }
    func lapic(_ vcpu: Int, _ offset: UInt64, _ value: UInt32) {
        chipset.lapicWrite(vcpu: vcpu, offset: offset, size: 4, value: UInt64(value))
    }

    func ioapic(_ reg: UInt8) -> UInt32 {
        chipset.ioapicWrite(offset: 0, size: 4, value: UInt64(reg))
        return UInt32(truncatingIfNeeded: chipset.ioapicRead(offset: 0x10, size: 4))
    }
    func ioapic(_ reg: UInt8, _ value: UInt32) {
        chipset.ioapicWrite(offset: 0, size: 4, value: UInt64(reg))
        chipset.ioapicWrite(offset: 0x10, size: 4, value: UInt64(value))
    }

    /// Standard PIC init (vectors 0x20/0x28), everything masked but `unmasked`.
    func initPIC(unmasked: UInt16 = 0, autoEOI: Bool = false) {
        let icw4: UInt8 = autoEOI ? 3 : 1
        for (p, v) in [(0x20, 0x11), (0x21, 0x20), (0x21, 0x04), (0x21, icw4),
                       (0xA0, 0x11), (0xA1, 0x28), (0xA1, 0x02), (0xA1, icw4)] as [(UInt16, UInt8)] {
            out(p, v)
        }
        out(0x21, ~UInt8(truncatingIfNeeded: unmasked))
        out(0xA1, ~UInt8(truncatingIfNeeded: unmasked >> 8))
    }
}

final class PlatformAPICTests: XCTestCase {
    func testIOAPICIdentityAndRedirectionToLAPIC() throws {
        let m = try PlatformTestMachine()
        m.initPIC()                                     // PIC fully masked
        XCTAssertEqual(m.ioapic(0x01), 0x0017_0020)
        m.ioapic(0x00, 0x0500_0000)
        XCTAssertEqual(m.ioapic(0x00), 0x0500_0000)
        XCTAssertEqual(m.ioapic(0x02), 0x0500_0000)
        XCTAssertEqual(m.ioapic(0x10 + 2 * 5) & 0x10000, 0x10000, "pins start masked")
        m.ioapic(0x10 + 2 * 5 + 1, 0x0000_0000)         // destination APIC 0
        m.ioapic(0x10 + 2 * 5, 0x35)                    // fixed, physical, edge, unmasked
        XCTAssertNil(m.chipset.nextInterrupt(vcpu: 0))
        m.chipset.setGSI(5, level: true)
        XCTAssertEqual(m.chipset.nextInterrupt(vcpu: 0), 0x35)
        XCTAssertEqual(m.chipset.acknowledgeInterrupt(vcpu: 0), 0x35)
        XCTAssertNil(m.chipset.nextInterrupt(vcpu: 0))
        XCTAssertEqual(m.lapic(0, 0x100 + 0x10 * 1) & (1 << 21), 1 << 21, "ISR bit 0x35")
        m.lapic(0, 0xB0, 0)
        XCTAssertEqual(m.lapic(0, 0x110), 0)
        m.chipset.setGSI(5, level: true)
        XCTAssertNil(m.chipset.nextInterrupt(vcpu: 0), "edge: no new interrupt while the line stays high")
        m.chipset.setGSI(5, level: false)
        m.chipset.setGSI(5, level: true)
        XCTAssertEqual(m.chipset.nextInterrupt(vcpu: 0), 0x35)
        XCTAssertTrue(m.log.all.contains("kick0"))
        // IRQ 0 lands on pin 2.
        m.ioapic(0x10 + 2 * 2, 0x30)
        m.chipset.setGSI(0, level: true)
        XCTAssertEqual(m.chipset.acknowledgeInterrupt(vcpu: 0), 0x35)
        m.lapic(0, 0xB0, 0)
        XCTAssertEqual(m.chipset.acknowledgeInterrupt(vcpu: 0), 0x30)
    }

    func testLevelTriggeredRemoteIRRAndEOI() throws {
        let m = try PlatformTestMachine()
        m.initPIC()
        m.ioapic(0x10 + 2 * 10, 0x0000_A04A)            // vector 0x4A, level, active low
        m.chipset.setGSI(10, level: true)
        XCTAssertEqual(m.chipset.acknowledgeInterrupt(vcpu: 0), 0x4A)
        XCTAssertEqual(m.ioapic(0x10 + 2 * 10) & 0x4000, 0x4000, "Remote IRR set")
        XCTAssertEqual(m.lapic(0, 0x180 + 0x10 * 2) & (1 << 10), 1 << 10, "TMR marks 0x4A level")
        XCTAssertNil(m.chipset.nextInterrupt(vcpu: 0))
        m.lapic(0, 0xB0, 0)                              // EOI, broadcast to the I/O APIC
        XCTAssertEqual(m.chipset.nextInterrupt(vcpu: 0), 0x4A, "still asserted: delivered again")
        XCTAssertEqual(m.chipset.acknowledgeInterrupt(vcpu: 0), 0x4A)
        m.chipset.setGSI(10, level: false)
        m.lapic(0, 0xB0, 0)
        XCTAssertEqual(m.ioapic(0x10 + 2 * 10) & 0x4000, 0, "Remote IRR cleared by EOI")
        XCTAssertNil(m.chipset.nextInterrupt(vcpu: 0))
        // The version 0x20 EOI register does the same.
        m.chipset.setGSI(10, level: true)
        XCTAssertEqual(m.chipset.acknowledgeInterrupt(vcpu: 0), 0x4A)
        m.chipset.setGSI(10, level: false)
        m.chipset.ioapicWrite(offset: 0x40, size: 4, value: 0x4A)
        XCTAssertEqual(m.ioapic(0x10 + 2 * 10) & 0x4000, 0)
        // Masked level pins hold the request until unmasked.
        m.ioapic(0x10 + 2 * 11, 0x0001_804B)
        m.chipset.setGSI(11, level: true)
        m.lapic(0, 0xB0, 0)
        XCTAssertNil(m.chipset.nextInterrupt(vcpu: 0))
        m.ioapic(0x10 + 2 * 11, 0x0000_804B)
        XCTAssertEqual(m.chipset.nextInterrupt(vcpu: 0), 0x4B)
    }

    func testLevelInterruptToDisabledAPICStaysPending() throws {
        let m = try PlatformTestMachine(vcpus: 2)
        m.initPIC()
        m.ioapic(0x10 + 2 * 12 + 1, 0x0100_0000)        // to APIC 1, which waits for INIT/SIPI
        m.ioapic(0x10 + 2 * 12, 0x0000_805C)
        m.chipset.setGSI(12, level: true)
        XCTAssertEqual(m.ioapic(0x10 + 2 * 12) & 0x4000, 0, "nobody took it: no Remote IRR")
        m.lapic(1, 0xF0, 0x1FF)
        m.ioapic(0x10 + 2 * 12, 0x0000_805C)            // any service retries the request
        XCTAssertEqual(m.ioapic(0x10 + 2 * 12) & 0x4000, 0x4000)
        XCTAssertEqual(m.chipset.acknowledgeInterrupt(vcpu: 1), 0x5C)
    }

    func testLAPICRegistersAtReset() throws {
        let m = try PlatformTestMachine(vcpus: 2)
        XCTAssertEqual(m.lapic(0, 0x20), 0)
        XCTAssertEqual(m.lapic(1, 0x20), 0x0100_0000)
        XCTAssertEqual(m.lapic(0, 0x30), 0x0005_0014)
        XCTAssertEqual(m.lapic(0, 0xF0), 0x1FF)
        XCTAssertEqual(m.lapic(0, 0x350), 0x700, "LINT0 virtual wire")
        XCTAssertEqual(m.lapic(0, 0x360), 0x400, "LINT1 NMI")
        XCTAssertEqual(m.lapic(0, 0x320), 0x10000)
        XCTAssertEqual(m.lapic(1, 0xF0), 0xFF, "APs wait for INIT/SIPI with the APIC disabled")
        XCTAssertEqual(m.lapic(0, 0xE0), 0xFFFF_FFFF)
        XCTAssertEqual(m.chipset.apicBaseMSR(vcpu: 0), 0xFEE0_0900)
        // Software-disabling masks every LVT and keeps writes masked.
        m.lapic(0, 0xF0, 0xFF)
        XCTAssertEqual(m.lapic(0, 0x350), 0x10700)
        m.lapic(0, 0x370, 0xEE)
        XCTAssertEqual(m.lapic(0, 0x370), 0x100EE)
        XCTAssertEqual(m.chipset.lapicRead(vcpu: 0, offset: 0x351, size: 1), 0x07, "byte read inside LINT0")
        XCTAssertEqual(m.chipset.lapicRead(vcpu: 0, offset: 0x34, size: 4), 0, "outside the register")
    }

    func testTimerPeriodicFiresAndCurrentCountDecreases() throws {
        let m = try PlatformTestMachine()
        m.initPIC()
        m.lapic(0, 0x3E0, 0xB)                           // divide by 1: 1 ns per count
        m.lapic(0, 0x320, 0x40)                          // one-shot, vector 0x40
        m.lapic(0, 0x380, 4_000_000_000)                 // 4 s
        let a = m.lapic(0, 0x390)
        usleep(2000)
        let b = m.lapic(0, 0x390)
        XCTAssertLessThan(b, a)
        XCTAssertGreaterThan(a - b, 1_000_000, "at least 1 ms of counts went by")
        m.lapic(0, 0x3E0, 0x3)                           // divide by 16: the count slows, stays put
        let c = m.lapic(0, 0x390)
        XCTAssertLessThanOrEqual(c, b)
        XCTAssertGreaterThan(c, b - 1_000_000)
        m.lapic(0, 0x3E0, 0xB)

        m.lapic(0, 0x320, 0x20041)                       // periodic, vector 0x41
        m.lapic(0, 0x380, 5_000_000)                     // every 5 ms
        let start = VMClock.hostNanoseconds()
        var fired = 0
        while VMClock.hostNanoseconds() - start < 200_000_000 {
            if let v = m.chipset.acknowledgeInterrupt(vcpu: 0) {
                XCTAssertEqual(v, 0x41)
                fired += 1
                m.lapic(0, 0xB0, 0)
            }
            usleep(500)
        }
        XCTAssertGreaterThanOrEqual(fired, 10, "~40 expected in 200 ms")
        XCTAssertLessThanOrEqual(fired, 45)
        m.lapic(0, 0x380, 0)                             // stop
        XCTAssertEqual(m.lapic(0, 0x390), 0)
    }

    func testTPRBlocksLowerPriorityVectors() throws {
        let m = try PlatformTestMachine()
        m.initPIC()
        m.chipset.deliverMSI(address: 0xFEE0_0000, data: 0x41)
        m.chipset.deliverMSI(address: 0xFEE0_0000, data: 0x61)
        m.lapic(0, 0x80, 0x50)
        XCTAssertEqual(m.lapic(0, 0xA0), 0x50, "PPR = TPR with nothing in service")
        XCTAssertEqual(m.chipset.acknowledgeInterrupt(vcpu: 0), 0x61)
        XCTAssertEqual(m.lapic(0, 0xA0), 0x60, "PPR follows the in-service class")
        XCTAssertNil(m.chipset.nextInterrupt(vcpu: 0), "0x41 is below the in-service 0x61")
        m.lapic(0, 0xB0, 0)
        m.chipset.setTaskPriority(vcpu: 0, 0x70)
        XCTAssertNil(m.chipset.nextInterrupt(vcpu: 0), "class 4 <= TPR class 7")
        m.lapic(0, 0x80, 0x40)
        XCTAssertNil(m.chipset.nextInterrupt(vcpu: 0), "equal class is blocked too")
        m.lapic(0, 0x80, 0x30)
        XCTAssertEqual(m.chipset.taskPriority(vcpu: 0), 0x30)
        XCTAssertEqual(m.chipset.nextInterrupt(vcpu: 0), 0x41)
        // Illegal vectors are refused and reported in ESR.
        m.chipset.deliverMSI(address: 0xFEE0_0000, data: 0x05)
        m.lapic(0, 0x280, 0)
        XCTAssertEqual(m.lapic(0, 0x280), 0x40)
        // MSI to a non-existent APIC, or outside the window, goes nowhere.
        m.chipset.deliverMSI(address: 0xFEE0_5000, data: 0x71)
        m.chipset.deliverMSI(address: 0xFED0_0000, data: 0x71)
        XCTAssertEqual(m.chipset.nextInterrupt(vcpu: 0), 0x41)
    }

    func testFixedIPIToAnotherVCPU() throws {
        let m = try PlatformTestMachine(vcpus: 3)
        m.initPIC()
        m.lapic(1, 0xF0, 0x1FF)
        m.lapic(2, 0xF0, 0x1FF)
        m.log.clear()
        m.lapic(0, 0x310, 0x0100_0000)
        m.lapic(0, 0x300, 0x0000_4055)                   // fixed, assert, vector 0x55 to APIC 1
        XCTAssertEqual(m.chipset.nextInterrupt(vcpu: 1), 0x55)
        XCTAssertNil(m.chipset.nextInterrupt(vcpu: 2))
        XCTAssertEqual(m.log.all, ["kick1"])
        XCTAssertEqual(m.lapic(0, 0x300) & 0x1000, 0, "delivery status idle")
        m.lapic(0, 0x300, 0x000C_4056)                   // all excluding self
        XCTAssertEqual(m.chipset.acknowledgeInterrupt(vcpu: 1), 0x56)
        XCTAssertEqual(m.chipset.nextInterrupt(vcpu: 2), 0x56)
        XCTAssertNil(m.chipset.nextInterrupt(vcpu: 0))
        // Logical flat addressing.
        m.lapic(2, 0xD0, 0x0400_0000)
        m.lapic(0, 0x310, 0x0400_0000)
        m.lapic(0, 0x300, 0x0000_4857)                   // logical
        XCTAssertEqual(m.chipset.acknowledgeInterrupt(vcpu: 2), 0x57)
        // NMI IPI.
        m.lapic(0, 0x310, 0x0200_0000)
        m.lapic(0, 0x300, 0x0000_4400)
        XCTAssertTrue(m.chipset.hasPendingNMI(vcpu: 2))
        XCTAssertTrue(m.chipset.takeNMI(vcpu: 2))
        XCTAssertFalse(m.chipset.takeNMI(vcpu: 2))
        // Self IPI.
        m.lapic(0, 0x300, 0x0004_4060)
        XCTAssertEqual(m.chipset.nextInterrupt(vcpu: 0), 0x60)
    }

    func testINITAndSIPICallbacks() throws {
        let m = try PlatformTestMachine(vcpus: 2)
        m.lapic(1, 0xF0, 0x1FF)
        m.log.clear()
        m.lapic(0, 0x310, 0x0100_0000)
        m.lapic(0, 0x300, 0x0000_C500)                   // INIT assert, level
        m.lapic(0, 0x300, 0x0000_8500)                   // INIT de-assert: no effect
        m.lapic(0, 0x300, 0x0000_4608)                   // STARTUP, vector 8
        m.lapic(0, 0x300, 0x0000_4608)
        XCTAssertEqual(m.log.all, ["init1", "sipi1:8", "sipi1:8"])
        XCTAssertEqual(m.lapic(1, 0xF0), 0xFF, "INIT reset the target APIC")
        m.log.clear()
        m.lapic(0, 0x300, 0x000C_4500)                   // INIT to all but self
        XCTAssertEqual(m.log.all, ["init1"])
    }

    func testNMIThroughLINT1() throws {
        let m = try PlatformTestMachine()
        m.chipset.pulseLINT1(vcpu: 0)
        XCTAssertTrue(m.chipset.takeNMI(vcpu: 0))
        m.lapic(0, 0x360, 0x10400)
        m.chipset.pulseLINT1(vcpu: 0)
        XCTAssertFalse(m.chipset.takeNMI(vcpu: 0), "masked LINT1")
    }
}
