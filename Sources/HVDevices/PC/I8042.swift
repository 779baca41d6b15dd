/// Intel 8042 keyboard controller at ports 0x60 (data) and 0x64 (status / command),
/// with a PS/2 keyboard (``PS2Keyboard``) on its first port and a PS/2 mouse
/// (``PS2Mouse``) on its auxiliary port.
///
/// Like the real part it has one output byte: it latches the next byte from its own
/// replies, else the keyboard, else the mouse, and raises IRQ 1 or IRQ 12 for it (when
/// the command byte enables that interrupt); a disabled port's bytes wait in the device.
/// With command byte bit 6 set, keyboard bytes pass through the set 2 → set 1
/// translation (a 0xF0 prefix becomes bit 7 of the next byte).
///
/// Controller commands: 0x20 read / 0x60 write command byte, 0xA7/0xA8 disable/enable
/// aux, 0xA9 aux interface test, 0xAA self-test (0x55), 0xAB keyboard interface test
/// (0x00), 0xAD/0xAE disable/enable keyboard, 0xC0 input port, 0xD0/0xD1 output port
/// (A20, reset line), 0xD2/0xD3 write keyboard/aux output buffer, 0xD4 write to aux,
/// 0xDD/0xDF A20, 0xE0 test inputs, 0xF0-0xFF pulse output lines (bit 0 clear = reset).
///
/// Not thread-safe: the owner (``Chipset``) serialises every call.
final class I8042 {
    static let outputCapacity = 16

    var commandByte: UInt8 = 0x47      // kbd IRQ, aux IRQ, system flag, translation
    var outputPort: UInt8 = 0x03       // reset line high (inactive), A20 enabled
    var lastWasCommand = true
    var pendingCommand: UInt8?         // controller command waiting for its data byte
    /// The controller's own replies, ahead of the devices' bytes.
    var output: [(byte: UInt8, aux: Bool)] = []
    /// The byte in the output buffer (status bit 0), with its source.
    var latched: (byte: UInt8, aux: Bool)?
    /// Translation saw 0xF0: the next translated byte is a break.
    var translateBreak = false
    var lastRead: UInt8 = 0
    var irq1Level = false
    var irq12Level = false
    let keyboard = PS2Keyboard()
    let mouse = PS2Mouse()

    /// Drives ISA IRQ 1 / IRQ 12.
    var irqLine: (_ irq: Int, _ level: Bool) -> Void = { _, _ in }
    /// The guest pulsed the CPU reset line.
    var resetRequest: () -> Void = {}

    init() {}

    func reset() {
        commandByte = 0x47
        outputPort = 0x03
        lastWasCommand = true
        pendingCommand = nil
        output.removeAll(keepingCapacity: true)
        latched = nil
        translateBreak = false
        keyboard.reset()
        mouse.reset()
        updateIRQ()
    }

    /// Whether the guest left gate A20 enabled (informational; memory is not wrapped).
    var a20Enabled: Bool { outputPort & 0x02 != 0 }

    private var translating: Bool { commandByte & 0x40 != 0 }

    // MARK: input from the host

    /// A key as a set-1 make code; false while the keyboard does not scan.
    func key(_ code: UInt32, pressed: Bool) -> Bool {
        defer { refill() }
        return keyboard.key(code, pressed: pressed)
    }

    /// Relative motion; false while the guest has not enabled the mouse.
    func mouseMotion(dx: Int, dy: Int, wheel: Int, buttons: UInt8) -> Bool {
        defer { refill() }
        return mouse.motion(dx: dx, dy: dy, wheel: wheel, buttons: buttons)
    }

    /// A packet that reports nothing new, so the guest's mouse driver runs: the
    /// VMware absolute pointer signals its queue this way.
    func mouseNudge() {
        mouse.nudge()
        refill()
    }

    private func enqueue(_ byte: UInt8, aux: Bool = false) {
        guard output.count < Self.outputCapacity else { return }
        output.append((byte, aux))
        refill()
    }

    /// Latches the next byte when the output buffer is empty.
    private func refill() {
        while latched == nil {
            if !output.isEmpty {
                latched = output.removeFirst()
            } else if commandByte & 0x10 == 0, let b = keyboard.take() {
                guard translating else { latched = (b, false); break }
                if b == 0xF0 { translateBreak = true; continue }
                latched = (Scancode8042.translation[Int(b)] | (translateBreak ? 0x80 : 0), false)
                translateBreak = false
            } else if commandByte & 0x20 == 0, let b = mouse.take() {
                latched = (b, true)
            } else {
                break
            }
        }
        updateIRQ()
    }

    private var status: UInt8 {
        var s: UInt8 = 0x10                               // keyboard not inhibited
        if let head = latched {
            s |= 0x01
            if head.aux { s |= 0x20 }
        }
        if commandByte & 0x04 != 0 { s |= 0x04 }          // system flag
        if lastWasCommand { s |= 0x08 }
        return s
    }

    private func updateIRQ() {
        let kbd = latched.map { !$0.aux } ?? false && commandByte & 0x01 != 0
        let aux = latched.map { $0.aux } ?? false && commandByte & 0x02 != 0
        if kbd != irq1Level { irq1Level = kbd; irqLine(1, kbd) }
        if aux != irq12Level { irq12Level = aux; irqLine(12, aux) }
    }

    /// Ports 0x60 and 0x64. Unknown ports read 0xFF.
    func read(port: UInt16) -> UInt8 {
        switch port {
        case 0x60:
            if let head = latched {
                lastRead = head.byte
                latched = nil
                // Drop the line, then raise it again for the next byte: one edge per byte.
                if irq1Level { irq1Level = false; irqLine(1, false) }
                if irq12Level { irq12Level = false; irqLine(12, false) }
                refill()
            }
            return lastRead
        case 0x64:
            return status
        default:
            return 0xFF
        }
    }

    func write(port: UInt16, value: UInt8) {
        switch port {
        case 0x60:
            lastWasCommand = false
            if let command = pendingCommand {
                pendingCommand = nil
                writeCommandData(command, value)
            } else {
                // Writing to the keyboard enables its interface, as on real controllers.
                commandByte &= ~0x10
                keyboard.write(value)
                refill()
            }
        case 0x64:
            lastWasCommand = true
            controllerCommand(value)
        default:
            break
        }
    }

    private func controllerCommand(_ command: UInt8) {
        pendingCommand = nil
        switch command {
        case 0x20: enqueue(commandByte)
        case 0x60, 0xD1, 0xD2, 0xD3, 0xD4: pendingCommand = command
        case 0xA7: commandByte |= 0x20
        case 0xA8: commandByte &= ~0x20
        case 0xA9: enqueue(0x00)
        case 0xAA:
            commandByte |= 0x04
            enqueue(0x55)
        case 0xAB: enqueue(0x00)
        case 0xAD: commandByte |= 0x10
        case 0xAE: commandByte &= ~0x10
        case 0xC0: enqueue(0x80)                           // input port: keyboard not locked
        case 0xD0:
            var v = outputPort & 0x03
            if let head = latched { v |= head.aux ? 0x20 : 0x10 }
            enqueue(v)
        case 0xDD: outputPort &= ~0x02
        case 0xDF: outputPort |= 0x02
        case 0xE0: enqueue(0x00)
        case 0xF0...0xFF:
            if command & 0x01 == 0 { resetRequest() }      // pulse of the reset line
        default:
            break
        }
        refill()
    }

    private func writeCommandData(_ command: UInt8, _ value: UInt8) {
        switch command {
        case 0x60:
            commandByte = value
        case 0xD1:
            outputPort = value
            if value & 0x01 == 0 { resetRequest() }
        case 0xD2: enqueue(value)
        case 0xD3: enqueue(value, aux: true)
        case 0xD4:
            commandByte &= ~0x20                           // as real controllers: enables aux
            mouse.write(value)
        default: break
        }
        refill()
    }
}
