/// Draws what a VGA would send to the monitor, from the registers and planes: text
/// modes (character and attribute in planes 0 and 1, the font in plane 2), the
/// 256-colour chain-4 modes (mode 13h) and the 16-colour planar modes. The output is
/// XRGB8888. The text cursor is drawn steadily (no blinking), so that two pictures of
/// the same screen are equal.
enum VGARenderer {
    struct Geometry: Equatable {
        var width: Int
        var height: Int
    }

    /// Sizes a renderer accepts; beyond them the guest's CRTC values are nonsense.
    static let maxWidth = 2048
    static let maxHeight = 1536

    static func geometry(of vga: VGA) -> Geometry? {
        let lines = vga.displayLines + 1
        let g: Geometry
        if !vga.graphicsMode {
            let rows = lines / vga.characterHeight
            g = Geometry(width: vga.textColumns * vga.characterWidth, height: rows * vga.characterHeight)
        } else {
            let scan = (vga.crtc[9] & 0x80 != 0 ? 2 : 1) * (Int(vga.crtc[9] & 0x1F) + 1)
            var w = vga.textColumns * 8
            if vga.shift256 { w /= 2 }   // two clocks per 256-colour pixel
            g = Geometry(width: w, height: lines / scan)
        }
        guard (1...maxWidth).contains(g.width), (1...maxHeight).contains(g.height) else { return nil }
        return g
    }

    static func render(_ vga: VGA, into screen: UnsafeMutablePointer<UInt32>, width: Int, height: Int) {
        var colors = [UInt32](repeating: 0, count: 256)
        for i in 0..<256 { colors[i] = vga.dacColor(i) }
        if !vga.graphicsMode {
            renderText(vga, colors, screen, width, height)
        } else if vga.shift256 {
            renderChain4(vga, colors, screen, width, height)
        } else {
            renderPlanar(vga, colors, screen, width, height)
        }
    }

    private static func renderText(_ vga: VGA, _ colors: [UInt32], _ screen: UnsafeMutablePointer<UInt32>,
                                   _ width: Int, _ height: Int) {
        let cw = vga.characterWidth, ch = vga.characterHeight
        let columns = width / cw, rows = height / ch
        // Line offset (CRTC 0x13) counts words: two bytes, one character each here.
        let stride = max(Int(vga.crtc[0x13]) * 2, columns)
        let mapSelect = Int(vga.sequencer[3])
        // Character map select: map B (attribute bit 3 clear) in bits 0-1 and 4, map A in
        // bits 2-3 and 5; map n starts at (n & 3) * 16 KiB + (n >> 2) * 8 KiB of plane 2.
        func fontBase(_ n: Int) -> Int { (n & 3) * 16384 + (n >> 2) * 8192 }
        let fontB = fontBase(mapSelect & 3 | (mapSelect >> 4 & 1) << 2)
        let fontA = fontBase(mapSelect >> 2 & 3 | (mapSelect >> 5 & 1) << 2)
        let lineGraphics = vga.attribute[0x10] & 0x04 != 0
        let blinkAttribute = vga.attribute[0x10] & 0x08 != 0
        let cursorOn = vga.crtc[0x0A] & 0x20 == 0
        let cursorStart = Int(vga.crtc[0x0A] & 0x1F), cursorEnd = Int(vga.crtc[0x0B] & 0x1F)
        let start = vga.startAddress, cursorCell = vga.cursorAddress - start
        var attributeColor = [UInt32](repeating: 0, count: 16)
        for i in 0..<16 { attributeColor[i] = colors[vga.attributeColor(i)] }
        for row in 0..<rows {
            for col in 0..<columns {
                let cell = (start + row * stride + col) & 0xFFFF
                let code = Int(vga.planes[cell * 4])
                let attr = Int(vga.planes[cell * 4 + 1])
                let fg = attributeColor[attr & 0x0F]
                let bg = attributeColor[blinkAttribute ? (attr >> 4) & 7 : attr >> 4]
                let base = attr & 0x08 != 0 && fontA != fontB ? fontA : fontB
                let isCursor = cursorOn && row * stride + col == cursorCell
                for line in 0..<ch {
                    var bits = Int(vga.planes[((base + code * 32 + line) & 0xFFFF) * 4 + 2])
                    if isCursor && line >= cursorStart && line <= cursorEnd { bits = 0xFF }
                    let out = screen + (row * ch + line) * width + col * cw
                    for x in 0..<8 { out[x] = bits & (0x80 >> x) != 0 ? fg : bg }
                    if cw == 9 {
                        // The ninth column repeats the eighth for the box-drawing characters.
                        out[8] = lineGraphics && (0xC0...0xDF).contains(code) && bits & 1 != 0 ? fg : bg
                    }
                }
            }
        }
    }

    private static func renderChain4(_ vga: VGA, _ colors: [UInt32], _ screen: UnsafeMutablePointer<UInt32>,
                                     _ width: Int, _ height: Int) {
        let pitch = max(Int(vga.crtc[0x13]) * 8, width)
        let start = vga.startAddress * 4
        for y in 0..<height {
            for x in 0..<width {
                screen[y * width + x] = colors[Int(vga.planes[(start + y * pitch + x) & 0xFFFF])]
            }
        }
    }

    private static func renderPlanar(_ vga: VGA, _ colors: [UInt32], _ screen: UnsafeMutablePointer<UInt32>,
                                     _ width: Int, _ height: Int) {
        let pitch = max(Int(vga.crtc[0x13]) * 2, width / 8)
        let start = vga.startAddress
        var attributeColor = [UInt32](repeating: 0, count: 16)
        for i in 0..<16 { attributeColor[i] = colors[vga.attributeColor(i)] }
        for y in 0..<height {
            for x in 0..<width {
                let addr = (start + y * pitch + x / 8) & 0xFFFF
                let bit = 7 - x % 8
                var index = 0
                for p in 0..<4 where Int(vga.planes[addr * 4 + p]) >> bit & 1 != 0 { index |= 1 << p }
                screen[y * width + x] = attributeColor[index & Int(vga.attribute[0x12] & 0x0F)]
            }
        }
    }
}
