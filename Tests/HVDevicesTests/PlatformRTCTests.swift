import Glibc
import XCTest
@testable import HVDevices
@testable import HVHostIO
@testable import HVSupport

final class PlatformRTCTests: XCTestCase {
    /// 2024-02-29 23:59:58 UTC, a Thursday.
    let leapEve: Int64 = 1_709_251_198

    func read(_ rtc: RTCCMOS, _ index: UInt8) -> UInt8 {
        rtc.write(port: 0x70, value: index)
        return rtc.read(port: 0x71)
    }

    func write(_ rtc: RTCCMOS, _ index: UInt8, _ value: UInt8) {
        rtc.write(port: 0x70, value: index)
        rtc.write(port: 0x71, value: value)
    }

    func testBCDAndBinaryAnd12HourFormats() {
        let clock = PlatformManualClock()
        let rtc = RTCCMOS(now: clock.read, startTime: (leapEve, 0))
        XCTAssertEqual([0, 2, 4, 6, 7, 8, 9, 0x32].map { read(rtc, $0) },
                       [0x58, 0x59, 0x23, 5, 0x29, 0x02, 0x24, 0x20])
        clock.advance(2_000_000_000)
        XCTAssertEqual([0, 2, 4, 6, 7, 8, 9].map { read(rtc, $0) },
                       [0x00, 0x00, 0x00, 6, 0x01, 0x03, 0x24], "rolls over into 1 March, a Friday")
        write(rtc, 0x0B, 0x06)                 // binary, 24 h
        clock.advance(13 * 3600 * 1_000_000_000 + 5_000_000_000)
        XCTAssertEqual([0, 2, 4, 7, 8, 9].map { read(rtc, $0) }, [5, 0, 13, 1, 3, 24])
        write(rtc, 0x0B, 0x00)                 // BCD, 12 h
        XCTAssertEqual(read(rtc, 4), 0x81, "1 PM")
        write(rtc, 0x0B, 0x04)                 // binary, 12 h
        XCTAssertEqual(read(rtc, 4), 0x81)
    }

    func testReadsCurrentHostUTC() {
        let rtc = RTCCMOS(now: { VMClock.hostNanoseconds() })
        var now = time(nil)
        var tmv = tm()
        gmtime_r(&now, &tmv)
        func bcd(_ v: Int32) -> UInt8 { UInt8(v / 10) << 4 | UInt8(v % 10) }
        XCTAssertEqual(read(rtc, 9), bcd(tmv.tm_year % 100))
        XCTAssertEqual(read(rtc, 0x32), bcd((tmv.tm_year + 1900) / 100))
        XCTAssertEqual(read(rtc, 8), bcd(tmv.tm_mon + 1))
        XCTAssertLessThan(abs(rtc.currentTime - Int64(now)), 3)
        write(rtc, 0x0B, 0x06)
        XCTAssertEqual(read(rtc, 9), UInt8(tmv.tm_year % 100))
        let secondsOfDay = Int(read(rtc, 4)) * 3600 + Int(read(rtc, 2)) * 60 + Int(read(rtc, 0))
        let hostSeconds = Int(tmv.tm_hour) * 3600 + Int(tmv.tm_min) * 60 + Int(tmv.tm_sec)
        XCTAssertLessThan(abs(secondsOfDay - hostSeconds) % 86_398, 3)
    }

    func testGuestSetsTimeWithSETBit() {
        let clock = PlatformManualClock()
        let rtc = RTCCMOS(now: clock.read, startTime: (leapEve, 0))
        write(rtc, 0x0B, 0x82)                 // SET, BCD, 24 h
        for (i, v) in [(0, 0x30), (2, 0x15), (4, 0x08), (7, 0x04), (8, 0x07), (9, 0x99), (0x32, 0x19)] {
            write(rtc, UInt8(i), UInt8(v))
        }
        clock.advance(5_000_000_000)
        XCTAssertEqual(read(rtc, 0), 0x30, "frozen while SET")
        write(rtc, 0x0B, 0x02)
        XCTAssertEqual(rtc.currentTime, 931_076_130)   // 1999-07-04 08:15:30 UTC
        clock.advance(1_000_000_000)
        XCTAssertEqual(read(rtc, 0), 0x31)
    }

    func testUIPAndUpdateInterruptAndRegisterC() {
        let clock = PlatformManualClock(0)
        let rtc = RTCCMOS(now: clock.read, startTime: (leapEve, 0))
        var level = false
        rtc.irq8 = { level = $0 }
        clock.now = 500_000_000
        XCTAssertEqual(read(rtc, 0x0A) & 0x80, 0)
        clock.now = 999_800_000
        XCTAssertEqual(read(rtc, 0x0A) & 0x80, 0x80, "UIP in the last 244 µs of the second")
        XCTAssertEqual(read(rtc, 0x0D), 0x80)
        write(rtc, 0x0B, 0x12)                 // UIE
        XCTAssertEqual(rtc.nextDeadline, 1_000_000_000)
        clock.now = 1_000_000_000
        rtc.timerExpired(now: clock.now)
        XCTAssertTrue(level)
        XCTAssertNil(rtc.nextDeadline, "line already high")
        XCTAssertEqual(read(rtc, 0x0C) & 0xB0, 0x90, "IRQF | UF (PF may be set too: flags do not need enables)")
        XCTAssertFalse(level)
        XCTAssertEqual(read(rtc, 0x0C), 0x00, "read-to-clear")
        XCTAssertEqual(rtc.nextDeadline, 2_000_000_000)
    }

    func testPeriodicAndAlarmFlags() {
        let clock = PlatformManualClock(0)
        let rtc = RTCCMOS(now: clock.read, startTime: (leapEve, 0))
        var level = false
        rtc.irq8 = { level = $0 }
        write(rtc, 0x0B, 0x42)                 // PIE at the default 1024 Hz
        let d = try! XCTUnwrap(rtc.nextDeadline)
        XCTAssertEqual(Double(d), 976_562, accuracy: 2)
        clock.now = d
        rtc.timerExpired(now: d)
        XCTAssertTrue(level)
        XCTAssertEqual(read(rtc, 0x0C), 0xC0)
        write(rtc, 0x0B, 0x22)                 // AIE only; alarm at 00:00:00
        write(rtc, 1, 0x00); write(rtc, 3, 0x00); write(rtc, 5, 0x00)
        _ = read(rtc, 0x0C)
        clock.now = 1_500_000_000              // 23:59:59
        rtc.timerExpired(now: clock.now)
        XCTAssertFalse(level)
        clock.now = 2_000_000_000              // 00:00:00
        rtc.timerExpired(now: clock.now)
        XCTAssertTrue(level)
        XCTAssertEqual(read(rtc, 0x0C) & 0xA0, 0xA0)
        // Don't-care fields match every second.
        write(rtc, 1, 0xC0); write(rtc, 3, 0xFF); write(rtc, 5, 0xC5)
        clock.now = 3_000_000_000
        XCTAssertEqual(read(rtc, 0x0C) & 0x20, 0x20)
    }

    func testCMOSMemorySizeBytes() throws {
        func cmos(_ size: UInt64) throws -> [UInt8: UInt8] {
            let clock = VMClock()
            let timers = TimerQueue(clock: clock, name: "rtc-test")
            let chipset = try Chipset(configuration: ChipsetConfiguration(memorySize: size, vcpuCount: 2),
                                      clock: clock, timers: timers)
            var out: [UInt8: UInt8] = [:]
            for i: UInt8 in [0x15, 0x16, 0x17, 0x18, 0x30, 0x31, 0x34, 0x35, 0x5B, 0x5C, 0x5D, 0x5F] {
                chipset.portWrite(0x70, size: 1, value: UInt32(i))
                out[i] = UInt8(chipset.portRead(0x71, size: 1))
            }
            return out
        }
        let small = try cmos(128 << 20)
        XCTAssertEqual(small[0x15], 0x80); XCTAssertEqual(small[0x16], 0x02)      // 640 KiB
        XCTAssertEqual(small[0x17], 0xFF); XCTAssertEqual(small[0x18], 0xFF)      // 127 MiB: capped
        XCTAssertEqual(small[0x30], 0xFF); XCTAssertEqual(small[0x31], 0xFF)
        XCTAssertEqual(small[0x34], 0x00); XCTAssertEqual(small[0x35], 0x07)      // 112 MiB / 64 KiB
        XCTAssertEqual([small[0x5B], small[0x5C], small[0x5D]], [0, 0, 0])
        XCTAssertEqual(small[0x5F], 1)

        let big = try cmos(5 << 30)                                               // 3 GiB low + 2 GiB high
        XCTAssertEqual(big[0x17], 0xFF); XCTAssertEqual(big[0x18], 0xFF)
        XCTAssertEqual(big[0x34], 0x00); XCTAssertEqual(big[0x35], 0xBF)          // (3 GiB - 16 MiB) / 64 KiB
        XCTAssertEqual([big[0x5B], big[0x5C], big[0x5D]], [0x00, 0x80, 0x00])    // 2 GiB / 64 KiB

        let clock = PlatformManualClock()
        let rtc = RTCCMOS(now: clock.read)
        rtc.setMemoryLayout(belowFourGiB: 8 << 20, aboveFourGiB: 0, processors: 1)
        XCTAssertEqual(rtc.register(0x17), 0x00); XCTAssertEqual(rtc.register(0x18), 0x1C)   // 7168 KiB
        XCTAssertEqual(rtc.register(0x34), 0); XCTAssertEqual(rtc.register(0x35), 0)
    }

    func testShutdownStatusAndNMIBit() {
        let clock = PlatformManualClock()
        let rtc = RTCCMOS(now: clock.read)
        rtc.write(port: 0x70, value: 0x8F)
        XCTAssertTrue(rtc.nmiDisabled)
        rtc.write(port: 0x71, value: 0x0A)
        rtc.reset()
        XCTAssertEqual(read(rtc, 0x0F), 0x0A, "CMOS RAM survives a reset")
        XCTAssertFalse(rtc.nmiDisabled)
        XCTAssertEqual(rtc.read(port: 0x70), 0xFF)
    }
}
