import HVSupport

/// Memory a device shows on screen. The surface calls `copy` only under its own lock,
/// between the `setMode` that published the buffer and the next `setMode`/`blank`.
package protocol DisplayFramebuffer: AnyObject {
    /// Fills `buffer` (the mode's `byteCount` bytes) from the framebuffer.
    func copy(into buffer: inout [UInt8])
}

/// A VM's screen: what one display device publishes (mode, framebuffer, palette,
/// damage, cursor) and what the host's consoles read. Thread-safe: the device
/// publishes from its vCPU and timer threads, consoles read from theirs. A copy of
/// the framebuffer and a mode change exclude each other, so once `setMode` or
/// `blank` returns the surface no longer touches the previous framebuffer.
package final class DisplaySurface: @unchecked Sendable {
    /// Damage is kept as separate rectangles up to this count, then as their union.
    static let damageLimit = 64

    private let lock = HostLock()
    private var publisher: ObjectIdentifier?
    private var current: (mode: DisplayMode, framebuffer: any DisplayFramebuffer)?
    private var palette = [UInt32](repeating: 0, count: 256)
    private var changes: [DisplayChange] = []
    private var cursorState = DisplayCursor()

    package init() {}

    // MARK: consoles

    /// The mode shown, nil while the screen is blank.
    package var mode: DisplayMode? { lock.withLock { current?.mode } }

    /// A copy of the screen; nil while it is blank.
    func snapshot() -> DisplayFrame? {
        lock.withLock {
            guard let (mode, framebuffer) = current else { return nil }
            var bytes = [UInt8](repeating: 0, count: mode.byteCount)
            framebuffer.copy(into: &bytes)
            return DisplayFrame(mode: mode, bytes: bytes, palette: palette)
        }
    }

    /// The changes since the last call, in order (clipped to the mode), and forgets them.
    func takeChanges() -> [DisplayChange] {
        lock.withLock {
            defer { changes.removeAll() }
            return changes
        }
    }

    /// The rectangles changed since the last call (a copy's destination for a copy).
    func takeDamage() -> [DisplayRect] { takeChanges().map(\.destination) }

    var cursor: DisplayCursor { lock.withLock { cursorState } }

    // MARK: the display device

    /// Makes `device` the one publisher; false when another one is.
    package func attach(publisher device: AnyObject) -> Bool {
        lock.withLock {
            guard publisher == nil else { return false }
            publisher = ObjectIdentifier(device)
            return true
        }
    }

    package func isPublisher(_ device: AnyObject) -> Bool {
        lock.withLock { publisher == ObjectIdentifier(device) }
    }

    /// The publisher goes away: the screen blanks, the cursor resets, and the
    /// framebuffer is never read again.
    package func detach(publisher device: AnyObject) {
        lock.withLock {
            guard publisher == ObjectIdentifier(device) else { return }
            publisher = nil
            current = nil
            changes.removeAll()
            cursorState = DisplayCursor()
        }
    }

    /// Shows `framebuffer` in `mode`; the whole screen is damaged.
    package func setMode(_ mode: DisplayMode, framebuffer: any DisplayFramebuffer) {
        lock.withLock {
            current = (mode, framebuffer)
            changes = [.damage(DisplayRect(x: 0, y: 0, width: mode.width, height: mode.height))]
        }
    }

    /// No picture (the guest turned the display off).
    package func blank() {
        lock.withLock {
            current = nil
            changes.removeAll()
        }
    }

    /// Sets palette entries from `first` (0x00RRGGBB, the top byte is dropped).
    package func setPalette(first: Int, colors: [UInt32]) throws(DisplayError) {
        guard first >= 0, first <= palette.count, colors.count <= palette.count - first else {
            throw DisplayError(message: "palette entries \(first)..<\(first + colors.count) are outside 0..<256")
        }
        lock.withLock {
            for (i, c) in colors.enumerated() { palette[first + i] = c & 0xFF_FFFF }
            if let mode = current?.mode, mode.format == .indexed8 {
                changes = [.damage(DisplayRect(x: 0, y: 0, width: mode.width, height: mode.height))]
            }
        }
    }

    /// Records a changed rectangle, clipped to the mode; nothing without a mode.
    package func update(x: UInt64, y: UInt64, width: UInt64, height: UInt64) {
        lock.withLock {
            guard let mode = current?.mode else { return }
            let w = UInt64(mode.width), h = UInt64(mode.height)
            guard x < w, y < h, width > 0, height > 0 else { return }
            let rect = DisplayRect(x: Int(x), y: Int(y), width: Int(min(width, w - x)), height: Int(min(height, h - y)))
            record(.damage(rect))
        }
    }

    /// Records that the device copied `width` x `height` pixels from (srcX, srcY) to
    /// (dstX, dstY); false (nothing recorded) unless both lie inside the mode.
    package func copy(srcX: UInt64, srcY: UInt64, dstX: UInt64, dstY: UInt64, width: UInt64, height: UInt64) -> Bool {
        lock.withLock {
            guard let mode = current?.mode else { return true }
            let w = UInt64(mode.width), h = UInt64(mode.height)
            guard width > 0, height > 0, width <= w, height <= h, srcX <= w - width, dstX <= w - width,
                  srcY <= h - height, dstY <= h - height else { return false }
            record(.copy(source: DisplayRect(x: Int(srcX), y: Int(srcY), width: Int(width), height: Int(height)),
                         toX: Int(dstX), toY: Int(dstY)))
            return true
        }
    }

    /// [lock] Damage coalesces with the damage recorded since the last copy only: what
    /// came before a copy must stay before it (a console moves it along with the copy).
    private func record(_ change: DisplayChange) {
        if case .damage(let rect) = change {
            let since = (changes.lastIndex { !$0.isDamage }).map { $0 + 1 } ?? 0
            if changes[since...].contains(where: { $0.destination.contains(rect) }) { return }
            changes = Array(changes[..<since]) + changes[since...].filter { !rect.contains($0.destination) }
        }
        changes.append(change)
        if changes.count > Self.damageLimit {
            changes = [.damage(changes.dropFirst().reduce(changes[0].destination) { $0.union($1.destination) })]
        }
    }

    /// A new pointer image with its hotspot.
    package func defineCursor(width: Int, height: Int, hotX: Int, hotY: Int, pixels: [UInt32]) throws(DisplayError) {
        let limit = DisplayCursor.maxDimension
        guard (1...limit).contains(width), (1...limit).contains(height) else {
            throw DisplayError(message: "cursor \(width)x\(height): width and height must be 1..\(limit)")
        }
        guard (0..<width).contains(hotX), (0..<height).contains(hotY) else {
            throw DisplayError(message: "cursor hotspot (\(hotX), \(hotY)) is outside its \(width)x\(height) image")
        }
        guard pixels.count == width * height else {
            throw DisplayError(message: "cursor \(width)x\(height) needs \(width * height) pixels, got \(pixels.count)")
        }
        lock.withLock {
            cursorState.width = width
            cursorState.height = height
            cursorState.hotX = hotX
            cursorState.hotY = hotY
            cursorState.pixels = pixels
            cursorState.imageSerial &+= 1
        }
    }

    static let cursorRange = -65536...65535

    /// Moves the hotspot to screen pixel (x, y), which may be off screen.
    package func moveCursor(x: Int, y: Int) throws(DisplayError) {
        guard Self.cursorRange.contains(x), Self.cursorRange.contains(y) else {
            throw DisplayError(message: "cursor position (\(x), \(y)) is outside -65536..65535")
        }
        lock.withLock {
            cursorState.x = x
            cursorState.y = y
        }
    }

    package func showCursor(_ visible: Bool) {
        lock.withLock { cursorState.visible = visible }
    }
}
