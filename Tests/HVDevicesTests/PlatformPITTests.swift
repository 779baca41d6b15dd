import Synchronization
import XCTest
@testable import HVDevices
@testable import HVHostIO
@testable import HVSupport

final class PlatformPITTests: XCTestCase {
    func testLatchedCountDownInMode2() {
        let clock = PlatformManualClock()
        let pit = PIT8254(now: clock.read)
        pit.write(port: 0x43, value: 0x34)     // ch0, lo/hi, mode 2
        pit.write(port: 0x40, value: 0x9C)
        pit.write(port: 0x40, value: 0x2E)     // 11932: 100 Hz
        clock.advance(1_000_000)               // 1 ms = 1193 ticks
        pit.write(port: 0x43, value: 0x00)     // latch ch0
        clock.advance(3_000_000)               // the latch holds meanwhile
        let lo = pit.read(port: 0x40), hi = pit.read(port: 0x40)
        XCTAssertEqual(UInt16(lo) | UInt16(hi) << 8, 11932 - 1193)
        // Live reads keep counting down.
        let a = UInt16(pit.read(port: 0x40)) | UInt16(pit.read(port: 0x40)) << 8
        clock.advance(2_000_000)
        let b = UInt16(pit.read(port: 0x40)) | UInt16(pit.read(port: 0x40)) << 8
        XCTAssertEqual(a, 11932 - 4772)
        XCTAssertLessThan(b, a)
        // Mode 2 reloads: after exactly one more period the count repeats.
        clock.advance(10_000_000)
        let c = UInt16(pit.read(port: 0x40)) | UInt16(pit.read(port: 0x40)) << 8
        XCTAssertLessThanOrEqual(abs(Int(c) - Int(b)), 1)
    }

    func testReadBackStatusAndCount() {
        let clock = PlatformManualClock()
        let pit = PIT8254(now: clock.read)
        pit.write(port: 0x43, value: 0xB0)     // ch2, lo/hi, mode 0
        XCTAssertEqual(pit.read(port: 0x61) & 0x20, 0)
        pit.write(port: 0x43, value: 0xE8)     // read-back status of ch2 before a count is loaded
        XCTAssertEqual(pit.read(port: 0x42), 0x70, "null count, lo/hi, mode 0, output low")
        pit.write(port: 0x61, value: 0x01)     // gate 2 high
        pit.write(port: 0x42, value: 0xE8)
        pit.write(port: 0x42, value: 0x03)     // 1000 ticks ≈ 838 µs
        clock.advance(500_000)                 // 596 ticks
        pit.write(port: 0x43, value: 0xC8)     // read-back count + status, ch2
        XCTAssertEqual(pit.read(port: 0x42), 0x30, "status first: count loaded, output still low")
        let count = UInt16(pit.read(port: 0x42)) | UInt16(pit.read(port: 0x42)) << 8
        XCTAssertEqual(count, 1000 - 596)
        XCTAssertEqual(pit.read(port: 0x61) & 0x21, 0x01, "gate high, OUT2 low before terminal count")
        clock.advance(400_000)
        XCTAssertEqual(pit.read(port: 0x61) & 0x20, 0x20, "OUT2 high at terminal count")
        // LSB-only access.
        pit.write(port: 0x43, value: 0x90)     // ch2, LSB only, mode 0
        pit.write(port: 0x42, value: 0x80)
        XCTAssertEqual(pit.read(port: 0x42), 0x80)
    }

    func testRefreshBitToggles() {
        let clock = PlatformManualClock()
        let pit = PIT8254(now: clock.read)
        let a = pit.read(port: 0x61) & 0x10
        clock.advance(15_085)
        XCTAssertNotEqual(pit.read(port: 0x61) & 0x10, a)
    }

    func testChannel0EdgesFromTimer() {
        let clock = PlatformManualClock(0)
        let pit = PIT8254(now: clock.read)
        var edges = 0
        pit.irq0 = { if $0 { edges += 1 } }
        pit.write(port: 0x43, value: 0x34)
        pit.write(port: 0x40, value: 0x9C)
        pit.write(port: 0x40, value: 0x2E)
        let first = try! XCTUnwrap(pit.nextDeadline)
        XCTAssertEqual(Double(first), 10_000_000, accuracy: 1_000)
        clock.now = first
        pit.timerExpired(now: first)
        XCTAssertEqual(edges, 1)
        let second = try! XCTUnwrap(pit.nextDeadline)
        XCTAssertEqual(Double(second - first), 10_000_000, accuracy: 1_000)
        // Late by several periods: one edge, then back on the period grid.
        clock.now = second + 35_000_000
        pit.timerExpired(now: clock.now)
        XCTAssertEqual(edges, 2)
        XCTAssertGreaterThan(pit.nextDeadline!, clock.now)
        // Mode 0 fires once.
        pit.write(port: 0x43, value: 0x30)
        XCTAssertNil(pit.nextDeadline, "no count: no timer")
        pit.write(port: 0x40, value: 0x00)
        pit.write(port: 0x40, value: 0x10)
        let once = try! XCTUnwrap(pit.nextDeadline)
        clock.now = once
        pit.timerExpired(now: once)
        XCTAssertEqual(edges, 3)
        XCTAssertNil(pit.nextDeadline)
    }

    /// Mode 2 at 100 Hz through the whole chipset and a real timer thread.
    func testMode2At100HzDeliversIRQ0OverRealTime() throws {
        let clock = VMClock()
        let timers = TimerQueue(clock: clock, name: "pit-test")
        timers.start()
        defer { timers.stop() }
        let chipset = try Chipset(configuration: ChipsetConfiguration(memorySize: 64 << 20, vcpuCount: 1),
                                  clock: clock, timers: timers)
        for (port, v) in [(0x20, 0x11), (0x21, 0x20), (0x21, 0x04), (0x21, 0x03),   // auto-EOI
                          (0xA0, 0x11), (0xA1, 0x28), (0xA1, 0x02), (0xA1, 0x03),
                          (0x21, 0xFE), (0xA1, 0xFF),                               // only IRQ 0
                          (0x43, 0x34), (0x40, 0x9C), (0x40, 0x2E)] {
            chipset.portWrite(UInt16(port), size: 1, value: UInt32(v))
        }
        let start = VMClock.hostNanoseconds()
        var ticks = 0
        while VMClock.hostNanoseconds() - start < 300_000_000 {
            if chipset.nextInterrupt(vcpu: 0) != nil, let v = chipset.acknowledgeInterrupt(vcpu: 0) {
                XCTAssertEqual(v, 0x20)
                ticks += 1
            }
            usleep(500)
        }
        XCTAssertGreaterThanOrEqual(ticks, 15, "~30 expected in 300 ms")
        XCTAssertLessThanOrEqual(ticks, 40)
    }
}
