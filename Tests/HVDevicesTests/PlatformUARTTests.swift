import Glibc
import XCTest
@testable import HVDevices
@testable import HVHostIO
@testable import HVSupport

final class PlatformUARTTests: XCTestCase {
    func makeUART(_ clock: PlatformManualClock) -> (UART16550, PlatformEventLog) {
        let uart = UART16550(now: clock.read)
        let log = PlatformEventLog()
        uart.irqLine = { log.add($0 ? "irq+" : "irq-") }
        uart.transmit = { log.add("tx:\($0)") }
        return (uart, log)
    }

    func testLoopbackEchoesAndLoopsModemLines() {
        let clock = PlatformManualClock()
        let (uart, log) = makeUART(clock)
        uart.write(offset: 4, value: 0x10)     // loopback
        uart.write(offset: 0, value: 0x41)
        XCTAssertEqual(uart.read(offset: 5) & 0x61, 0x61, "DR, THRE, TEMT")
        XCTAssertEqual(uart.read(offset: 0), 0x41)
        XCTAssertEqual(uart.read(offset: 5) & 0x01, 0)
        XCTAssertFalse(log.events.contains { $0.hasPrefix("tx:") }, "loopback sends nothing out")
        XCTAssertEqual(uart.read(offset: 6) & 0xF0, 0x00)
        uart.write(offset: 4, value: 0x1F)     // DTR RTS OUT1 OUT2 looped to DSR CTS RI DCD
        XCTAssertEqual(uart.read(offset: 6), 0xFB, "all inputs high; DCTS DDSR DDCD deltas")
        XCTAssertEqual(uart.read(offset: 6), 0xF0, "deltas clear on read")
        uart.write(offset: 4, value: 0x00)
        XCTAssertEqual(uart.read(offset: 6), 0xB4, "back to a connected terminal; RI trailing edge")
        uart.write(offset: 0, value: 0x42)
        XCTAssertEqual(log.events.last, "tx:66")
    }

    func testDivisorLatchAndScratch() {
        let clock = PlatformManualClock()
        let (uart, _) = makeUART(clock)
        uart.write(offset: 3, value: 0x83)
        uart.write(offset: 0, value: 0x01)
        uart.write(offset: 1, value: 0x00)
        XCTAssertEqual(uart.read(offset: 0), 0x01)
        uart.write(offset: 3, value: 0x03)
        XCTAssertEqual(uart.read(offset: 3), 0x03)
        uart.write(offset: 7, value: 0x5A)
        XCTAssertEqual(uart.read(offset: 7), 0x5A)
    }

    func testTHREInterrupt() {
        let clock = PlatformManualClock()
        let (uart, log) = makeUART(clock)
        XCTAssertEqual(uart.read(offset: 2), 0x01)
        uart.write(offset: 1, value: 0x02)     // ETBEI
        XCTAssertEqual(log.events, ["irq+"])
        XCTAssertEqual(uart.read(offset: 2), 0x02, "THRE identified")
        XCTAssertEqual(log.events, ["irq+", "irq-"], "reading IIR clears the THRE interrupt")
        XCTAssertEqual(uart.read(offset: 2), 0x01)
        uart.write(offset: 0, value: 0x33)
        XCTAssertEqual(log.events, ["irq+", "irq-", "tx:51", "irq+"], "THR empties again: new edge")
        uart.write(offset: 1, value: 0x00)
        XCTAssertEqual(log.events.last, "irq-")
    }

    func testRXFIFOTriggerTimeoutAndIIRPriority() {
        let clock = PlatformManualClock()
        let (uart, log) = makeUART(clock)
        uart.write(offset: 3, value: 0x03)     // 8N1, divisor 12: a character is ~1.04 ms
        uart.write(offset: 2, value: 0x87)     // FIFO on, cleared, trigger 8
        uart.write(offset: 1, value: 0x07)     // RDA, THRE, RLS
        XCTAssertEqual(uart.read(offset: 2), 0xC2, "only THRE pending; FIFO bits set")
        XCTAssertEqual(uart.receive(Array("hello".utf8)), 5)
        XCTAssertEqual(uart.read(offset: 2), 0xC1, "5 < trigger 8, timeout not reached")
        XCTAssertEqual(uart.nextDeadline.map { $0 - clock.now }, 4 * 1_041_666)
        clock.advance(4_200_000)
        uart.timerExpired(now: clock.now)
        XCTAssertEqual(log.events.last, "irq+")
        XCTAssertEqual(uart.read(offset: 2), 0xCC, "character timeout")
        uart.receive(Array("abc".utf8))
        XCTAssertEqual(uart.read(offset: 2), 0xC4, "trigger level reached")
        var got: [UInt8] = []
        while uart.read(offset: 5) & 1 != 0 { got.append(uart.read(offset: 0)) }
        XCTAssertEqual(String(decoding: got, as: UTF8.self), "helloabc")
        XCTAssertEqual(uart.read(offset: 2), 0xC1)

        // Backlog beyond the FIFO is flow-controlled, not lost.
        XCTAssertEqual(uart.receive([UInt8](repeating: 0x55, count: 40)), 40)
        var n = 0
        while uart.read(offset: 5) & 1 != 0 { _ = uart.read(offset: 0); n += 1 }
        XCTAssertEqual(n, 40)

        // Overrun in loopback: RLS outranks RDA.
        uart.write(offset: 4, value: 0x10)
        for i in 0..<17 { uart.write(offset: 0, value: UInt8(i)) }
        XCTAssertEqual(uart.read(offset: 2), 0xC6)
        XCTAssertEqual(uart.read(offset: 5) & 0x03, 0x03, "DR and OE")
        XCTAssertEqual(uart.read(offset: 2), 0xC4, "after LSR read: data available")
        uart.write(offset: 2, value: 0x03)     // clear RX FIFO, trigger 1
        XCTAssertEqual(uart.read(offset: 5) & 0x01, 0)
    }

    func testFileSinkAppendsBytes() throws {
        let path = "/tmp/hv-platform-uart-\(getpid()).log"
        unlink(path)
        defer { unlink(path) }
        let sink = try FileSerialSink(path: path)
        let clock = VMClock()
        let timers = TimerQueue(clock: clock, name: "uart-test")
        let chipset = try Chipset(configuration: ChipsetConfiguration(memorySize: 32 << 20, vcpuCount: 1, serial: sink),
                                  clock: clock, timers: timers)
        for b in "hello\n".utf8 { chipset.portWrite(0x3F8, size: 1, value: UInt32(b)) }
        sink.flush()
        let again = try FileSerialSink(path: path)   // appends
        again.transmit(0x21)
        again.close()
        sink.close()
        let fd = open(path, O_RDONLY)
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 64)
        let n = read(fd, &buf, 64)
        XCTAssertEqual(String(decoding: buf[0..<max(n, 0)], as: UTF8.self), "hello\n!")
    }

    func testUnixSocketSinkCarriesOutputAndInput() throws {
        let path = "/tmp/hv-platform-uart-\(getpid()).sock"
        let sink = try UnixSocketSerialSink(path: path)
        defer { sink.close() }
        let clock = VMClock()
        let timers = TimerQueue(clock: clock, name: "uart-sock-test")
        let chipset = try Chipset(configuration: ChipsetConfiguration(memorySize: 32 << 20, vcpuCount: 1, serial: sink),
                                  clock: clock, timers: timers)
        chipset.portWrite(0x3F8, size: 1, value: 0x2E)   // no client: dropped
        XCTAssertEqual(sink.droppedBytes, 1)

        let client = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        XCTAssertGreaterThanOrEqual(client, 0)
        defer { close(client) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            let b = Array(path.utf8)
            raw.copyBytes(from: b)
            raw[b.count] = 0
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(client, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        XCTAssertEqual(rc, 0)
        var waited = 0
        while !sink.hasClient && waited < 2000 { usleep(1000); waited += 1 }
        XCTAssertTrue(sink.hasClient)

        for b in "ping".utf8 { chipset.portWrite(0x3F8, size: 1, value: UInt32(b)) }
        var received: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 16)
        while received.count < 4 {
            var p = pollfd(fd: client, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 2000) > 0 else { break }
            let n = read(client, &buf, 16)
            if n <= 0 { break }
            received += buf[0..<n]
        }
        XCTAssertEqual(String(decoding: received, as: UTF8.self), "ping")

        _ = "xyz".withCString { write(client, $0, 3) }
        var input: [UInt8] = []
        waited = 0
        while input.count < 3 && waited < 2000 {
            if chipset.portRead(0x3FD, size: 1) & 1 != 0 {
                input.append(UInt8(chipset.portRead(0x3F8, size: 1)))
            } else {
                usleep(1000); waited += 1
            }
        }
        XCTAssertEqual(String(decoding: input, as: UTF8.self), "xyz")
    }

    func testCaptureSinkAndSinkErrors() throws {
        let sink = CaptureSerialSink()
        let clock = VMClock()
        let timers = TimerQueue(clock: clock, name: "uart-cap-test")
        let chipset = try Chipset(configuration: ChipsetConfiguration(memorySize: 32 << 20, vcpuCount: 1, serial: sink),
                                  clock: clock, timers: timers)
        chipset.portWrite(0x3F8, size: 1, value: 0x4F)
        chipset.portWrite(0x3F8, size: 1, value: 0x4B)
        XCTAssertEqual(sink.text, "OK")
        XCTAssertEqual(sink.feed([0x31]), 1)
        XCTAssertEqual(chipset.portRead(0x3F8, size: 1), 0x31)
        XCTAssertThrowsError(try FileSerialSink(path: "/nonexistent-dir/x.log"))
        XCTAssertThrowsError(try UnixSocketSerialSink(path: "/tmp/" + String(repeating: "a", count: 200)))
    }

}
