import XCTest
@testable import HVDevices
@testable import HVHostIO
@testable import HVSupport

/// A VM clock a test moves by hand.
final class PlatformManualClock: @unchecked Sendable {
    var now: UInt64
    init(_ start: UInt64 = 1_000_000_000) { now = start }
    var read: () -> UInt64 { { [unowned self] in self.now } }
    func advance(_ ns: UInt64) { now += ns }
}

/// Records what a test-owned model reports through its callbacks.
final class PlatformEventLog: @unchecked Sendable {
    var events: [String] = []
    func add(_ e: String) { events.append(e) }
}

final class PlatformPICTests: XCTestCase {
    /// The ICW sequence Linux and SeaBIOS use: vectors 0x20 / 0x28, cascade on IR2, 8086 mode.
    func initialized(autoEOI: Bool = false) -> PIC8259 {
        let pic = PIC8259()
        let icw4: UInt8 = autoEOI ? 0x03 : 0x01
        for (port, v) in [(0x20, 0x11), (0x21, 0x20), (0x21, 0x04), (0x21, Int(icw4)),
                          (0xA0, 0x11), (0xA1, 0x28), (0xA1, 0x02), (0xA1, Int(icw4)),
                          (0x21, 0x00), (0xA1, 0x00)] {
            pic.write(port: UInt16(port), value: UInt8(v))
        }
        return pic
    }

    func testInitSequenceSetsVectorBaseAndClearsMask() {
        let pic = initialized()
        XCTAssertEqual(pic.read(port: 0x21), 0)
        XCTAssertFalse(pic.hasInterrupt)
        pic.setIRQ(6, level: true)
        XCTAssertTrue(pic.hasInterrupt)
        XCTAssertEqual(pic.pendingVector, 0x26)
        XCTAssertEqual(pic.acknowledge(), 0x26)
        pic.setIRQ(9, level: true)
        pic.write(port: 0x20, value: 0x20)     // EOI IRQ 6
        XCTAssertEqual(pic.acknowledge(), 0x29)
    }

    func testPriorityAndNonSpecificEOI() {
        let pic = initialized()
        pic.setIRQ(3, level: true)
        pic.setIRQ(1, level: true)
        XCTAssertEqual(pic.acknowledge(), 0x21, "IRQ 1 outranks IRQ 3")
        XCTAssertFalse(pic.hasInterrupt, "IRQ 3 waits while IRQ 1 is in service")
        pic.write(port: 0x20, value: 0x0B)     // OCW3: read ISR
        XCTAssertEqual(pic.read(port: 0x20), 0x02)
        pic.write(port: 0x20, value: 0x0A)     // OCW3: read IRR
        XCTAssertEqual(pic.read(port: 0x20), 0x08)
        pic.setIRQ(0, level: true)
        XCTAssertTrue(pic.hasInterrupt, "IRQ 0 preempts IRQ 1")
        XCTAssertEqual(pic.acknowledge(), 0x20)
        pic.write(port: 0x20, value: 0x20)     // EOI of the highest in service: IRQ 0
        pic.write(port: 0x20, value: 0x20)     // then IRQ 1
        XCTAssertEqual(pic.acknowledge(), 0x23)
        pic.write(port: 0x20, value: 0x63)     // specific EOI IRQ 3
        XCTAssertEqual(pic.registers.isr, 0)
        XCTAssertFalse(pic.hasInterrupt)
    }

    func testMaskingHoldsRequestUntilUnmasked() {
        let pic = initialized()
        pic.write(port: 0x21, value: 0x20)     // mask IRQ 5
        pic.setIRQ(5, level: true)
        XCTAssertFalse(pic.hasInterrupt)
        XCTAssertEqual(pic.read(port: 0x21), 0x20)
        pic.write(port: 0x21, value: 0x00)
        XCTAssertEqual(pic.acknowledge(), 0x25)
        // Masking the cascade hides every slave IRQ.
        pic.write(port: 0x20, value: 0x20)
        pic.write(port: 0x21, value: 0x04)
        pic.setIRQ(12, level: true)
        XCTAssertFalse(pic.hasInterrupt)
        pic.write(port: 0x21, value: 0x00)
        XCTAssertEqual(pic.acknowledge(), 0x2C)
        XCTAssertEqual(pic.registers.isr, 0x1004, "IR2 on the master and IRQ 12 on the slave")
    }

    func testEdgeNeedsNewEdgeAndLevelFollowsLine() {
        let pic = initialized()
        pic.setIRQ(4, level: true)
        XCTAssertEqual(pic.acknowledge(), 0x24)
        pic.write(port: 0x20, value: 0x20)
        XCTAssertFalse(pic.hasInterrupt, "an edge line held high does not interrupt again")
        pic.setIRQ(4, level: false)
        pic.setIRQ(4, level: true)
        XCTAssertEqual(pic.pendingVector, 0x24)
        _ = pic.acknowledge()
        pic.write(port: 0x20, value: 0x20)

        pic.write(port: 0x4D1, value: 0x0C)    // IRQ 10, 11 level-triggered
        XCTAssertEqual(pic.read(port: 0x4D1), 0x0C)
        pic.setIRQ(11, level: true)
        XCTAssertEqual(pic.acknowledge(), 0x2B)
        pic.write(port: 0xA0, value: 0x20)
        pic.write(port: 0x20, value: 0x20)
        XCTAssertEqual(pic.pendingVector, 0x2B, "a level line still high requests again after EOI")
        pic.setIRQ(11, level: false)
        XCTAssertFalse(pic.hasInterrupt)
        pic.write(port: 0x4D0, value: 0xFF)
        XCTAssertEqual(pic.read(port: 0x4D0), 0xF8, "IRQ 0-2 cannot be level-triggered")
    }

    func testSpuriousAndAutoEOI() {
        let pic = initialized()
        XCTAssertEqual(pic.acknowledge(), 0x27, "INTA with no request yields the spurious IRQ 7")
        XCTAssertEqual(pic.registers.isr, 0)
        pic.write(port: 0x4D1, value: 0x08)    // IRQ 11 level
        pic.setIRQ(11, level: true)
        XCTAssertTrue(pic.hasInterrupt)
        pic.setIRQ(11, level: false)           // request vanishes before INTA
        XCTAssertFalse(pic.hasInterrupt)

        let auto = initialized(autoEOI: true)
        auto.setIRQ(1, level: true)
        XCTAssertEqual(auto.acknowledge(), 0x21)
        XCTAssertEqual(auto.registers.isr, 0, "auto-EOI leaves nothing in service")
        auto.setIRQ(3, level: true)
        XCTAssertEqual(auto.acknowledge(), 0x23)
    }

    func testOutputChangeCallbackAndRotation() {
        let pic = initialized()
        var changes: [Bool] = []
        pic.onOutputChange = { changes.append($0) }
        pic.setIRQ(7, level: true)
        _ = pic.acknowledge()
        XCTAssertEqual(changes, [true, false])
        pic.write(port: 0x20, value: 0xE7)     // rotate on specific EOI 7: IRQ 7 lowest, IRQ 0 highest
        pic.setIRQ(6, level: true)
        pic.setIRQ(0, level: true)
        XCTAssertEqual(pic.acknowledge(), 0x20, "after rotation IRQ 0 is highest")
        pic.write(port: 0x20, value: 0xC4)     // set priority: IRQ 4 lowest, IRQ 5 highest
        pic.write(port: 0x20, value: 0x60)     // EOI IRQ 0
        XCTAssertEqual(pic.acknowledge(), 0x26)
    }
}
