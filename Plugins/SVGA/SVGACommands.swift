import Glibc
import PluginABI

// Declared keys and console commands: `hvhost plugins --keys svga`,
// `device VM svga regs|text|fifo`. The model is not thread-safe, so the host calls these
// under its device lock.

let svgaKeys: UnsafePointer<hv_config_key> = {
    let keys = UnsafeMutablePointer<hv_config_key>.allocate(capacity: 2)
    keys[0] = hv_config_key(struct_size: UInt32(MemoryLayout<hv_config_key>.size), type: HV_KEY_STRING,
                            name: cString("vgaBios"), min: 0, max: -1, choices: nil, default_value: nil,
                            help: cString("the expansion ROM: \"default\" (/usr/share/seabios/vgabios-vmware.bin; the host's choice when the VM boots firmware), \"none\" or a ROM image path"))
    keys[1] = hv_config_key(struct_size: UInt32(MemoryLayout<hv_config_key>.size), type: HV_KEY_UINT,
                            name: cString("vramSize"), min: 1 << 20, max: 256 << 20, choices: nil,
                            default_value: cString("16777216"), help: cString("VRAM in bytes, a multiple of 4096"))
    return UnsafePointer(keys)
}()
let svgaKeyCount: UInt32 = 2

private func write(_ text: String, _ buf: UnsafeMutablePointer<CChar>?, _ len: Int) {
    guard let buf, len > 0 else { return }
    let bytes = Array(text.utf8.prefix(len - 1))
    bytes.withUnsafeBufferPointer { UnsafeMutableRawPointer(buf).copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
    buf[bytes.count] = 0
}

private let regsCommand: @convention(c) (OpaquePointer?, UnsafeMutablePointer<CChar>?, Int) -> Void = { dev, buf, len in
    guard let d = SVGADevice.from(dev) else { return }
    let shown: String
    switch d.published?.source {
    case .svga?: shown = "svga"
    case .dispi?: shown = "dispi"
    case .vga?: shown = d.vga.graphicsMode ? "vga-graphics" : "vga-text"
    default: shown = "blank"
    }
    let p = d.published
    write("id 0x\(String(d.versionID, radix: 16)) enable \(d.enabled ? 1 : 0) config_done \(d.configDone ? 1 : 0) " +
          "mode \(d.width)x\(d.height)x\(d.bitsPerPixel) pitch \(d.pitch) fb_offset \(d.fbOffset) irq_mask 0x\(String(d.irqMask, radix: 16)) " +
          "irq_status 0x\(String(d.irqStatus, radix: 16))\n" +
          "shown \(shown) \(p.map { "\($0.width)x\($0.height) pitch \($0.pitch)" } ?? "") " +
          "dispi enable 0x\(String(d.dispi.regs[BochsDISPI.Reg.enable], radix: 16)) " +
          "\(d.dispi.regs[BochsDISPI.Reg.xres])x\(d.dispi.regs[BochsDISPI.Reg.yres])x\(d.dispi.regs[BochsDISPI.Reg.bpp])", buf, len)
}

private let textCommand: @convention(c) (OpaquePointer?, UnsafeMutablePointer<CChar>?, Int) -> Void = { dev, buf, len in
    guard let d = SVGADevice.from(dev) else { return }
    write(d.textScreen(), buf, len)
}

private let fifoCommand: @convention(c) (OpaquePointer?, UnsafeMutablePointer<CChar>?, Int) -> Void = { dev, buf, len in
    guard let d = SVGADevice.from(dev) else { return }
    func hex(_ i: Int) -> String { "0x" + String(d.fifoWord(i), radix: 16) }
    write("min \(hex(SVGAFIFOReg.min)) max \(hex(SVGAFIFOReg.max)) next_cmd \(hex(SVGAFIFOReg.nextCmd)) " +
          "stop \(hex(SVGAFIFOReg.stop)) fence \(hex(SVGAFIFOReg.fence)) commands \(d.commandsProcessed) " +
          "errors \(d.fifoErrors)", buf, len)
}

let svgaCommands: UnsafePointer<hv_command> = {
    let text = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
    text[0] = HV_ARG_TEXT_OUT
    func command(_ name: StaticString, _ help: StaticString,
                 _ fn: @convention(c) (OpaquePointer?, UnsafeMutablePointer<CChar>?, Int) -> Void) -> hv_command {
        hv_command(struct_size: UInt32(MemoryLayout<hv_command>.size), flags: 0, name: cString(name), help: cString(help),
                   fn: unsafeBitCast(fn, to: (@convention(c) () -> Void).self), result: HV_ARG_VOID, arg_count: 1,
                   args: UnsafePointer(text), arg_names: nil)
    }
    let table = UnsafeMutablePointer<hv_command>.allocate(capacity: 3)
    table[0] = command("regs", "SVGA II registers, what the screen shows, the DISPI mode", regsCommand)
    table[1] = command("text", "the VGA text screen as characters", textCommand)
    table[2] = command("fifo", "FIFO MIN/MAX/NEXT_CMD/STOP, last fence, commands processed, errors", fifoCommand)
    return UnsafePointer(table)
}()
let svgaCommandCount: UInt32 = 3
