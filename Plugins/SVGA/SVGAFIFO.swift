import PluginABI

// The command FIFO: a ring of 32-bit words in BAR2 between MIN and MAX (byte offsets
// the guest writes into the FIFO's first registers). The guest appends commands and
// advances NEXT_CMD; the device consumes from STOP and advances it. Every value comes
// from guest memory that may change under us, so each is loaded once and checked:
// bad geometry, an unknown command or a command longer than the ring stops processing
// and counts a FIFO error, as the hardware does (it stops and waits for a reset).

extension SVGADevice {
    /// Pixels a cursor may have on each axis (the display extension's limit).
    static let maxCursor: UInt32 = 256

    struct FIFOBounds {
        let min: Int
        let max: Int
        var words: Int { (max - min) / 4 }
    }

    /// MIN/MAX as the guest set them, or nil when they do not describe a ring inside the BAR.
    func fifoBounds() -> FIFOBounds? {
        let lo = fifoWord(SVGAFIFOReg.min), hi = fifoWord(SVGAFIFOReg.max)
        guard lo >= SVGAFIFOReg.minimumMin, lo % 4 == 0, hi % 4 == 0, hi > lo, hi <= UInt32(Self.fifoSize),
              hi - lo >= 10 * 4 else { return nil }
        return FIFOBounds(min: Int(lo), max: Int(hi))
    }

    /// Processes commands from STOP up to NEXT_CMD.
    func processFIFO() {
        guard enabled, configDone else { return }
        applyFIFOCursor()
        guard let bounds = fifoBounds() else {
            fifoError("FIFO MIN 0x\(String(fifoWord(SVGAFIFOReg.min), radix: 16)) / MAX 0x\(String(fifoWord(SVGAFIFOReg.max), radix: 16)) do not describe a ring in the \(Self.fifoSize)-byte FIFO")
            return
        }
        let next = Int(fifoWord(SVGAFIFOReg.nextCmd))
        var stop = Int(fifoWord(SVGAFIFOReg.stop))
        guard (bounds.min..<bounds.max).contains(next), (bounds.min..<bounds.max).contains(stop),
              next % 4 == 0, stop % 4 == 0 else {
            fifoError("FIFO NEXT_CMD 0x\(String(next, radix: 16)) / STOP 0x\(String(stop, radix: 16)) outside MIN..MAX or unaligned")
            return
        }
        var progressed = false
        var reader = FIFOReader(device: self, bounds: bounds, position: stop, end: next)
        // Each pass consumes at least one word, and only words written before NEXT_CMD,
        // so a ring of N words ends within N passes whatever the guest writes.
        while reader.available > 0 {
            let start = reader.position
            switch runCommand(&reader) {
            case .done:
                stop = reader.position
                fifoWord(SVGAFIFOReg.stop, UInt32(stop))
                commandsProcessed += 1
                progressed = true
            case .incomplete:
                // The guest has not written the whole command yet: wait for more.
                reader.position = start
                if progressed { raiseIRQ(SVGAIRQ.fifoProgress) }
                return
            case .invalid(let why):
                fifoError(why)
                // Drop what the guest queued: the rest of the ring is not trustworthy.
                fifoWord(SVGAFIFOReg.stop, UInt32(next))
                return
            }
        }
        if progressed { raiseIRQ(SVGAIRQ.fifoProgress) }
    }

    func fifoError(_ why: String) {
        fifoErrors += 1
        guestError("SVGA FIFO: " + why)
    }

    enum CommandResult {
        case done
        case incomplete
        case invalid(String)
    }

    private func runCommand(_ r: inout FIFOReader) -> CommandResult {
        guard let op = r.next() else { return .incomplete }
        switch op {
        case SVGACmd.update, SVGACmd.updateVerbose:
            guard let a = r.take(op == SVGACmd.update ? 4 : 5) else { return .incomplete }
            if let rect = clip(x: a[0], y: a[1], w: a[2], h: a[3]) {
                _ = display.pointee.update(host, rect.x, rect.y, rect.w, rect.h)
            }
        case SVGACmd.rectFill:
            guard let a = r.take(5) else { return .incomplete }
            if let rect = clip(x: a[1], y: a[2], w: a[3], h: a[4]) { fill(rect, color: a[0]) }
        case SVGACmd.rectCopy:
            guard let a = r.take(6) else { return .incomplete }
            copy(srcX: a[0], srcY: a[1], dstX: a[2], dstY: a[3], w: a[4], h: a[5])
        case SVGACmd.defineCursor:
            guard let h = r.take(7) else { return .incomplete }
            return defineCursor(h, &r)
        case SVGACmd.defineAlphaCursor:
            guard let h = r.take(5) else { return .incomplete }
            let (w, ht) = (h[3], h[4])
            guard (1...Self.maxCursor).contains(w), (1...Self.maxCursor).contains(ht), h[1] < w, h[2] < ht else {
                return .invalid("alpha cursor \(h[3])x\(h[4]) hotspot (\(h[1]), \(h[2])): expected 1..\(Self.maxCursor) and a hotspot inside")
            }
            guard let pixels = r.take(Int(w * ht)) else {
                return Int(w * ht) + 6 > r.bounds.words ? .invalid("alpha cursor longer than the FIFO") : .incomplete
            }
            setCursor(id: h[0], width: w, height: ht, hotX: h[1], hotY: h[2], pixels: pixels)
        case SVGACmd.moveCursor:
            guard let a = r.take(2) else { return .incomplete }
            cursor.x = Int32(bitPattern: a[0])
            cursor.y = Int32(bitPattern: a[1])
            moveCursor()
        case SVGACmd.displayCursor:
            guard let a = r.take(2) else { return .incomplete }
            cursor.id = a[0]
            cursor.on = a[1] != 0
            showCursor()
        case SVGACmd.fence:
            guard let a = r.take(1) else { return .incomplete }
            fifoWord(SVGAFIFOReg.fence, a[0])
            var flags = SVGAIRQ.anyFence
            if a[0] == fifoWord(SVGAFIFOReg.fenceGoal) { flags |= SVGAIRQ.fenceGoal }
            raiseIRQ(flags)
        default:
            return .invalid("unknown command \(op)")
        }
        return .done
    }

    struct Rect {
        var x: UInt32
        var y: UInt32
        var w: UInt32
        var h: UInt32
    }

    /// The part of a guest rectangle inside the mode; nil when empty.
    func clip(x: UInt32, y: UInt32, w: UInt32, h: UInt32) -> Rect? {
        guard x < width, y < height, w > 0, h > 0 else { return nil }
        return Rect(x: x, y: y, w: min(w, width - x), h: min(h, height - y))
    }

    var bytesPerPixel: Int { Int((bitsPerPixel + 7) / 8) }

    /// The framebuffer row `y` from pixel `x`, when the mode fits in VRAM.
    private func rowPointer(x: UInt32, y: UInt32) -> UnsafeMutableRawPointer? {
        let offset = Int(fbOffset) + Int(y) * Int(pitch) + Int(x) * bytesPerPixel
        return offset < vramSize ? vram + offset : nil
    }

    private var framebufferFits: Bool {
        UInt64(fbOffset) + UInt64(pitch) * UInt64(height) <= UInt64(vramSize)
            && UInt64(pitch) >= UInt64(width) * UInt64(bytesPerPixel)
    }

    func fill(_ rect: Rect, color: UInt32) {
        guard framebufferFits else { return }
        let bpp = bytesPerPixel
        for y in rect.y..<(rect.y + rect.h) {
            guard let row = rowPointer(x: rect.x, y: y) else { return }
            switch bpp {
            case 4: row.assumingMemoryBound(to: UInt32.self).update(repeating: color, count: Int(rect.w))
            case 2: row.assumingMemoryBound(to: UInt16.self).update(repeating: UInt16(truncatingIfNeeded: color), count: Int(rect.w))
            case 1: row.assumingMemoryBound(to: UInt8.self).update(repeating: UInt8(truncatingIfNeeded: color), count: Int(rect.w))
            default:
                let b = row.assumingMemoryBound(to: UInt8.self)
                for i in 0..<Int(rect.w) {
                    b[i * 3] = UInt8(truncatingIfNeeded: color)
                    b[i * 3 + 1] = UInt8(truncatingIfNeeded: color >> 8)
                    b[i * 3 + 2] = UInt8(truncatingIfNeeded: color >> 16)
                }
            }
        }
        _ = display.pointee.update(host, rect.x, rect.y, rect.w, rect.h)
    }

    /// Copies a rectangle within the framebuffer; both ends are clipped to the mode
    /// (by the same amount, so the picture does not shift), overlap is handled.
    func copy(srcX: UInt32, srcY: UInt32, dstX: UInt32, dstY: UInt32, w: UInt32, h: UInt32) {
        guard framebufferFits, srcX < width, srcY < height, dstX < width, dstY < height, w > 0, h > 0 else { return }
        let cw = min(w, width - srcX, width - dstX), ch = min(h, height - srcY, height - dstY)
        let rowBytes = Int(cw) * bytesPerPixel
        let rows: [UInt32] = dstY > srcY ? Array((0..<ch).reversed()) : Array(0..<ch)
        for i in rows {
            guard let s = rowPointer(x: srcX, y: srcY + i), let d = rowPointer(x: dstX, y: dstY + i) else { return }
            d.copyMemory(from: s, byteCount: rowBytes)   // memmove semantics
        }
        // Consoles send it as a copy where the host has hv_display_ext.copy (1.4).
        let copyEnd = MemoryLayout<hv_display_ext>.offset(of: \.copy)! + MemoryLayout<UnsafeRawPointer>.size
        if Int(display.pointee.struct_size) >= copyEnd, let copy = display.pointee.copy,
           copy(host, srcX, srcY, dstX, dstY, cw, ch) == HV_OK {
            return
        }
        _ = display.pointee.update(host, dstX, dstY, cw, ch)
    }

    /// SVGA_CMD_DEFINE_CURSOR: an AND mask (1 bpp) and an XOR image (1 bpp or the
    /// framebuffer's depth), each row padded to 32 bits.
    private func defineCursor(_ h: [UInt32], _ r: inout FIFOReader) -> CommandResult {
        let (id, hotX, hotY, w, ht, andDepth, xorDepth) = (h[0], h[1], h[2], h[3], h[4], h[5], h[6])
        guard (1...Self.maxCursor).contains(w), (1...Self.maxCursor).contains(ht), hotX < w, hotY < ht,
              andDepth == 1, [1, 8, 16, 24, 32].contains(xorDepth) else {
            return .invalid("cursor \(w)x\(ht) hotspot (\(hotX), \(hotY)) depths \(andDepth)/\(xorDepth): expected 1..\(Self.maxCursor), a hotspot inside, AND depth 1")
        }
        let andWords = Int((w + 31) / 32 * ht), xorWords = Int((w * xorDepth + 31) / 32 * ht)
        guard andWords + xorWords + 8 <= r.bounds.words else { return .invalid("cursor longer than the FIFO") }
        guard let andMask = r.take(andWords), let xorMask = r.take(xorWords) else { return .incomplete }
        let andPitch = Int((w + 31) / 32), xorPitch = Int((w * xorDepth + 31) / 32)
        func bit(_ words: [UInt32], pitch: Int, x: Int, y: Int, depth: Int) -> UInt32 {
            let bitIndex = x * depth
            let word = words[y * pitch + bitIndex / 32]
            // Bits and pixels are stored most significant first within each byte, as the
            // X11 monochrome cursor format has them.
            if depth == 1 {
                let byte = (word >> UInt32((bitIndex % 32) / 8 * 8)) & 0xFF
                return (byte >> UInt32(7 - bitIndex % 8)) & 1
            }
            return depth == 32 ? word : (word >> UInt32(bitIndex % 32)) & ((1 << UInt32(depth)) - 1)
        }
        var pixels = [UInt32](repeating: 0, count: Int(w * ht))
        for y in 0..<Int(ht) {
            for x in 0..<Int(w) {
                let a = bit(andMask, pitch: andPitch, x: x, y: y, depth: 1)
                let xv = bit(xorMask, pitch: xorPitch, x: x, y: y, depth: Int(xorDepth))
                let color = xorDepth == 1 ? (xv != 0 ? 0xFF_FFFF : 0) : xv & 0xFF_FFFF
                // AND 1 / XOR 0 is transparent; AND 0 draws the XOR colour; AND 1 / XOR set
                // inverts the screen, which a console cursor image cannot express: black.
                pixels[y * Int(w) + x] = a == 0 ? 0xFF00_0000 | color : (xv == 0 ? 0 : 0xFF00_0000)
            }
        }
        setCursor(id: id, width: w, height: ht, hotX: hotX, hotY: hotY, pixels: pixels)
        return .done
    }

    func setCursor(id: UInt32, width w: UInt32, height h: UInt32, hotX: UInt32, hotY: UInt32, pixels: [UInt32]) {
        var c = hv_display_cursor()
        c.struct_size = UInt32(MemoryLayout<hv_display_cursor>.size)
        c.width = w
        c.height = h
        c.hot_x = hotX
        c.hot_y = hotY
        let rc = pixels.withUnsafeBufferPointer { p -> Int32 in
            c.pixels = p.baseAddress
            return display.pointee.cursor_define(host, &c)
        }
        cursor.id = id
        cursor.defined = rc == HV_OK
        if cursor.defined { cursor.image = CursorImage(width: w, height: h, hotX: hotX, hotY: hotY, pixels: pixels) }
        showCursor()
    }

    func moveCursor() {
        let x = max(-65536, min(65535, cursor.x)), y = max(-65536, min(65535, cursor.y))
        _ = display.pointee.cursor_move(host, x, y)
    }

    func showCursor() {
        _ = display.pointee.cursor_show(host, cursor.on && cursor.defined ? 1 : 0)
    }

    /// SVGA_FIFO_CAP_CURSOR_BYPASS_3: the guest moves the cursor through FIFO registers
    /// and bumps CURSOR_COUNT.
    func applyFIFOCursor() {
        guard let bounds = fifoBounds(), bounds.min > SVGAFIFOReg.cursorCount * 4 else { return }
        let count = fifoWord(SVGAFIFOReg.cursorCount)
        guard count != cursor.fifoCount else { return }
        cursor.fifoCount = count
        cursor.on = fifoWord(SVGAFIFOReg.cursorOn) != 0
        cursor.x = Int32(bitPattern: fifoWord(SVGAFIFOReg.cursorX))
        cursor.y = Int32(bitPattern: fifoWord(SVGAFIFOReg.cursorY))
        moveCursor()
        showCursor()
    }
}

/// Reads words from the ring between the device's position and the guest's NEXT_CMD,
/// wrapping from MAX to MIN.
struct FIFOReader {
    let device: SVGADevice
    let bounds: SVGADevice.FIFOBounds
    var position: Int
    let end: Int

    /// Words between position and end.
    var available: Int {
        let d = end - position
        return (d >= 0 ? d : d + (bounds.max - bounds.min)) / 4
    }

    mutating func next() -> UInt32? {
        guard available > 0 else { return nil }
        let v = device.fifoWord(position / 4)
        position += 4
        if position >= bounds.max { position = bounds.min }
        return v
    }

    /// `count` words, or nil (and nothing consumed) when fewer are available.
    mutating func take(_ count: Int) -> [UInt32]? {
        guard count <= available else { return nil }
        var out = [UInt32](repeating: 0, count: count)
        for i in 0..<count { out[i] = next()! }
        return out
    }
}
