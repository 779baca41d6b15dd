/// A PS/2 keyboard (MF2) behind the 8042's first port. It speaks scan code set 2 by
/// default (set 1 on request); the controller translates set 2 to set 1 when its command
/// byte asks for it. Keys arrive as set-1 make codes (the host's input path) and leave
/// as bytes of the current set.
///
/// Commands: 0xED LEDs, 0xEE echo, 0xF0 get/set scan code set (1 and 2; 3 is refused
/// with 0xFE), 0xF2 identify (AB 83), 0xF3 typematic rate/delay, 0xF4 enable,
/// 0xF5 disable + defaults, 0xF6 defaults, 0xF7-0xFD (set-3 key modes) acknowledged,
/// 0xFE resend, 0xFF reset (FA AA). Unknown bytes get 0xFE.
///
/// Not thread-safe: the 8042 (and through it the chipset) serialises every call.
final class PS2Keyboard {
    /// Bytes the keyboard holds for the controller; beyond this a key is dropped and
    /// the overrun code queued once, as a real keyboard's buffer does.
    static let queueCapacity = 64

    var queue: [UInt8] = []
    var scancodeSet: UInt8 = 2
    var scanning = true
    /// Scroll (bit 0), Num (bit 1) and Caps (bit 2) Lock.
    var leds: UInt8 = 0
    /// Bits 4..0 repeat rate, 6..5 delay (0x2B: 10.9 cps after 500 ms).
    var typematic: UInt8 = 0x2B
    var pendingCommand: UInt8?
    var lastSent: UInt8 = 0xFA

    func reset() {
        queue.removeAll(keepingCapacity: true)
        pendingCommand = nil
        setDefaults()
        scanning = true
        leds = 0
    }

    private func setDefaults() {
        scancodeSet = 2
        typematic = 0x2B
    }

    /// The next byte for the controller, if any.
    func take() -> UInt8? {
        guard !queue.isEmpty else { return nil }
        let b = queue.removeFirst()
        lastSent = b
        return b
    }

    private func reply(_ bytes: UInt8...) {
        for b in bytes where queue.count < Self.queueCapacity { queue.append(b) }
    }

    /// A key from the host (a set-1 make code, `Scancode`). False while the guest has
    /// scanning disabled (the key is not taken).
    func key(_ code: UInt32, pressed: Bool) -> Bool {
        guard scanning else { return false }
        let bytes = Self.sequence(code, pressed: pressed, set: scancodeSet)
        guard !bytes.isEmpty else { return true }
        if queue.count + bytes.count <= Self.queueCapacity - 1 {
            queue.append(contentsOf: bytes)
        } else if queue.last != overrunCode, queue.count < Self.queueCapacity {
            queue.append(overrunCode)
        }
        return true
    }

    var overrunCode: UInt8 { scancodeSet == 1 ? 0xFF : 0x00 }

    /// A byte the guest wrote to the keyboard (port 0x60 without a controller command).
    func write(_ value: UInt8) {
        if let command = pendingCommand {
            pendingCommand = nil
            // A command byte where a parameter belongs starts that command instead.
            if value < 0xED || command == 0xF3 && value < 0x80 {
                parameter(command, value)
                return
            }
        }
        switch value {
        case 0xED, 0xF3:
            pendingCommand = value
            reply(0xFA)
        case 0xF0:
            pendingCommand = value
            reply(0xFA)
        case 0xEE:
            reply(0xEE)
        case 0xF2:
            reply(0xFA, 0xAB, 0x83)
        case 0xF4:
            queue.removeAll(keepingCapacity: true)
            scanning = true
            reply(0xFA)
        case 0xF5:
            queue.removeAll(keepingCapacity: true)
            setDefaults()
            scanning = false
            reply(0xFA)
        case 0xF6:
            queue.removeAll(keepingCapacity: true)
            setDefaults()
            scanning = true
            reply(0xFA)
        case 0xF7...0xFD:
            reply(0xFA)
        case 0xFE:
            reply(lastSent)
        case 0xFF:
            reset()
            reply(0xFA, 0xAA)
        default:
            reply(0xFE)
        }
    }

    private func parameter(_ command: UInt8, _ value: UInt8) {
        switch command {
        case 0xED:
            leds = value & 0x07
            reply(0xFA)
        case 0xF3:
            typematic = value & 0x7F
            reply(0xFA)
        case 0xF0:
            switch value {
            case 0: reply(0xFA, scancodeSet)
            case 1, 2:
                scancodeSet = value
                reply(0xFA)
            default:
                reply(0xFE)
            }
        default:
            reply(0xFE)
        }
    }

    /// The bytes set 1 or set 2 sends for a key given as a set-1 make code.
    static func sequence(_ code: UInt32, pressed: Bool, set: UInt8) -> [UInt8] {
        if code == Scancode8042.pause {
            return set == 1 ? [0xE1, 0x1D, 0x45, 0xE1, 0x9D, 0xC5]
                            : [0xE1, 0x14, 0x77, 0xE1, 0xF0, 0x14, 0xF0, 0x77]
        }
        let extended = code >> 8 == 0xE0
        let make = UInt8(code & 0x7F)
        var out: [UInt8] = extended ? [0xE0] : []
        if set == 1 {
            out.append(pressed ? make : make | 0x80)
        } else {
            let code2 = Scancode8042.set1ToSet2[Int(make)]
            guard code2 != 0 else { return [] }
            if !pressed { out.append(0xF0) }
            out.append(code2)
        }
        return out
    }
}

/// The 8042's set 2 → set 1 translation (command byte bit 6), and its inverse for
/// make codes.
enum Scancode8042 {
    static let pause: UInt32 = 0xE11D

    /// Set-2 byte → set-1 byte; bytes from 0x88 up pass through unchanged.
    static let translation: [UInt8] = {
        let head: [UInt8] = [
            0xFF, 0x43, 0x41, 0x3F, 0x3D, 0x3B, 0x3C, 0x58, 0x64, 0x44, 0x42, 0x40, 0x3E, 0x0F, 0x29, 0x59,
            0x65, 0x38, 0x2A, 0x70, 0x1D, 0x10, 0x02, 0x5A, 0x66, 0x71, 0x2C, 0x1F, 0x1E, 0x11, 0x03, 0x5B,
            0x67, 0x2E, 0x2D, 0x20, 0x12, 0x05, 0x04, 0x5C, 0x68, 0x39, 0x2F, 0x21, 0x14, 0x13, 0x06, 0x5D,
            0x69, 0x31, 0x30, 0x23, 0x22, 0x15, 0x07, 0x5E, 0x6A, 0x72, 0x32, 0x24, 0x16, 0x08, 0x09, 0x5F,
            0x6B, 0x33, 0x25, 0x17, 0x18, 0x0B, 0x0A, 0x60, 0x6C, 0x34, 0x35, 0x26, 0x27, 0x19, 0x0C, 0x61,
            0x6D, 0x73, 0x28, 0x74, 0x1A, 0x0D, 0x62, 0x6E, 0x3A, 0x36, 0x1C, 0x1B, 0x75, 0x2B, 0x63, 0x76,
            0x55, 0x56, 0x77, 0x78, 0x79, 0x7A, 0x0E, 0x7B, 0x7C, 0x4F, 0x7D, 0x4B, 0x47, 0x7E, 0x7F, 0x6F,
            0x52, 0x53, 0x50, 0x4C, 0x4D, 0x48, 0x01, 0x45, 0x57, 0x4E, 0x51, 0x4A, 0x37, 0x49, 0x46, 0x54,
            0x80, 0x81, 0x82, 0x41, 0x54, 0x85, 0x86, 0x87,
        ]
        return head + (head.count..<256).map { UInt8($0) }
    }()

    /// Set-1 make code (0x00-0x7F) → set-2 code; 0 where set 2 has none. Where two
    /// set-2 codes translate to one set-1 code, the standard MF2 one (the later) wins.
    static let set1ToSet2: [UInt8] = {
        var inverse = [UInt8](repeating: 0, count: 128)
        for code2 in 1...0x84 {
            let code1 = translation[code2]
            if code1 < 0x80 { inverse[Int(code1)] = UInt8(code2) }
        }
        return inverse
    }()
}
