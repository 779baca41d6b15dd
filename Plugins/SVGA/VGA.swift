/// The VGA compatibility core: the registers a VGA BIOS programs (sequencer, graphics
/// controller, CRTC, attribute controller, DAC) and the four 64 KiB planes behind the
/// 0xA0000-0xBFFFF window, with the plane addressing of chain-4, odd/even and planar
/// modes and write modes 0-3. Plane bytes are stored QEMU-style (plane p, offset i at
/// `planes[i * 4 + p]`), so chain-4 pixel n is `planes[n]` and text cell n is
/// `planes[n * 4]` (character) and `planes[n * 4 + 1]` (attribute).
final class VGA {
    static let planeSize = 0x10000
    static let windowBase: UInt64 = 0xA0000
    static let windowSize: UInt64 = 0x20000

    var planes = [UInt8](repeating: 0, count: VGA.planeSize * 4)
    var sequencer = [UInt8](repeating: 0, count: 8)
    var graphics = [UInt8](repeating: 0, count: 16)
    var crtc = [UInt8](repeating: 0, count: 32)
    var attribute = [UInt8](repeating: 0, count: 32)
    /// 256 entries of red, green, blue, 6 bits each.
    var dac = [UInt8](repeating: 0, count: 768)
    var miscOutput: UInt8 = 0
    var sequencerIndex: UInt8 = 0
    var graphicsIndex: UInt8 = 0
    var crtcIndex: UInt8 = 0
    var attributeIndex: UInt8 = 0
    /// The attribute controller's flip-flop: false = the next 0x3C0 write is an index.
    var attributeFlip = false
    var dacReadIndex = 0
    var dacWriteIndex = 0
    var dacComponent = 0
    var dacState: UInt8 = 0
    var dacMask: UInt8 = 0xFF
    var featureControl: UInt8 = 0
    var latch: UInt32 = 0
    var retraceToggle: UInt8 = 0
    /// Something visible changed since the renderer last looked.
    var dirty = true
    /// The palette (DAC) changed since the renderer last looked.
    var paletteDirty = true

    /// Memory-mapped window the graphics controller decodes: (base offset, size) within
    /// 0xA0000-0xBFFFF.
    var window: (start: UInt64, size: UInt64) {
        switch (graphics[6] >> 2) & 3 {
        case 0: (0, 0x20000)
        case 1: (0, 0x10000)
        case 2: (0x10000, 0x8000)
        default: (0x18000, 0x8000)
        }
    }

    var chain4: Bool { sequencer[4] & 0x08 != 0 }
    var oddEven: Bool { sequencer[4] & 0x04 == 0 }
    var graphicsMode: Bool { graphics[6] & 0x01 != 0 }
    /// 256-colour shift mode (mode 13h and the tweaked modes).
    var shift256: Bool { graphics[5] & 0x40 != 0 }
    var colorCRTC: Bool { miscOutput & 0x01 != 0 }

    // MARK: memory window

    /// `offset` is relative to 0xA0000.
    func memoryRead(_ offset: UInt64) -> UInt8 {
        let (start, size) = window
        guard offset >= start, offset - start < size else { return 0xFF }
        var addr = Int(offset - start)
        if chain4 {
            return planes[addr & 0xFFFF]
        }
        if oddEven {
            let plane = Int(graphics[4] & 2) | (addr & 1)
            addr = ((addr >> 1) & 0xFFFF) * 4 + plane
            return planes[addr]
        }
        addr &= 0xFFFF
        latch = UInt32(planes[addr * 4]) | UInt32(planes[addr * 4 + 1]) << 8
            | UInt32(planes[addr * 4 + 2]) << 16 | UInt32(planes[addr * 4 + 3]) << 24
        if graphics[5] & 0x08 == 0 {
            return planes[addr * 4 + Int(graphics[4] & 3)]
        }
        // Read mode 1: a bit is set where every plane not ignored by Color Don't Care
        // equals Color Compare.
        var result: UInt8 = 0xFF
        for p in 0..<4 where graphics[7] & (1 << p) != 0 {
            let want: UInt8 = graphics[2] & (1 << p) != 0 ? 0xFF : 0
            result &= ~(planes[addr * 4 + p] ^ want)
        }
        return result
    }

    func memoryWrite(_ offset: UInt64, _ value: UInt8) {
        let (start, size) = window
        guard offset >= start, offset - start < size else { return }
        var addr = Int(offset - start)
        let mapMask = sequencer[2] & 0x0F
        if chain4 {
            addr &= 0xFFFF
            if mapMask & (1 << (addr & 3)) != 0 {
                planes[addr] = value
                dirty = true
            }
            return
        }
        if oddEven {
            let plane = Int(graphics[4] & 2) | (addr & 1)
            if mapMask & (1 << plane) != 0 {
                planes[((addr >> 1) & 0xFFFF) * 4 + plane] = value
                dirty = true
            }
            return
        }
        addr &= 0xFFFF
        let bitMask = graphics[8]
        let setReset = graphics[0], enableSetReset = graphics[1]
        let rotate = graphics[3] & 7, function = (graphics[3] >> 3) & 3
        let rotated = rotate == 0 ? value : (value >> rotate) | (value << (8 - rotate))
        for p in 0..<4 where mapMask & (1 << p) != 0 {
            let latched = UInt8(truncatingIfNeeded: latch >> (8 * p))
            var data: UInt8
            var mask = bitMask
            switch graphics[5] & 3 {
            case 0:
                data = enableSetReset & (1 << p) != 0 ? (setReset & (1 << p) != 0 ? 0xFF : 0) : rotated
            case 1:
                planes[addr * 4 + p] = latched
                continue
            case 2:
                data = value & (1 << p) != 0 ? 0xFF : 0
            default:
                mask &= rotated
                data = setReset & (1 << p) != 0 ? 0xFF : 0
            }
            switch function {
            case 1: data &= latched
            case 2: data |= latched
            case 3: data ^= latched
            default: break
            }
            planes[addr * 4 + p] = (data & mask) | (latched & ~mask)
        }
        dirty = true
    }

    // MARK: ports 0x3B0-0x3DF

    func portRead(_ port: UInt16) -> UInt8 {
        switch port {
        case 0x3C0: return attributeIndex
        case 0x3C1: return attribute[Int(attributeIndex & 0x1F)]
        case 0x3C2: return 0   // input status 0: no switch sense, no CRT interrupt
        case 0x3C4: return sequencerIndex
        case 0x3C5: return sequencer[Int(sequencerIndex & 7)]
        case 0x3C6: return dacMask
        case 0x3C7: return dacState
        case 0x3C8: return UInt8(truncatingIfNeeded: dacWriteIndex)
        case 0x3C9:
            let v = dac[dacReadIndex * 3 + dacComponent]
            advanceDAC(&dacReadIndex)
            return v
        case 0x3CA: return featureControl
        case 0x3CC: return miscOutput
        case 0x3CE: return graphicsIndex
        case 0x3CF: return graphics[Int(graphicsIndex & 0x0F)]
        case 0x3B4, 0x3D4: return crtcIndex
        case 0x3B5, 0x3D5: return crtc[Int(crtcIndex & 0x1F)]
        case 0x3BA, 0x3DA:
            // Input status 1: the display-enable and vertical-retrace bits toggle on
            // every read, so a BIOS waiting for either edge never spins for long.
            attributeFlip = false
            retraceToggle ^= 0x09
            return retraceToggle
        default: return 0xFF
        }
    }

    func portWrite(_ port: UInt16, _ value: UInt8) {
        switch port {
        case 0x3C0:
            if !attributeFlip {
                attributeIndex = value & 0x3F
            } else if attributeIndex & 0x1F < 0x15 {
                attribute[Int(attributeIndex & 0x1F)] = value
                dirty = true
            }
            attributeFlip.toggle()
        case 0x3C2: miscOutput = value; dirty = true
        case 0x3C4: sequencerIndex = value & 7
        case 0x3C5: sequencer[Int(sequencerIndex & 7)] = value; dirty = true
        case 0x3C6: dacMask = value; paletteDirty = true
        case 0x3C7:
            dacReadIndex = Int(value)
            dacComponent = 0
            dacState = 0x03
        case 0x3C8:
            dacWriteIndex = Int(value)
            dacComponent = 0
            dacState = 0x00
        case 0x3C9:
            dac[dacWriteIndex * 3 + dacComponent] = value & 0x3F
            paletteDirty = true
            advanceDAC(&dacWriteIndex)
        case 0x3CA, 0x3BA, 0x3DA: featureControl = value
        case 0x3CE: graphicsIndex = value & 0x0F
        case 0x3CF: graphics[Int(graphicsIndex & 0x0F)] = value; dirty = true
        case 0x3B4, 0x3D4: crtcIndex = value & 0x1F
        case 0x3B5, 0x3D5:
            // CRTC 0-7 are write-protected while bit 7 of register 0x11 is set.
            if crtcIndex & 0x1F <= 7 && crtc[0x11] & 0x80 != 0 && crtcIndex != 7 { return }
            crtc[Int(crtcIndex & 0x1F)] = value
            dirty = true
        default: break
        }
    }

    private func advanceDAC(_ index: inout Int) {
        dacComponent += 1
        if dacComponent == 3 {
            dacComponent = 0
            index = (index + 1) & 0xFF
        }
    }

    // MARK: what the screen shows

    /// An 8-bit colour from a 6-bit DAC component, spread to the full range.
    static func expand6(_ v: UInt8) -> UInt32 { UInt32(v & 0x3F) << 2 | UInt32(v & 0x3F) >> 4 }

    /// DAC entry `index` as 0x00RRGGBB.
    func dacColor(_ index: Int) -> UInt32 {
        let i = (index & Int(dacMask)) * 3
        return Self.expand6(dac[i]) << 16 | Self.expand6(dac[i + 1]) << 8 | Self.expand6(dac[i + 2])
    }

    /// The DAC index an attribute-palette entry (0..15) selects, with the colour select
    /// register's bits as the attribute controller combines them.
    func attributeColor(_ index: Int) -> Int {
        let entry = Int(attribute[index & 0x0F])
        let select = Int(attribute[0x14])
        if attribute[0x10] & 0x80 != 0 {
            return (entry & 0x0F) | (select & 0x0F) << 4
        }
        return (entry & 0x3F) | (select & 0x0C) << 4
    }

    /// Characters per row, from the CRTC's horizontal display end.
    var textColumns: Int { Int(crtc[1]) + 1 }
    /// Scanlines per character row.
    var characterHeight: Int { Int(crtc[9] & 0x1F) + 1 }
    /// Pixels per character column: 8 or 9 (sequencer clocking mode bit 0).
    var characterWidth: Int { sequencer[1] & 0x01 != 0 ? 8 : 9 }
    /// Displayed scanlines, from the vertical display end and its overflow bits.
    var displayLines: Int {
        Int(crtc[0x12]) | Int(crtc[7] & 0x02) << 7 | Int(crtc[7] & 0x40) << 3
    }
    var startAddress: Int { Int(crtc[0x0C]) << 8 | Int(crtc[0x0D]) }
    var cursorAddress: Int { Int(crtc[0x0E]) << 8 | Int(crtc[0x0F]) }

    /// Sets the registers and font a VGA BIOS leaves after mode 3 (80x25 colour text,
    /// 9x16 cells), for guests that boot without a VGA BIOS.
    func presetTextMode(font: [UInt8]?) {
        miscOutput = 0x67
        sequencer = [0x03, 0x00, 0x03, 0x00, 0x02, 0, 0, 0]
        graphics = [0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x0E, 0x0F, 0xFF, 0, 0, 0, 0, 0, 0, 0]
        crtc = [0x5F, 0x4F, 0x50, 0x82, 0x55, 0x81, 0xBF, 0x1F, 0x00, 0x4F, 0x0D, 0x0E, 0x00, 0x00, 0x00, 0x00,
                0x9C, 0x8E, 0x8F, 0x28, 0x1F, 0x96, 0xB9, 0xA3, 0xFF] + [UInt8](repeating: 0, count: 7)
        attribute = [UInt8](repeating: 0, count: 32)
        // The EGA palette: entries 0-5 and 7 map to themselves, 6 to 0x14 (brown), 8-15 to 0x38-0x3F.
        for i in 0..<16 { attribute[i] = UInt8(i < 8 ? (i == 6 ? 0x14 : i) : 0x30 + i) }
        attribute[0x10] = 0x0C
        attribute[0x12] = 0x0F
        // The 64 EGA colours in DAC entries 0-63: two bits per primary, the low one the 0x38 group.
        for i in 0..<256 {
            let c = i & 0x3F
            func level(_ high: Int, _ low: Int) -> UInt8 {
                let h: Int = (c >> high) & 1, l: Int = (c >> low) & 1
                return UInt8(h * 0x2A + l * 0x15)
            }
            dac[i * 3] = i < 64 ? level(2, 5) : 0
            dac[i * 3 + 1] = i < 64 ? level(1, 4) : 0
            dac[i * 3 + 2] = i < 64 ? level(0, 3) : 0
        }
        for i in stride(from: 0, to: planes.count, by: 1) { planes[i] = 0 }
        if let font {
            for (i, b) in font.enumerated() where i / 16 < 256 { planes[((i / 16) * 32 + i % 16) * 4 + 2] = b }
        }
        for cell in 0..<(80 * 25) { planes[cell * 4 + 1] = 0x07 }
        dirty = true
        paletteDirty = true
    }
}
