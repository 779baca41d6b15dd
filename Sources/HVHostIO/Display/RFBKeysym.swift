/// X11 keysyms (what RFB key events carry) to PC scancode set 1 make codes (what the
/// VM's input path carries). Shifted characters map to their unshifted key: the client
/// sends the Shift key itself.
enum RFBKeysym {
    static func scancode(_ keysym: UInt32) -> UInt32? {
        if keysym < 0x80, let c = printable[UInt8(keysym)] { return c }
        return special[keysym]
    }

    private static let printable: [UInt8: UInt32] = {
        var t: [UInt8: UInt32] = [:]
        func row(_ keys: String, _ shifted: String, from first: UInt32) {
            for (i, (k, s)) in zip(keys.utf8, shifted.utf8).enumerated() {
                t[k] = first + UInt32(i)
                t[s] = first + UInt32(i)
            }
        }
        row("1234567890-=", "!@#$%^&*()_+", from: 0x02)
        row("qwertyuiop[]", "QWERTYUIOP{}", from: 0x10)
        row("asdfghjkl;'`", "ASDFGHJKL:\"~", from: 0x1E)
        row("\\zxcvbnm,./", "|ZXCVBNM<>?", from: 0x2B)
        t[0x20] = 0x39
        return t
    }()

    private static let special: [UInt32: UInt32] = {
        var t: [UInt32: UInt32] = [
            0xFF08: 0x0E, 0xFF09: 0x0F, 0xFE20: 0x0F, 0xFF0D: 0x1C, 0xFF1B: 0x01,
            0xFFFF: 0xE053, 0xFF50: 0xE047, 0xFF51: 0xE04B, 0xFF52: 0xE048, 0xFF53: 0xE04D,
            0xFF54: 0xE050, 0xFF55: 0xE049, 0xFF56: 0xE051, 0xFF57: 0xE04F, 0xFF63: 0xE052,
            0xFFC8: 0x57, 0xFFC9: 0x58,
            0xFFE1: 0x2A, 0xFFE2: 0x36, 0xFFE3: 0x1D, 0xFFE4: 0xE01D, 0xFFE5: 0x3A,
            0xFFE7: 0xE05B, 0xFFE8: 0xE05C, 0xFFE9: 0x38, 0xFFEA: 0xE038, 0xFE03: 0xE038,
            0xFFEB: 0xE05B, 0xFFEC: 0xE05C, 0xFF67: 0xE05D,
            0xFF7F: 0x45, 0xFF14: 0x46, 0xFF61: 0xE037, 0xFF13: 0xE11D,
            0xFF8D: 0xE01C, 0xFFAA: 0x37, 0xFFAB: 0x4E, 0xFFAD: 0x4A, 0xFFAE: 0x53, 0xFFAF: 0xE035,
        ]
        for i in 0..<10 { t[0xFFBE + UInt32(i)] = 0x3B + UInt32(i) }           // F1-F10
        let keypad: [UInt32] = [0x52, 0x4F, 0x50, 0x51, 0x4B, 0x4C, 0x4D, 0x47, 0x48, 0x49]
        for (i, c) in keypad.enumerated() { t[0xFFB0 + UInt32(i)] = c }         // KP_0-KP_9
        return t
    }()
}
