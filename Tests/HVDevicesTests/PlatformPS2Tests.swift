import XCTest
@testable import HVDevices
import HVSupport

/// The 8042 with its PS/2 keyboard and mouse, and the VMware absolute pointer: the
/// byte sequences a guest driver sees on ports 0x60/0x64 and the IRQ edges.
final class PlatformPS2Tests: XCTestCase {
    private final class Controller {
        let c = I8042()
        var irqs: [String] = []
        init() {
            c.irqLine = { [unowned self] irq, level in irqs.append("\(irq)\(level ? "+" : "-")") }
            c.reset()
            irqs.removeAll()
        }
        func drain() -> [UInt8] {
            var out: [UInt8] = []
            while c.read(port: 0x64) & 0x01 != 0, out.count < 1000 { out.append(c.read(port: 0x60)) }
            return out
        }
        func command(_ v: UInt8) { c.write(port: 0x64, value: v) }
        func data(_ v: UInt8) { c.write(port: 0x60, value: v) }
        func aux(_ v: UInt8) { command(0xD4); data(v) }
        var status: UInt8 { c.read(port: 0x64) }
    }

    func testKeysInSet2TranslatedToSet1ByDefault() {
        let k = Controller()
        XCTAssertTrue(k.c.key(0x1E, pressed: true))               // A
        XCTAssertEqual(k.irqs, ["1+"])
        XCTAssertTrue(k.c.key(0x1E, pressed: false))
        XCTAssertTrue(k.c.key(0xE048, pressed: true))             // cursor up
        XCTAssertTrue(k.c.key(0xE048, pressed: false))
        XCTAssertEqual(k.drain(), [0x1E, 0x9E, 0xE0, 0x48, 0xE0, 0xC8])
        XCTAssertTrue(k.c.key(0x1D, pressed: true))               // Pause
        XCTAssertTrue(k.c.key(0xE11D, pressed: true))
        XCTAssertEqual(k.drain(), [0x1D, 0xE1, 0x1D, 0x45, 0xE1, 0x9D, 0xC5])
    }

    func testRawSet2WithoutTranslationAndSet1OnRequest() {
        let k = Controller()
        k.command(0x60); k.data(0x07)                                // translation off
        k.c.key(0x1E, pressed: true); k.c.key(0x1E, pressed: false)
        k.c.key(0x41, pressed: true)                                 // F7 is 0x83 in set 2
        k.c.key(0xE048, pressed: false)
        XCTAssertEqual(k.drain(), [0x1C, 0xF0, 0x1C, 0x83, 0xE0, 0xF0, 0x75])
        k.data(0xF0); k.data(0x00)
        XCTAssertEqual(k.drain(), [0xFA, 0xFA, 0x02], "current set is 2")
        k.data(0xF0); k.data(0x01)
        k.data(0xF0); k.data(0x00)
        XCTAssertEqual(k.drain(), [0xFA, 0xFA, 0xFA, 0xFA, 0x01])
        k.c.key(0x1E, pressed: false)
        XCTAssertEqual(k.drain(), [0x9E])
        k.data(0xF0); k.data(0x03)
        XCTAssertEqual(k.drain(), [0xFA, 0xFE], "set 3 refused")
        // With translation on, set-2 replies pass through the table too (ID AB 83 → AB 41).
        k.command(0x60); k.data(0x47)
        k.data(0xF2)
        XCTAssertEqual(k.drain(), [0xFA, 0xAB, 0x41])
    }

    func testKeyboardCommands() {
        let k = Controller()
        k.data(0xED); k.data(0x07)
        XCTAssertEqual(k.c.keyboard.leds, 7)
        k.data(0xF3); k.data(0x7F)
        XCTAssertEqual(k.c.keyboard.typematic, 0x7F)
        k.data(0xEE)
        k.data(0x42)                                                 // unknown
        XCTAssertEqual(k.drain(), [0xFA, 0xFA, 0xFA, 0xFA, 0xEE, 0xFE])
        k.data(0xF5)
        XCTAssertFalse(k.c.key(0x1E, pressed: true), "not scanning: not taken")
        k.data(0xF4)
        XCTAssertTrue(k.c.key(0x1E, pressed: true))
        XCTAssertEqual(k.drain(), [0xFA, 0xFA, 0x1E])
        k.data(0xED); k.data(0xF4)                                   // a command where the LEDs belong
        XCTAssertEqual(k.drain(), [0xFA, 0xFA])
        k.data(0xFF)
        XCTAssertEqual(k.drain(), [0xFA, 0xAA])
        XCTAssertEqual(k.c.keyboard.leds, 0)
    }

    func testKeyboardQueueIsBoundedWithOneOverrunCode() {
        let k = Controller()
        k.command(0x60); k.data(0x07)
        for _ in 0..<1000 { _ = k.c.key(0x1E, pressed: true) }
        let bytes = k.drain()
        XCTAssertLessThanOrEqual(bytes.count, PS2Keyboard.queueCapacity + 1)
        XCTAssertEqual(bytes.last, 0x00, "set-2 overrun code")
        XCTAssertEqual(bytes.filter { $0 == 0 }.count, 1)
    }

    func testDisabledKeyboardPortHoldsBytes() {
        let k = Controller()
        k.command(0xAD)
        k.c.key(0x1E, pressed: true)
        XCTAssertEqual(k.status & 0x01, 0)
        k.command(0xAE)
        XCTAssertEqual(k.drain(), [0x1E])
    }

    func testMouseResetIdentifyStreamAndPackets() {
        let k = Controller()
        XCTAssertFalse(k.c.mouseMotion(dx: 5, dy: 0, wheel: 0, buttons: 0), "not enabled yet")
        k.aux(0xFF)
        XCTAssertEqual(k.status & 0x20, 0x20, "aux byte")
        XCTAssertEqual(k.drain(), [0xFA, 0xAA, 0x00])
        XCTAssertTrue(k.irqs.contains("12+"))
        k.aux(0xF2)
        XCTAssertEqual(k.drain(), [0xFA, 0x00])
        k.aux(0xF4)
        XCTAssertEqual(k.drain(), [0xFA])
        XCTAssertTrue(k.c.mouseMotion(dx: 5, dy: 3, wheel: 0, buttons: 0x01))
        XCTAssertEqual(k.drain(), [0x29, 0x05, 0xFD], "left, y up-positive: -3")
        XCTAssertTrue(k.c.mouseMotion(dx: -300, dy: 0, wheel: 0, buttons: 0x01))
        XCTAssertEqual(k.drain(), [0x19, 0x01, 0x00, 0x19, 0xD3, 0x00], "split into ±255 packets")
        XCTAssertTrue(k.c.mouseMotion(dx: 0, dy: 0, wheel: 0, buttons: 0))
        XCTAssertEqual(k.drain(), [0x08, 0x00, 0x00], "button release alone")
    }

    func testMouseIntelliMouseKnockStatusScalingWrap() {
        let k = Controller()
        for rate: UInt8 in [200, 100, 80] { k.aux(0xF3); k.aux(rate) }
        k.aux(0xF2)
        XCTAssertEqual(k.drain(), [0xFA, 0xFA, 0xFA, 0xFA, 0xFA, 0xFA, 0xFA, 0x03])
        k.aux(0xF3); k.aux(55)
        k.aux(0xE8); k.aux(9)
        XCTAssertEqual(k.drain(), [0xFA, 0xFE, 0xFA, 0xFE], "bad rate and resolution refused")
        k.aux(0xE7); k.aux(0xE8); k.aux(0x03); k.aux(0xF4)
        k.aux(0xE9)
        XCTAssertEqual(k.drain(), [0xFA, 0xFA, 0xFA, 0xFA, 0xFA, 0x30, 0x03, 80])
        XCTAssertTrue(k.c.mouseMotion(dx: 4, dy: 0, wheel: 1, buttons: 0))
        XCTAssertEqual(k.drain(), [0x08, 0x06, 0x00, 0xFF], "2:1 scaling, 4-byte packet, wheel up = -1")
        k.aux(0xEE); k.aux(0x12); k.aux(0xEC)
        XCTAssertEqual(k.drain(), [0xFA, 0x12, 0xFA], "wrap echoes until EC")
        k.aux(0xF0); k.aux(0xEB)
        XCTAssertEqual(k.drain(), [0xFA, 0xFA, 0x08, 0x00, 0x00, 0x00], "remote mode read")
    }

    func testMouseQueueBoundedAndAccumulates() {
        let k = Controller()
        k.aux(0xF4); _ = k.drain()
        for _ in 0..<500 { _ = k.c.mouseMotion(dx: 1, dy: 0, wheel: 0, buttons: 0) }
        XCTAssertLessThanOrEqual(k.c.mouse.queue.count, PS2Mouse.queueCapacity)
        let bytes = k.drain()
        XCTAssertEqual(bytes.count % 3, 0, "whole packets only")
        var total = 0
        for i in stride(from: 0, to: bytes.count, by: 3) {
            XCTAssertEqual(bytes[i] & 0x08, 0x08)
            total += Int(bytes[i + 1]) - (bytes[i] & 0x10 != 0 ? 256 : 0)
        }
        XCTAssertEqual(total, 500, "no motion lost")
    }

    func testKeyboardComesBeforeMouseAndAuxDisable() {
        let k = Controller()
        k.aux(0xF4); _ = k.drain()
        k.command(0xA7)
        k.c.mouseMotion(dx: 1, dy: 0, wheel: 0, buttons: 0)
        k.c.key(0x1E, pressed: true)
        XCTAssertEqual(k.drain(), [0x1E], "aux port disabled")
        k.command(0xA8)
        XCTAssertEqual(k.drain(), [0x08, 0x01, 0x00])
    }

    func testVMMouseProtocol() {
        let v = VMMouse()
        XCTAssertEqual(v.readStatus(), 0xFFFF_0000, "disabled")
        XCTAssertFalse(v.pointer(x: 1, y: 2, wheel: 0, buttons: 0))
        v.command(VMMouse.Request.enable)
        XCTAssertEqual(v.readStatus(), 1)
        XCTAssertEqual(v.read(count: 1), [VMMouse.version])
        XCTAssertFalse(v.pointer(x: 1, y: 2, wheel: 0, buttons: 0), "relative until asked")
        v.command(VMMouse.Request.absolute)
        XCTAssertTrue(v.pointer(x: 0x8000, y: 0x4000, wheel: 1, buttons: 0x03))
        XCTAssertEqual(v.readStatus(), 4)
        XCTAssertEqual(v.read(count: 4), [0x30, 0x8000, 0x4000, 0xFF])
        XCTAssertNil(v.read(count: 4), "more than queued")
        XCTAssertEqual(v.readStatus() >> 16, 0xFFFF, "error status after a bad read")
        v.command(VMMouse.Request.enable)
        v.command(VMMouse.Request.absolute)
        XCTAssertNil(v.read(count: 7), "above six registers")
        v.command(VMMouse.Request.enable)
        v.command(VMMouse.Request.absolute)
        _ = v.read(count: 1)
        for _ in 0..<1000 { XCTAssertTrue(v.pointer(x: 1, y: 1, wheel: 0, buttons: 0)) }
        XCTAssertEqual(Int(v.readStatus() & 0xFFFF), VMMouse.queueCapacity, "bounded")
        v.command(VMMouse.Request.disable)
        XCTAssertEqual(v.readStatus(), 0xFFFF_0000)
    }

    func testSaveRestoreKeepsDeviceState() throws {
        let k = Controller()
        k.aux(0xF4); k.data(0xED); k.data(0x05); _ = k.drain()
        k.c.key(0x1E, pressed: true)
        k.c.mouseMotion(dx: 2, dy: 0, wheel: 0, buttons: 0)
        var e = StateEncoder()
        k.c.save(to: &e)
        let r = Controller()
        var d = StateDecoder(e.bytes, context: "test")
        try r.c.load(from: &d, version: Chipset.stateVersion)
        XCTAssertEqual(r.c.keyboard.leds, 5)
        XCTAssertTrue(r.c.mouse.enabled)
        XCTAssertEqual(r.drain(), [0x1E, 0x08, 0x02, 0x00])
    }
}

/// The absolute pointer through the chipset's backdoor, as a guest driver calls it.
final class PlatformVMMouseBackdoorTests: XCTestCase {
    private func call(_ chipset: Chipset, _ command: UInt16, _ ebx: UInt32 = 0) -> BackdoorRegisters {
        var r = BackdoorRegisters(rax: UInt64(VMwareBackdoor.magic), rbx: UInt64(ebx), rcx: UInt64(command), rdx: 0x5658)
        XCTAssertTrue(chipset.backdoor.call(vcpu: 0, registers: &r))
        return r
    }

    func testEnableReadVersionThenAbsolutePacketsNudgeTheMouse() throws {
        let m = try PlatformTestMachine()
        let c = m.chipset
        XCTAssertFalse(c.pointerAbsolute(x: 10, y: 10, wheel: 0, buttons: 0))
        XCTAssertEqual(call(c, VMMouse.Command.status).rax, 0xFFFF_0000)
        _ = call(c, VMMouse.Command.command, VMMouse.Request.enable)
        XCTAssertEqual(call(c, VMMouse.Command.status).rax, 1)
        XCTAssertEqual(call(c, VMMouse.Command.data, 1).rax, UInt64(VMMouse.version))
        _ = call(c, VMMouse.Command.command, VMMouse.Request.absolute)
        m.out(0x64, 0xD4); m.out(0x60, 0xF4)                      // the PS/2 side enabled
        XCTAssertEqual(m.inb(0x60), 0xFA)
        XCTAssertTrue(c.pointerAbsolute(x: 0x1234, y: 0xFFFF, wheel: 0, buttons: 1))
        XCTAssertEqual(m.inb(0x64) & 0x21, 0x21, "a PS/2 packet signals the queue")
        XCTAssertEqual([m.inb(0x60), m.inb(0x60), m.inb(0x60)], [0x08, 0x00, 0x00])
        XCTAssertEqual(call(c, VMMouse.Command.status).rax, 4)
        let r = call(c, VMMouse.Command.data, 4)
        XCTAssertEqual([r.rax, r.rbx, r.rcx, r.rdx], [0x20, 0x1234, 0xFFFF, 0])
        let bad = call(c, VMMouse.Command.data, 5)
        XCTAssertEqual(bad.rax, UInt64(VMwareBackdoor.magic), "more than queued: registers untouched")
        XCTAssertEqual(call(c, VMMouse.Command.status).rax >> 16, 0xFFFF)
    }
}
