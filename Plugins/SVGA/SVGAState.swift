import PluginABI

// Saved state (suspend/resume): the registers of the three personalities, the VGA
// planes, VRAM and the FIFO (RAM BARs are the device's memory: the host does not save
// them), and the last cursor image. A loaded state is checked like guest writes.

extension SVGADevice {
    static let stateVersion: UInt32 = 1

    private var registerWords: [UInt32] {
        [index, versionID, enabled ? 1 : 0, configDone ? 1 : 0, width, height, bitsPerPixel, pitchlock, fbOffset,
         guestID, irqMask, irqStatus, cursor.id, UInt32(bitPattern: cursor.x), UInt32(bitPattern: cursor.y),
         cursor.on ? 1 : 0, cursor.fifoCount]
    }

    private var vgaBytes: [UInt8] {
        [vga.miscOutput, vga.sequencerIndex, vga.graphicsIndex, vga.crtcIndex, vga.attributeIndex,
         vga.attributeFlip ? 1 : 0, UInt8(vga.dacReadIndex), UInt8(vga.dacWriteIndex), UInt8(vga.dacComponent),
         vga.dacState, vga.dacMask, vga.featureControl]
            + vga.sequencer + vga.graphics + vga.crtc + vga.attribute + vga.dac
    }

    func saveState(_ writer: OpaquePointer?) -> Int32 {
        guard let put = services.state_put else { return HV_ENOSYS }
        var rc: Int32 = HV_OK
        func field(_ name: String, _ data: UnsafeRawPointer, _ len: Int) {
            guard rc >= 0 else { return }
            rc = name.withCString { put(writer, $0, HV_STATE_BYTES, data, len) }
        }
        func bytes<T>(_ name: String, _ array: [T]) {
            array.withUnsafeBytes { field(name, $0.baseAddress!, $0.count) }
        }
        bytes("registers", registerWords)
        bytes("palette", palette)
        bytes("scratch", scratch)
        bytes("vga", vgaBytes)
        bytes("planes", vga.planes)
        bytes("dispi", [dispi.index] + dispi.regs)
        bytes("cursorShape", [cursor.image.width, cursor.image.height, cursor.image.hotX, cursor.image.hotY])
        if !cursor.image.pixels.isEmpty { bytes("cursorPixels", cursor.image.pixels) }
        field("vram", vram, vramSize)
        field("fifo", fifo, Self.fifoSize)
        return rc < 0 ? rc : HV_OK
    }

    func loadState(_ reader: OpaquePointer?, version: UInt32) -> Int32 {
        guard version <= Self.stateVersion else { return HV_ENOTSUP }
        guard let get = services.state_get else { return HV_ENOSYS }
        powerOnReset()
        func read<T>(_ name: String, count: Int, _: T.Type) -> [T]? {
            var out = [UInt8](repeating: 0, count: count * MemoryLayout<T>.stride)
            let rc = out.withUnsafeMutableBytes { p in name.withCString { get(reader, $0, HV_STATE_BYTES, p.baseAddress!, p.count) } }
            guard rc == HV_OK else { return nil }
            return out.withUnsafeBytes { Array($0.bindMemory(to: T.self)) }
        }
        guard let r = read("registers", count: registerWords.count, UInt32.self),
              let pal = read("palette", count: palette.count, UInt8.self),
              let scr = read("scratch", count: scratch.count, UInt32.self),
              let v = read("vga", count: vgaBytes.count, UInt8.self),
              let planes = read("planes", count: vga.planes.count, UInt8.self),
              let d = read("dispi", count: dispi.regs.count + 1, UInt16.self) else { return HV_EINVAL }
        guard (1...Self.maxWidth).contains(r[4]), (1...Self.maxHeight).contains(r[5]), [8, 15, 16, 24, 32].contains(r[6]),
              d[1 + BochsDISPI.Reg.xres] <= BochsDISPI.maxX, d[1 + BochsDISPI.Reg.yres] <= BochsDISPI.maxY
        else { return HV_EINVAL }
        let memoryOK = [("vram", vram, vramSize), ("fifo", fifo, Self.fifoSize)].allSatisfy { name, p, len in
            name.withCString { get(reader, $0, HV_STATE_BYTES, p, len) } == HV_OK
        }
        guard memoryOK else { return HV_EINVAL }
        (index, versionID, enabled, configDone) = (r[0], r[1], r[2] != 0, r[3] != 0)
        (width, height, bitsPerPixel, pitchlock, fbOffset) = (r[4], r[5], r[6], r[7], r[8])
        (guestID, irqMask, irqStatus) = (r[9], r[10] & SVGAIRQ.all, r[11] & SVGAIRQ.all)
        cursor.id = r[12]
        cursor.x = Int32(bitPattern: r[13])
        cursor.y = Int32(bitPattern: r[14])
        cursor.on = r[15] != 0
        cursor.fifoCount = r[16]
        palette = pal
        scratch = scr
        vga.miscOutput = v[0]
        vga.sequencerIndex = v[1] & 7
        vga.graphicsIndex = v[2] & 0x0F
        vga.crtcIndex = v[3] & 0x1F
        vga.attributeIndex = v[4] & 0x3F
        vga.attributeFlip = v[5] != 0
        (vga.dacReadIndex, vga.dacWriteIndex, vga.dacComponent) = (Int(v[6]), Int(v[7]), Int(v[8]) % 3)
        (vga.dacState, vga.dacMask, vga.featureControl) = (v[9], v[10], v[11])
        var o = 12
        func take(_ n: Int) -> [UInt8] { defer { o += n }; return Array(v[o..<(o + n)]) }
        vga.sequencer = take(8)
        vga.graphics = take(16)
        vga.crtc = take(32)
        vga.attribute = take(32)
        vga.dac = take(768).map { $0 & 0x3F }
        vga.planes = planes
        vga.dirty = true
        vga.paletteDirty = true
        dispi.index = d[0]
        dispi.regs = Array(d[1...])
        // The cursor image (width, height, hotspot; pixels); absent or bad means none.
        if let head = read("cursorShape", count: 4, UInt32.self), head[0] >= 1, head[0] <= Self.maxCursor,
           head[1] >= 1, head[1] <= Self.maxCursor, head[2] < head[0], head[3] < head[1],
           let pixels = read("cursorPixels", count: Int(head[0] * head[1]), UInt32.self) {
            setCursor(id: cursor.id, width: head[0], height: head[1], hotX: head[2], hotY: head[3], pixels: pixels)
        }
        moveCursor()
        showCursor()
        updateIRQ()
        published = nil
        refresh()
        if bitsPerPixel == 8 { publishPalette() }
        return HV_OK
    }
}
