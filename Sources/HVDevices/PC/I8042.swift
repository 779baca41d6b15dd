/// Intel 8042 keyboard controller at ports 0x60 (data) and 0x64 (status / command),
/// with enough of a keyboard behind it for firmware and Linux to probe it. No keys are
/// ever pressed; no mouse is attached (the auxiliary port answers NAK).
///
/// Controller commands: 0x20 read / 0x60 write command byte, 0xA7/0xA8 disable/enable
/// aux, 0xA9 aux interface test, 0xAA self-test (0x55), 0xAB keyboard interface test
/// (0x00), 0xAD/0xAE disable/enable keyboard, 0xC0 input port, 0xD0/0xD1 output port
/// (A20, reset line), 0xD2/0xD3 write keyboard/aux output buffer, 0xD4 write to aux,
/// 0xDD/0xDF A20, 0xE0 test inputs, 0xF0-0xFF pulse output lines (bit 0 clear = reset).
/// Keyboard commands: 0xFF reset (0xFA 0xAA), 0xF2 identify, 0xEE echo, 0xED / 0xF3 /
/// 0xF0 with their parameter, others acknowledged with 0xFA.
///
/// Not thread-safe: the owner (``Chipset``) serialises every call.
final class I8042 {
    static let outputCapacity = 16

    var commandByte: UInt8 = 0x47      // kbd IRQ, aux IRQ, system flag, translation
    var outputPort: UInt8 = 0x03       // reset line high (inactive), A20 enabled
    var lastWasCommand = true
    var pendingCommand: UInt8?         // controller command waiting for its data byte
    var keyboardPending: UInt8?        // keyboard command waiting for its parameter
    var output: [(byte: UInt8, aux: Bool)] = []
    var lastRead: UInt8 = 0
    var irq1Level = false
    var irq12Level = false

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
        keyboardPending = nil
        output.removeAll(keepingCapacity: true)
        updateIRQ()
    }

    /// Whether the guest left gate A20 enabled (informational; memory is not wrapped).
    var a20Enabled: Bool { outputPort & 0x02 != 0 }

    private func enqueue(_ byte: UInt8, aux: Bool = false) {
        guard output.count < Self.outputCapacity else { return }
        output.append((byte, aux))
        updateIRQ()
    }

    private var status: UInt8 {
        var s: UInt8 = 0x10                               // keyboard not inhibited
        if let head = output.first {
            s |= 0x01
            if head.aux { s |= 0x20 }
        }
        if commandByte & 0x04 != 0 { s |= 0x04 }          // system flag
        if lastWasCommand { s |= 0x08 }
        return s
    }

    private func updateIRQ() {
        let head = output.first
        let kbd = head.map { !$0.aux } ?? false && commandByte & 0x01 != 0
        let aux = head.map { $0.aux } ?? false && commandByte & 0x02 != 0
        if kbd != irq1Level { irq1Level = kbd; irqLine(1, kbd) }
        if aux != irq12Level { irq12Level = aux; irqLine(12, aux) }
    }

    /// Ports 0x60 and 0x64. Unknown ports read 0xFF.
    func read(port: UInt16) -> UInt8 {
        switch port {
        case 0x60:
            if !output.isEmpty {
                lastRead = output.removeFirst().byte
                // Drop the line, then raise it again for the next byte: one edge per byte.
                if irq1Level { irq1Level = false; irqLine(1, false) }
                if irq12Level { irq12Level = false; irqLine(12, false) }
                updateIRQ()
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
                keyboardWrite(value)
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
            if let head = output.first { v |= head.aux ? 0x20 : 0x10 }
            enqueue(v)
        case 0xDD: outputPort &= ~0x02
        case 0xDF: outputPort |= 0x02
        case 0xE0: enqueue(0x00)
        case 0xF0...0xFF:
            if command & 0x01 == 0 { resetRequest() }      // pulse of the reset line
        default:
            break
        }
        updateIRQ()
    }

    private func writeCommandData(_ command: UInt8, _ value: UInt8) {
        switch command {
        case 0x60:
            commandByte = value
            updateIRQ()
        case 0xD1:
            outputPort = value
            if value & 0x01 == 0 { resetRequest() }
        case 0xD2: enqueue(value)
        case 0xD3: enqueue(value, aux: true)
        case 0xD4: enqueue(0xFE, aux: true)                // no mouse: NAK
        default: break
        }
    }

    private func keyboardWrite(_ value: UInt8) {
        if let command = keyboardPending {
            keyboardPending = nil
            switch command {
            case 0xF0 where value == 0:
                enqueue(0xFA); enqueue(0x02)               // current scan code set
            default:
                enqueue(0xFA)
            }
            return
        }
        switch value {
        case 0xFF:
            enqueue(0xFA); enqueue(0xAA)
        case 0xF2:
            enqueue(0xFA); enqueue(0xAB); enqueue(0x83)
        case 0xEE:
            enqueue(0xEE)
        case 0xED, 0xF3, 0xF0:
            keyboardPending = value
            enqueue(0xFA)
        case 0xF4, 0xF5, 0xF6, 0xF7, 0xF8, 0xF9, 0xFA, 0xFB, 0xFE:
            enqueue(0xFA)
        default:
            enqueue(0xFE)                                  // resend: unknown command
        }
    }
}
