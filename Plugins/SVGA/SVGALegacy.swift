import PluginABI

// The legacy decoders: VGA ports 0x3C0-0x3DF, the Bochs DISPI ports and the
// 0xA0000-0xBFFFF window. Multi-byte accesses are split into bytes on consecutive
// ports or addresses, as the ISA bus does (an `out dx, ax` to 0x3C4 writes index and
// data).

extension SVGADevice {
    func legacyPortRead(_ port: UInt16, size: Int) -> UInt64 {
        if (BochsDISPI.indexPort...BochsDISPI.indexPort + 3).contains(port) {
            // 0x1D0 is the old data port alias.
            let p = port >= BochsDISPI.dataPort ? BochsDISPI.dataPort : BochsDISPI.indexPort
            return UInt64(dispi.read(p, vramSize: vramSize))
        }
        var v: UInt64 = 0
        for i in 0..<size { v |= UInt64(vga.portRead(port &+ UInt16(i))) << (8 * UInt64(i)) }
        return v
    }

    func legacyPortWrite(_ port: UInt16, size: Int, value: UInt64) {
        if (BochsDISPI.indexPort...BochsDISPI.indexPort + 3).contains(port) {
            let p = port >= BochsDISPI.dataPort ? BochsDISPI.dataPort : BochsDISPI.indexPort
            var clear = false
            if dispi.write(p, UInt16(truncatingIfNeeded: value), clear: &clear) {
                if clear, let mode = dispi.mode(vramSize: vramSize) {
                    vram.initializeMemory(as: UInt8.self, repeating: 0, count: min(vramSize, mode.offset + Int(mode.pitch) * Int(mode.height)))
                }
                updateMode()
            }
            return
        }
        let paletteBefore = vga.paletteDirty
        for i in 0..<size { vga.portWrite(port &+ UInt16(i), UInt8(truncatingIfNeeded: value >> (8 * UInt64(i)))) }
        // The DAC is the palette of 8-bit DISPI modes too.
        if !paletteBefore, vga.paletteDirty, published?.source == .dispi, published?.format == HV_PIXEL_INDEXED8 {
            vga.paletteDirty = false
            publishPalette()
        }
    }

    /// Offsets from 0xA0000. With DISPI enabled, 0xA0000-0xAFFFF is a 64 KiB bank of VRAM.
    func windowRead(_ offset: UInt64, size: Int) -> UInt64 {
        var v: UInt64 = 0
        for i in 0..<size {
            let o = offset + UInt64(i)
            let byte: UInt8
            if dispi.enabled {
                let a = dispi.bank * 0x10000 + Int(o)
                byte = o < 0x10000 && a < vramSize ? vram.load(fromByteOffset: a, as: UInt8.self) : 0xFF
            } else {
                byte = vga.memoryRead(o)
            }
            v |= UInt64(byte) << (8 * UInt64(i))
        }
        return v
    }

    func windowWrite(_ offset: UInt64, size: Int, value: UInt64) {
        for i in 0..<size {
            let o = offset + UInt64(i)
            let byte = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i)))
            if dispi.enabled {
                let a = dispi.bank * 0x10000 + Int(o)
                if o < 0x10000 && a < vramSize {
                    vram.storeBytes(of: byte, toByteOffset: a, as: UInt8.self)
                    if let p = published, p.source == .dispi, a >= p.offset, p.pitch > 0 {
                        let y = (a - p.offset) / Int(p.pitch)
                        if y < Int(p.height) { _ = display.pointee.update(host, 0, UInt32(y), p.width, 1) }
                    }
                }
            } else {
                vga.memoryWrite(o, byte)
            }
        }
    }

    /// The text screen as lines of characters (code page 437 below 0x80 as ASCII, others
    /// as '.'), for the `text` command and tests.
    func textScreen() -> String {
        guard !vga.graphicsMode else { return "(graphics mode)" }
        let columns = min(vga.textColumns, 200)
        let rows = min((vga.displayLines + 1) / vga.characterHeight, 100)
        let stride = max(Int(vga.crtc[0x13]) * 2, columns)
        var lines: [String] = []
        for row in 0..<rows {
            var line = ""
            for col in 0..<columns {
                let cell = (vga.startAddress + row * stride + col) & 0xFFFF
                let c = vga.planes[cell * 4]
                line.append(c >= 0x20 && c < 0x7F ? Character(Unicode.Scalar(c)) : (c == 0 ? " " : "."))
            }
            while line.hasSuffix(" ") { line.removeLast() }
            lines.append(line)
        }
        while lines.last == "" { lines.removeLast() }
        return lines.joined(separator: "\n")
    }
}
