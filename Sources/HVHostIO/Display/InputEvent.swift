/// Why an input event was refused before reaching any device.
struct InputError: Error, CustomStringConvertible, Equatable {
    let message: String
    var description: String { message }
}

/// Keyboard scancodes as the input path carries them: PC scancode set 1 make codes.
enum Scancode {
    /// 0x01...0x7F, 0xE001...0xE07F (E0-prefixed keys) and `pause`.
    static func isValid(_ code: UInt32) -> Bool {
        (0x01...0x7F).contains(code) || (0xE001...0xE07F).contains(code) || code == pause
    }

    /// Pause (E1 1D 45): a press only.
    static let pause: UInt32 = 0xE11D
}

/// Buttons held (raw values equal `HV_BUTTON_*`).
package struct PointerButtons: OptionSet, Sendable, Hashable {
    package let rawValue: UInt32
    package init(rawValue: UInt32) { self.rawValue = rawValue }

    static let left = PointerButtons(rawValue: 0x01)
    static let right = PointerButtons(rawValue: 0x02)
    static let middle = PointerButtons(rawValue: 0x04)
    static let side = PointerButtons(rawValue: 0x08)
    static let extra = PointerButtons(rawValue: 0x10)
    static let all: PointerButtons = [.left, .right, .middle, .side, .extra]
}

/// One pointer event, validated when made.
package struct PointerEvent: Equatable, Sendable {
    /// Raw values equal `HV_POINTER_*`.
    package enum Kind: UInt32, Sendable {
        /// x, y: 0...0xFFFF across the screen, left to right and top to bottom.
        case absolute = 1
        /// x, y: motion, -32768...32767, y positive downwards.
        case relative = 2
    }

    static let absoluteRange: ClosedRange<Int32> = 0...0xFFFF
    static let relativeRange: ClosedRange<Int32> = -32768...32767
    static let wheelRange: ClosedRange<Int32> = -127...127

    package let kind: Kind
    package let x: Int32
    package let y: Int32
    /// Notches, positive away from the user.
    package let wheel: Int32
    package let buttons: PointerButtons

    init(kind: Kind, x: Int32, y: Int32, wheel: Int32 = 0, buttons: PointerButtons = []) throws(InputError) {
        let range = kind == .absolute ? Self.absoluteRange : Self.relativeRange
        guard range.contains(x), range.contains(y) else {
            throw InputError(message: "\(kind) pointer position (\(x), \(y)) is outside \(range.lowerBound)...\(range.upperBound)")
        }
        guard Self.wheelRange.contains(wheel) else { throw InputError(message: "wheel \(wheel) is outside -127...127") }
        guard PointerButtons.all.isSuperset(of: buttons) else {
            throw InputError(message: "unknown pointer buttons 0x\(String(buttons.rawValue, radix: 16))")
        }
        self.kind = kind
        self.x = x
        self.y = y
        self.wheel = wheel
        self.buttons = buttons
    }
}
