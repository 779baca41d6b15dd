/// How framebuffer pixels are stored (raw values equal `HV_PIXEL_*`).
package enum PixelFormat: UInt32, Sendable, CaseIterable {
    /// 32 bits: red 23..16, green 15..8, blue 7..0.
    case xrgb8888 = 1
    /// 24 bits: bytes blue, green, red.
    case rgb888 = 2
    /// 16 bits: red 15..11, green 10..5, blue 4..0.
    case rgb565 = 3
    /// 16 bits: red 14..10, green 9..5, blue 4..0.
    case xrgb1555 = 4
    /// 8 bits: an index into the surface's palette.
    case indexed8 = 5

    package var bitsPerPixel: Int {
        switch self {
        case .xrgb8888: 32
        case .rgb888: 24
        case .rgb565, .xrgb1555: 16
        case .indexed8: 8
        }
    }
}

/// Why a display request was refused.
package struct DisplayError: Error, CustomStringConvertible, Equatable {
    let message: String
    package var description: String { message }
}

/// A display mode as a device publishes it.
package struct DisplayMode: Equatable, Sendable {
    package static let maxDimension = 8192
    static let maxBytes = 256 << 20

    package let width: Int
    package let height: Int
    /// Bytes from one line to the next.
    package let pitch: Int
    package let format: PixelFormat

    package var bitsPerPixel: Int { format.bitsPerPixel }
    /// Bytes of framebuffer the mode covers.
    var byteCount: Int { pitch * height }

    package init(width: Int, height: Int, pitch: Int, format: PixelFormat) throws(DisplayError) {
        func refuse(_ why: String) -> DisplayError {
            DisplayError(message: "display mode \(width)x\(height) pitch \(pitch): \(why)")
        }
        guard (1...Self.maxDimension).contains(width), (1...Self.maxDimension).contains(height) else {
            throw refuse("width and height must be 1..\(Self.maxDimension)")
        }
        let minimumPitch = (width * format.bitsPerPixel + 7) / 8
        guard pitch >= minimumPitch else { throw refuse("the pitch must be at least \(minimumPitch) bytes") }
        guard pitch <= Self.maxBytes / height else { throw refuse("the framebuffer must be at most 256 MiB") }
        self.width = width
        self.height = height
        self.pitch = pitch
        self.format = format
    }
}

/// A rectangle of the screen, in pixels.
/// One change of the screen, in the order it happened.
enum DisplayChange: Equatable, Sendable {
    /// Pixels changed.
    case damage(DisplayRect)
    /// `source`'s pixels were copied to the same-size rectangle at (toX, toY).
    case copy(source: DisplayRect, toX: Int, toY: Int)

    /// The rectangle whose pixels changed.
    var destination: DisplayRect {
        switch self {
        case .damage(let r): r
        case .copy(let s, let x, let y): DisplayRect(x: x, y: y, width: s.width, height: s.height)
        }
    }

    var isDamage: Bool { if case .damage = self { true } else { false } }
}

struct DisplayRect: Equatable, Sendable {
    var x: Int
    var y: Int
    var width: Int
    var height: Int

    init(x: Int, y: Int, width: Int, height: Int) {
        self.x = x
        self.y = y
        self.width = width
        self.height = height
    }

    func contains(_ r: DisplayRect) -> Bool {
        r.x >= x && r.y >= y && r.x + r.width <= x + width && r.y + r.height <= y + height
    }

    func union(_ r: DisplayRect) -> DisplayRect {
        let x0 = min(x, r.x), y0 = min(y, r.y)
        return DisplayRect(x: x0, y: y0, width: max(x + width, r.x + r.width) - x0,
                           height: max(y + height, r.y + r.height) - y0)
    }
}

/// The pointer's image and where it is.
package struct DisplayCursor: Equatable, Sendable {
    package static let maxDimension = 256

    package var width = 0
    package var height = 0
    var hotX = 0
    var hotY = 0
    /// `width * height` pixels 0xAARRGGBB, rows top to bottom; empty until defined.
    package var pixels: [UInt32] = []
    /// The hotspot's screen position.
    var x = 0
    var y = 0
    var visible = false
    /// Bumped by every new image, so a console resends the image only when it changed.
    var imageSerial: UInt64 = 0

    init() {}
}

/// One copy of the screen.
struct DisplayFrame: Sendable {
    let mode: DisplayMode
    /// `mode.byteCount` bytes as the device stores them.
    package let bytes: [UInt8]
    /// 256 entries 0x00RRGGBB (what `.indexed8` pixels index).
    let palette: [UInt32]
}
