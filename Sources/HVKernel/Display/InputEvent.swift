/// Why an input event was refused before reaching any device.
public struct InputError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public var description: String { message }
}

/// Keyboard scancodes as the input path carries them: PC scancode set 1 make codes.
public enum Scancode {
    /// 0x01...0x7F, 0xE001...0xE07F (E0-prefixed keys) and `pause`.
    public static func isValid(_ code: UInt32) -> Bool {
        (0x01...0x7F).contains(code) || (0xE001...0xE07F).contains(code) || code == pause
    }

    /// Pause (E1 1D 45): a press only.
    public static let pause: UInt32 = 0xE11D
}

/// Buttons held (raw values equal `HV_BUTTON_*`).
public struct PointerButtons: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let left = PointerButtons(rawValue: 0x01)
    public static let right = PointerButtons(rawValue: 0x02)
    public static let middle = PointerButtons(rawValue: 0x04)
    public static let side = PointerButtons(rawValue: 0x08)
    public static let extra = PointerButtons(rawValue: 0x10)
    public static let all: PointerButtons = [.left, .right, .middle, .side, .extra]
}

/// One pointer event, validated when made.
public struct PointerEvent: Equatable, Sendable {
    /// Raw values equal `HV_POINTER_*`.
    public enum Kind: UInt32, Sendable {
        /// x, y: 0...0xFFFF across the screen, left to right and top to bottom.
        case absolute = 1
        /// x, y: motion, -32768...32767, y positive downwards.
        case relative = 2
    }

    public static let absoluteRange: ClosedRange<Int32> = 0...0xFFFF
    public static let relativeRange: ClosedRange<Int32> = -32768...32767
    public static let wheelRange: ClosedRange<Int32> = -127...127

    public let kind: Kind
    public let x: Int32
    public let y: Int32
    /// Notches, positive away from the user.
    public let wheel: Int32
    public let buttons: PointerButtons

    public init(kind: Kind, x: Int32, y: Int32, wheel: Int32 = 0, buttons: PointerButtons = []) throws(InputError) {
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
