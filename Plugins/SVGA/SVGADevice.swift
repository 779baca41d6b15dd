import Glibc
import PluginABI

/// One VMware SVGA II adapter (15ad:0405) with its VGA and Bochs DISPI compatibility.
///
/// Threading: an ordinary (locked) model. The host calls every entry point (BAR and
/// legacy-window accesses on vCPU threads, the refresh timer, reset, commands) under
/// the instance's device lock, so the state below needs no lock of its own. The host's
/// consoles read the published framebuffer (VRAM or `screen`) on their own threads;
/// they never write it.
final class SVGADevice {
    /// The refresh period: FIFO processing without a SYNC, VGA re-rendering, and the
    /// dirty-page scan of a framebuffer the guest draws into without UPDATE commands.
    static let refreshNs: UInt64 = 20_000_000
    static let maxWidth: UInt32 = 2560
    static let maxHeight: UInt32 = 1600
    static let fifoSize = 256 << 10
    static let guestErrorLogLimit = 32
    static let fifoCapabilities = SVGAFIFOCap.fence | SVGAFIFOCap.cursorBypass3

    // MARK: host services

    let host: OpaquePointer
    let services: hv_host_services
    let display: UnsafePointer<hv_display_ext>
    let ramBar: UnsafePointer<hv_ram_bar_ext>
    var refreshTimer: OpaquePointer?

    // MARK: memory

    let vram: UnsafeMutableRawPointer
    let vramSize: Int
    let vramBarSize: Int
    let fifo: UnsafeMutableRawPointer
    /// What the VGA renderer draws into (XRGB8888), published while VGA shows.
    var screen: UnsafeMutablePointer<UInt32>?
    var screenPixels = 0
    private var dirtyBitmap: [UInt64]

    // MARK: SVGA II registers

    var index: UInt32 = 0
    var versionID = SVGAVersion.id2
    var enabled = false
    var configDone = false
    var width: UInt32 = 1024
    var height: UInt32 = 768
    var bitsPerPixel: UInt32 = 32
    var pitchlock: UInt32 = 0
    var fbOffset: UInt32 = 0
    var guestID: UInt32 = 0
    var irqMask: UInt32 = 0
    var irqStatus: UInt32 = 0
    var palette = [UInt8](repeating: 0, count: Int(SVGAReg.paletteCount))
    var scratch = [UInt32](repeating: 0, count: Int(SVGAReg.scratchCount))
    var cursor = CursorState()

    // MARK: compatibility

    let vga = VGA()
    var dispi = BochsDISPI()
    let font: [UInt8]?

    // MARK: what the display shows

    enum Source: Equatable {
        case none
        case svga
        case dispi
        case vga(width: Int, height: Int)
    }
    struct Published: Equatable {
        var source: Source
        var width: UInt32
        var height: UInt32
        var pitch: UInt32
        var format: UInt32
        var offset: Int
    }
    var published: Published?

    // MARK: accounting

    var fifoErrors: UInt64 = 0
    var commandsProcessed: UInt64 = 0
    var guestErrors = 0

    init(host: OpaquePointer, services: hv_host_services, display: UnsafePointer<hv_display_ext>,
         ramBar: UnsafePointer<hv_ram_bar_ext>, vram: UnsafeMutableRawPointer, vramSize: Int, vramBarSize: Int,
         fifo: UnsafeMutableRawPointer, font: [UInt8]?) {
        self.host = host
        self.services = services
        self.display = display
        self.ramBar = ramBar
        self.vram = vram
        self.vramSize = vramSize
        self.vramBarSize = vramBarSize
        self.fifo = fifo
        self.font = font
        dirtyBitmap = [UInt64](repeating: 0, count: (vramBarSize / Int(HV_RAM_BAR_PAGE_SIZE) + 63) / 64)
    }

    deinit {
        screen?.deallocate()
    }

    func log(_ level: Int32, _ text: String) {
        text.withCString { services.log(host, level, $0) }
    }

    /// A guest mistake, logged a bounded number of times per instance.
    func guestError(_ text: String) {
        guestErrors += 1
        if guestErrors <= Self.guestErrorLogLimit {
            log(HV_LOG_WARN, text + (guestErrors == Self.guestErrorLogLimit ? " (further guest errors not logged)" : ""))
        }
    }

    // MARK: lifecycle

    func powerOnReset() {
        index = 0
        versionID = SVGAVersion.id2
        enabled = false
        configDone = false
        width = 1024
        height = 768
        bitsPerPixel = 32
        pitchlock = 0
        fbOffset = 0
        guestID = 0
        irqMask = 0
        irqStatus = 0
        cursor = CursorState()
        dispi = BochsDISPI()
        vga.presetTextMode(font: font)
        for i in 0..<Self.fifoSize / 4 { fifoWord(i, 0) }
        fifoWord(SVGAFIFOReg.capabilities, Self.fifoCapabilities)
        services.irq_set_level(host, 0)
        _ = display.pointee.cursor_show(host, 0)
        published = nil
        refresh()
    }

    // MARK: the I/O BAR

    func ioRead(offset: UInt64, size: UInt32) -> UInt64 {
        switch offset {
        case SVGAPort.index: return UInt64(index)
        case SVGAPort.value: return UInt64(registerRead(index))
        case SVGAPort.bios: return 0
        case SVGAPort.irqStatus: return UInt64(irqStatus)
        default: return size == 4 ? 0xFFFF_FFFF : (1 << (8 * UInt64(size))) - 1
        }
    }

    func ioWrite(offset: UInt64, size: UInt32, value: UInt64) {
        let v = UInt32(truncatingIfNeeded: value)
        switch offset {
        case SVGAPort.index: index = v
        case SVGAPort.value: registerWrite(index, v)
        case SVGAPort.irqStatus:
            irqStatus &= ~v
            updateIRQ()
        default: break
        }
    }

    var pitch: UInt32 {
        pitchlock != 0 ? pitchlock : (width * bitsPerPixel + 31) / 32 * 4
    }

    var depth: UInt32 {
        switch bitsPerPixel {
        case 32: 24
        case 15: 15
        default: bitsPerPixel
        }
    }

    var masks: (red: UInt32, green: UInt32, blue: UInt32) {
        switch bitsPerPixel {
        case 16: (0xF800, 0x07E0, 0x001F)
        case 15: (0x7C00, 0x03E0, 0x001F)
        case 8: (0, 0, 0)
        default: (0xFF0000, 0x00FF00, 0x0000FF)
        }
    }

    var capabilities: UInt32 {
        SVGACap.rectFill | SVGACap.rectCopy | SVGACap.cursor | SVGACap.cursorBypass | SVGACap.cursorBypass2
            | SVGACap.emulation8Bit | SVGACap.alphaCursor | SVGACap.extendedFIFO | SVGACap.pitchlock | SVGACap.irqMask
    }

    func registerRead(_ reg: UInt32) -> UInt32 {
        switch reg {
        case SVGAReg.id: return versionID
        case SVGAReg.enable: return enabled ? 1 : 0
        case SVGAReg.width: return width
        case SVGAReg.height: return height
        case SVGAReg.maxWidth: return Self.maxWidth
        case SVGAReg.maxHeight: return Self.maxHeight
        case SVGAReg.depth: return depth
        case SVGAReg.bitsPerPixel, SVGAReg.hostBitsPerPixel: return bitsPerPixel
        case SVGAReg.pseudoColor: return bitsPerPixel == 8 ? 1 : 0
        case SVGAReg.redMask: return masks.red
        case SVGAReg.greenMask: return masks.green
        case SVGAReg.blueMask: return masks.blue
        case SVGAReg.bytesPerLine: return pitch
        case SVGAReg.fbStart: return UInt32(truncatingIfNeeded: services.pci_bar_address(host, 1))
        case SVGAReg.fbOffset: return fbOffset
        case SVGAReg.vramSize: return UInt32(vramSize)
        case SVGAReg.fbSize: return min(UInt32(vramSize), pitch &* height)
        case SVGAReg.capabilities: return versionID >= SVGAVersion.id1 ? capabilities : 0
        case SVGAReg.memStart: return UInt32(truncatingIfNeeded: services.pci_bar_address(host, 2))
        case SVGAReg.memSize: return UInt32(Self.fifoSize)
        case SVGAReg.configDone: return configDone ? 1 : 0
        case SVGAReg.sync: return 0
        case SVGAReg.busy: return 0   // a SYNC is processed before the write returns
        case SVGAReg.guestID: return guestID
        case SVGAReg.cursorID: return cursor.id
        case SVGAReg.cursorX: return UInt32(bitPattern: cursor.x)
        case SVGAReg.cursorY: return UInt32(bitPattern: cursor.y)
        case SVGAReg.cursorOn: return cursor.on ? 1 : 0
        case SVGAReg.scratchSize: return SVGAReg.scratchCount
        case SVGAReg.memRegs: return UInt32(SVGAFIFOReg.busy + 1)
        case SVGAReg.numDisplays: return 1
        case SVGAReg.pitchlock: return pitchlock
        case SVGAReg.irqMask: return irqMask
        case SVGAReg.paletteBase..<SVGAReg.scratchBase: return UInt32(palette[Int(reg - SVGAReg.paletteBase)])
        case SVGAReg.scratchBase..<(SVGAReg.scratchBase + SVGAReg.scratchCount):
            return scratch[Int(reg - SVGAReg.scratchBase)]
        default: return 0
        }
    }

    func registerWrite(_ reg: UInt32, _ v: UInt32) {
        switch reg {
        case SVGAReg.id:
            // The device speaks every version up to 2; a newer request reads back as
            // invalid, which is how a driver learns to try an older one.
            versionID = (v >> 8) == SVGAVersion.magic && v & 0xFF <= 2 ? v : SVGAVersion.invalid
        case SVGAReg.enable:
            enabled = v & 1 != 0
            // Drivers read the FIFO's capabilities after enabling; the guest may have
            // scribbled over the register while the device was off.
            if enabled { fifoWord(SVGAFIFOReg.capabilities, Self.fifoCapabilities) }
            if !enabled { configDone = false }
            updateMode()
        case SVGAReg.width:
            if (1...Self.maxWidth).contains(v) { width = v; updateMode() } else { guestError("SVGA width \(v) refused") }
        case SVGAReg.height:
            if (1...Self.maxHeight).contains(v) { height = v; updateMode() } else { guestError("SVGA height \(v) refused") }
        case SVGAReg.bitsPerPixel:
            if [8, 15, 16, 24, 32].contains(v) { bitsPerPixel = v; updateMode() } else { guestError("SVGA bpp \(v) refused") }
        case SVGAReg.pitchlock:
            pitchlock = v
            updateMode()
        case SVGAReg.fbOffset:
            fbOffset = v
            updateMode()
        case SVGAReg.configDone:
            configDone = v != 0
            if configDone { processFIFO() }
        case SVGAReg.sync:
            processFIFO()
        case SVGAReg.guestID: guestID = v
        case SVGAReg.cursorID: cursor.id = v
        case SVGAReg.cursorX:
            cursor.x = Int32(bitPattern: v)
            moveCursor()
        case SVGAReg.cursorY:
            cursor.y = Int32(bitPattern: v)
            moveCursor()
        case SVGAReg.cursorOn:
            cursor.on = v != 0
            showCursor()
        case SVGAReg.irqMask:
            irqMask = v & SVGAIRQ.all
            updateIRQ()
        case SVGAReg.paletteBase..<SVGAReg.scratchBase:
            palette[Int(reg - SVGAReg.paletteBase)] = UInt8(truncatingIfNeeded: v)
            if bitsPerPixel == 8 { publishPalette() }
        case SVGAReg.scratchBase..<(SVGAReg.scratchBase + SVGAReg.scratchCount):
            scratch[Int(reg - SVGAReg.scratchBase)] = v
        default: break
        }
    }

    func raiseIRQ(_ flags: UInt32) {
        irqStatus |= flags & irqMask
        updateIRQ()
    }

    func updateIRQ() {
        services.irq_set_level(host, irqStatus & irqMask != 0 ? 1 : 0)
    }

    // MARK: FIFO words (guest-shared memory: every read is one load)

    func fifoWord(_ i: Int) -> UInt32 {
        (fifo + i * 4).assumingMemoryBound(to: UInt32.self).pointee
    }

    func fifoWord(_ i: Int, _ v: UInt32) {
        (fifo + i * 4).assumingMemoryBound(to: UInt32.self).pointee = v
    }

    // MARK: the display

    /// Publishes whatever the guest has switched on: the SVGA mode, a DISPI mode, or
    /// the VGA picture; and marks changes as damage.
    func refresh() {
        updateMode()
        guard let current = published else { return }
        switch current.source {
        case .vga:
            if vga.dirty || vga.paletteDirty {
                renderVGA(into: current)
                _ = display.pointee.update(host, 0, 0, current.width, current.height)
            }
        case .svga, .dispi:
            damageDirtyPages(of: current)
        case .none:
            break
        }
    }

    /// Publishes a changed mode now (a register write); the picture itself is redrawn and
    /// damaged by the refresh timer.
    func updateMode() {
        let wanted = wantedMode()
        if wanted != published { publish(wanted) }
    }

    func wantedMode() -> Published? {
        if enabled {
            let format: UInt32
            switch bitsPerPixel {
            case 32: format = HV_PIXEL_XRGB8888
            case 24: format = HV_PIXEL_RGB888
            case 16: format = HV_PIXEL_RGB565
            case 15: format = HV_PIXEL_XRGB1555
            default: format = HV_PIXEL_INDEXED8
            }
            let bytes = UInt64(fbOffset) + UInt64(pitch) * UInt64(height)
            guard bytes <= UInt64(vramSize) else { return nil }
            return Published(source: .svga, width: width, height: height, pitch: pitch, format: format,
                             offset: Int(fbOffset))
        }
        if dispi.enabled {
            return dispi.mode(vramSize: vramSize).map {
                Published(source: .dispi, width: $0.width, height: $0.height, pitch: $0.pitch, format: $0.format,
                          offset: $0.offset)
            }
        }
        guard let geometry = VGARenderer.geometry(of: vga) else { return nil }
        return Published(source: .vga(width: geometry.width, height: geometry.height), width: UInt32(geometry.width),
                         height: UInt32(geometry.height), pitch: UInt32(geometry.width * 4), format: HV_PIXEL_XRGB8888,
                         offset: 0)
    }

    private func publish(_ wanted: Published?) {
        guard let wanted else {
            _ = display.pointee.set_mode(host, nil)
            published = nil
            return
        }
        var mode = hv_display_mode()
        mode.struct_size = UInt32(MemoryLayout<hv_display_mode>.size)
        mode.width = wanted.width
        mode.height = wanted.height
        mode.pitch = wanted.pitch
        mode.format = wanted.format
        mode.bits_per_pixel = [HV_PIXEL_XRGB8888: 32, HV_PIXEL_RGB888: 24, HV_PIXEL_INDEXED8: 8][wanted.format] ?? 16
        var oldScreen: UnsafeMutablePointer<UInt32>?
        if case .vga(let w, let h) = wanted.source {
            // A fresh buffer per VGA geometry; the old one is freed after set_mode returns.
            oldScreen = screen
            screen = .allocate(capacity: w * h)
            screen!.initialize(repeating: 0, count: w * h)
            screenPixels = w * h
            mode.framebuffer = UnsafeRawPointer(screen!)
            vga.dirty = true
        } else {
            mode.framebuffer = UnsafeRawPointer(vram + wanted.offset)
        }
        let rc = display.pointee.set_mode(host, &mode)
        oldScreen?.deallocate()
        if rc != HV_OK {
            guestError("display mode \(wanted.width)x\(wanted.height) pitch \(wanted.pitch) refused by the host (\(rc))")
            _ = display.pointee.set_mode(host, nil)
            published = nil
            return
        }
        published = wanted
        if wanted.format == HV_PIXEL_INDEXED8 { publishPalette() }
        if case .vga = wanted.source { renderVGA(into: wanted) }
        // Start the dirty log afresh: the whole screen is damaged by set_mode anyway.
        _ = ramBar.pointee.ram_bar_dirty(host, 1, &dirtyBitmap, dirtyBitmap.count)
    }

    func publishPalette() {
        var colors = [UInt32](repeating: 0, count: 256)
        if published?.source == .dispi {
            for i in 0..<256 { colors[i] = vga.dacColor(i) }
        } else {
            for i in 0..<256 {
                colors[i] = UInt32(palette[i * 3]) << 16 | UInt32(palette[i * 3 + 1]) << 8 | UInt32(palette[i * 3 + 2])
            }
        }
        _ = display.pointee.set_palette(host, 0, 256, colors)
    }

    private func renderVGA(into mode: Published) {
        guard let screen, screenPixels == Int(mode.width) * Int(mode.height) else { return }
        VGARenderer.render(vga, into: screen, width: Int(mode.width), height: Int(mode.height))
        vga.dirty = false
        vga.paletteDirty = false
    }

    /// Turns the guest's writes to VRAM since the last look into damage rows.
    private func damageDirtyPages(of mode: Published) {
        if mode.format == HV_PIXEL_INDEXED8, mode.source == .dispi, vga.paletteDirty {
            vga.paletteDirty = false
            publishPalette()
        }
        let n = ramBar.pointee.ram_bar_dirty(host, 1, &dirtyBitmap, dirtyBitmap.count)
        guard n > 0 else { return }
        let page = Int(HV_RAM_BAR_PAGE_SIZE)
        let first = mode.offset / page
        let last = (mode.offset + Int(mode.pitch) * Int(mode.height) - 1) / page
        var runStart = -1
        func flush(_ end: Int) {
            guard runStart >= 0 else { return }
            let startByte = max(runStart * page - mode.offset, 0)
            let endByte = end * page - mode.offset
            let y0 = startByte / Int(mode.pitch)
            let y1 = min((endByte + Int(mode.pitch) - 1) / Int(mode.pitch), Int(mode.height))
            if y1 > y0 { _ = display.pointee.update(host, 0, UInt32(y0), mode.width, UInt32(y1 - y0)) }
            runStart = -1
        }
        for p in first...last {
            let isDirty = dirtyBitmap[p / 64] & (1 << UInt64(p % 64)) != 0
            if isDirty, runStart < 0 { runStart = p }
            if !isDirty { flush(p) }
        }
        flush(last + 1)
    }

    func timerFired() {
        if enabled && configDone { processFIFO() }
        refresh()
        armTimer()
    }

    func armTimer() {
        guard let refreshTimer else { return }
        services.timer_arm(host, refreshTimer, services.clock_ns(host) + Self.refreshNs)
    }
}

/// The hardware cursor as the guest defined it.
struct CursorState {
    var id: UInt32 = 0
    var x: Int32 = 0
    var y: Int32 = 0
    var on = false
    var defined = false
    /// The last SVGA_FIFO_CURSOR_COUNT applied.
    var fifoCount: UInt32 = 0
    /// The image last defined (kept for saved state).
    var image = CursorImage()
}

struct CursorImage {
    var width: UInt32 = 0
    var height: UInt32 = 0
    var hotX: UInt32 = 0
    var hotY: UInt32 = 0
    var pixels: [UInt32] = []
}
