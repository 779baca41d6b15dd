import PluginABI

/// The Bochs VBE "DISPI" interface at ports 0x1CE (index) and 0x1CF (data), through
/// which SeaBIOS's vgabios-vmware.bin sets VBE modes with the linear framebuffer at
/// BAR1, as QEMU's vmware-svga offers it.
struct BochsDISPI {
    static let indexPort: UInt16 = 0x1CE
    static let dataPort: UInt16 = 0x1CF
    static let maxX: UInt16 = 2560
    static let maxY: UInt16 = 1600
    static let maxBPP: UInt16 = 32
    /// VBE_DISPI_ID0..ID5: the versions a guest may ask for; this model is ID5.
    static let idRange: ClosedRange<UInt16> = 0xB0C0...0xB0C5

    enum Reg {
        static let id = 0, xres = 1, yres = 2, bpp = 3, enable = 4, bank = 5
        static let virtWidth = 6, virtHeight = 7, xOffset = 8, yOffset = 9, videoMemory64K = 10
    }
    enum Enable {
        static let enabled: UInt16 = 0x01
        static let getCaps: UInt16 = 0x02
        static let lfb: UInt16 = 0x40
        static let noClearMem: UInt16 = 0x80
    }

    var index: UInt16 = 0
    var regs = [UInt16](repeating: 0, count: 11)

    init() {
        regs[Reg.id] = 0xB0C5
        regs[Reg.xres] = 640
        regs[Reg.yres] = 480
        regs[Reg.bpp] = 8
    }

    var enabled: Bool { regs[Reg.enable] & Enable.enabled != 0 }
    var bank: Int { Int(regs[Reg.bank]) }

    func read(_ port: UInt16, vramSize: Int) -> UInt16 {
        guard port != Self.indexPort else { return index }
        let i = Int(index)
        guard i < regs.count else { return 0 }
        if regs[Reg.enable] & Enable.getCaps != 0 {
            switch i {
            case Reg.xres: return Self.maxX
            case Reg.yres: return Self.maxY
            case Reg.bpp: return Self.maxBPP
            default: break
            }
        }
        if i == Reg.videoMemory64K { return UInt16(min(vramSize >> 16, 0xFFFF)) }
        return regs[i]
    }

    /// Returns true when the written value may change what the screen shows; `clear`
    /// is set when enabling asks for the framebuffer to be cleared.
    mutating func write(_ port: UInt16, _ value: UInt16, clear: inout Bool) -> Bool {
        guard port != Self.indexPort else { index = value; return false }
        let i = Int(index)
        guard i < regs.count else { return false }
        switch i {
        case Reg.id:
            if Self.idRange.contains(value) { regs[i] = value }
            return false
        case Reg.xres: regs[i] = min(value, Self.maxX) & ~7
        case Reg.yres: regs[i] = min(value, Self.maxY)
        case Reg.bpp: regs[i] = [4, 8, 15, 16, 24, 32].contains(value) ? value : regs[i]
        case Reg.enable:
            let wasEnabled = enabled
            regs[i] = value
            if enabled && !wasEnabled {
                regs[Reg.virtWidth] = regs[Reg.xres]
                regs[Reg.virtHeight] = regs[Reg.yres]
                regs[Reg.xOffset] = 0
                regs[Reg.yOffset] = 0
                clear = value & Enable.noClearMem == 0
            }
        case Reg.videoMemory64K: return false
        default: regs[i] = value
        }
        return true
    }

    struct Mode {
        var width: UInt32
        var height: UInt32
        var pitch: UInt32
        var format: UInt32
        var offset: Int
    }

    /// The enabled mode, or nil when its geometry does not fit in VRAM or is unusable.
    func mode(vramSize: Int) -> Mode? {
        let bpp = UInt32(regs[Reg.bpp])
        let format: UInt32
        switch bpp {
        case 32: format = HV_PIXEL_XRGB8888
        case 24: format = HV_PIXEL_RGB888
        case 16: format = HV_PIXEL_RGB565
        case 15: format = HV_PIXEL_XRGB1555
        case 8: format = HV_PIXEL_INDEXED8
        default: return nil
        }
        let w = UInt32(regs[Reg.xres]), h = UInt32(regs[Reg.yres])
        let virtualWidth = max(UInt32(regs[Reg.virtWidth]), w)
        let pitch = virtualWidth * ((bpp + 7) / 8)
        guard w > 0, h > 0 else { return nil }
        let offset = Int(regs[Reg.yOffset]) * Int(pitch) + Int(regs[Reg.xOffset]) * Int((bpp + 7) / 8)
        guard offset + Int(pitch) * Int(h) <= vramSize else { return nil }
        return Mode(width: w, height: h, pitch: pitch, format: format, offset: offset)
    }
}
