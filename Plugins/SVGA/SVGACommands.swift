import Glibc
import PluginABI
import PluginKit

// Declared keys and console commands: `hvhost plugins --keys svga`,
// `device VM svga regs|text|fifo`. The model is not thread-safe, so the host calls these
// under its device lock.

let svgaKeys = PluginDeclarations.table([
    PluginDeclarations.key(HV_KEY_STRING, "vgaBios", "the expansion ROM: \"default\" (/usr/share/seabios/vgabios-vmware.bin; the host's choice when the VM boots firmware), \"none\" or a ROM image path"),
    PluginDeclarations.key(HV_KEY_UINT, "vramSize", "VRAM in bytes, a multiple of 4096", min: 1 << 20, max: 256 << 20,
                           defaultValue: "16777216"),
])
let svgaKeyCount: UInt32 = 2

private func write(_ text: String, _ buf: UnsafeMutablePointer<CChar>?, _ len: Int) {
    PluginDeclarations.write(text, to: buf, capacity: len)
}

private let regsCommand: @convention(c) (OpaquePointer?, UnsafeMutablePointer<CChar>?, Int) -> Void = { dev, buf, len in
    guard let d = InstanceHandle.object(dev, as: SVGADevice.self) else { return }
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
    guard let d = InstanceHandle.object(dev, as: SVGADevice.self) else { return }
    write(d.textScreen(), buf, len)
}

private let fifoCommand: @convention(c) (OpaquePointer?, UnsafeMutablePointer<CChar>?, Int) -> Void = { dev, buf, len in
    guard let d = InstanceHandle.object(dev, as: SVGADevice.self) else { return }
    func hex(_ i: Int) -> String { "0x" + String(d.fifoWord(i), radix: 16) }
    write("min \(hex(SVGAFIFOReg.min)) max \(hex(SVGAFIFOReg.max)) next_cmd \(hex(SVGAFIFOReg.nextCmd)) " +
          "stop \(hex(SVGAFIFOReg.stop)) fence \(hex(SVGAFIFOReg.fence)) commands \(d.commandsProcessed) " +
          "errors \(d.fifoErrors)", buf, len)
}

let svgaCommands = PluginDeclarations.table([
    PluginDeclarations.textCommand("regs", "SVGA II registers, what the screen shows, the DISPI mode", regsCommand),
    PluginDeclarations.textCommand("text", "the VGA text screen as characters", textCommand),
    PluginDeclarations.textCommand("fifo", "FIFO MIN/MAX/NEXT_CMD/STOP, last fence, commands processed, errors", fifoCommand),
])
let svgaCommandCount: UInt32 = 3
