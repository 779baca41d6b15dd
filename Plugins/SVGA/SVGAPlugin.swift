import Glibc
import PluginABI
import PluginKit

// The plugin descriptor: id "org.hvproject.svga", factory "hv.device/1", one display
// model "svga" (svga.present = "TRUE"). Everything the host reads is allocated once
// and never freed.

/// Debian's SeaBIOS VGA BIOS for this device (package seabios).
let defaultVGABIOS = "/usr/share/seabios/vgabios-vmware.bin"
let defaultVRAMSize = 16 << 20

private func instance(_ dev: OpaquePointer?) -> SVGADevice? { InstanceHandle.object(dev, as: SVGADevice.self) }

// MARK: device ops

private let svgaOps: UnsafePointer<hv_device_ops> = {
    var ops = hv_device_ops()
    ops.struct_size = UInt32(MemoryLayout<hv_device_ops>.size)
    ops.reset = { dev in
        guard let d = instance(dev) else { return }
        d.powerOnReset()
        d.armTimer()
    }
    ops.resume = { dev in instance(dev)?.armTimer() }
    ops.save_state = { dev, writer in instance(dev)?.saveState(writer) ?? HV_EINVAL }
    ops.load_state = { dev, reader, version in instance(dev)?.loadState(reader, version: version) ?? HV_EINVAL }
    ops.destroy = { dev in
        guard let dev else { return }
        InstanceHandle.release(dev, as: SVGADevice.self)
    }
    return permanent(ops)
}()

// MARK: handlers

private let ioRead: hv_bar_read_fn = { dev, _, offset, size in instance(dev)?.ioRead(offset: offset, size: size) ?? ~0 }
private let ioWrite: hv_bar_write_fn = { dev, _, offset, size, value in
    instance(dev)?.ioWrite(offset: offset, size: size, value: value)
}

private let legacyPortRead: hv_legacy_read_fn = { dev, _, addr, size in
    instance(dev)?.legacyPortRead(UInt16(truncatingIfNeeded: addr), size: Int(size)) ?? ~0
}
private let legacyPortWrite: hv_legacy_write_fn = { dev, _, addr, size, value in
    instance(dev)?.legacyPortWrite(UInt16(truncatingIfNeeded: addr), size: Int(size), value: value)
}
private let windowRead: hv_legacy_read_fn = { dev, _, addr, size in
    instance(dev)?.windowRead(addr - VGA.windowBase, size: Int(size)) ?? ~0
}
private let windowWrite: hv_legacy_write_fn = { dev, _, addr, size, value in
    instance(dev)?.windowWrite(addr - VGA.windowBase, size: Int(size), value: value)
}
private let refreshCallback: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?) -> Void = { dev, _ in
    instance(dev)?.timerFired()
}


private func trimmed(_ s: String) -> String {
    String(s.drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed())
}

/// The VGA BIOS to offer as the expansion ROM, from the `vgaBios` key: "none" (the
/// host's answer when the VM boots a kernel, not firmware), "default" or a file path.
private func offerVGABIOS(_ hs: hv_host_services, _ host: OpaquePointer, say: (Int32, String) -> Void) -> Int32 {
    let setting = trimmed(hs.config_get.flatMap { $0(host, cString("vgaBios")) }.map { String(cString: $0) } ?? "none")
    guard setting.lowercased() != "none", !setting.isEmpty else { return HV_OK }
    var path = setting
    if setting.lowercased() == "default" {
        guard access(defaultVGABIOS, R_OK) == 0 else {
            say(HV_LOG_WARN, "vgaBios: \(defaultVGABIOS) is not installed (apt-get install seabios); no VGA BIOS, the screen stays in text mode")
            return HV_OK
        }
        path = defaultVGABIOS
    }
    guard let rom = hs.extensionTable(HV_EXT_ROM, host: host, as: hv_rom_ext.self), let load = rom.pointee.load_file else {
        say(HV_LOG_ERROR, "vgaBios = \"\(setting)\": the host does not offer \(HV_EXT_ROM)")
        return HV_ENOTSUP
    }
    let rc = path.withCString { load(host, $0) }
    if rc != HV_OK { say(HV_LOG_ERROR, "vgaBios = \"\(setting)\": cannot load it as the expansion ROM (error \(rc)); expected \"default\", \"none\" or a readable ROM image") }
    return rc
}

/// `vramSize` in bytes (the host validated it as a multiple of 4096 up to 1 GiB).
private func vramSize(_ hs: hv_host_services, _ host: OpaquePointer, say: (Int32, String) -> Void) -> Int? {
    guard let p = hs.config_get?(host, cString("vramSize")) else { return defaultVRAMSize }
    let text = trimmed(String(cString: p))
    guard let v = Int(text), v >= 1 << 20, v <= 256 << 20, v % 4096 == 0 else {
        say(HV_LOG_ERROR, "vramSize = \"\(text)\": expected a size in bytes, a multiple of 4096 from 1048576 to 268435456")
        return nil
    }
    return v
}

private func svgaCreate(_ services: UnsafePointer<hv_host_services>?, _ host: OpaquePointer?,
                        _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guard let services, let host, let out else { return HV_EINVAL }
    let hs = services.pointee
    guard hs.struct_size >= UInt32(MemoryLayout<hv_host_services>.size),
          hs.abi_version >> 16 == HV_ABI_VERSION_MAJOR,
          let log = hs.log, let setIdentity = hs.pci_set_identity, let addBAR = hs.pci_add_bar,
          hs.timer_create != nil, hs.timer_arm != nil, hs.clock_ns != nil, hs.irq_set_level != nil,
          hs.pci_bar_address != nil else { return HV_ENOTSUP }
    func say(_ level: Int32, _ text: String) { text.withCString { log(host, level, $0) } }
    guard let display = hs.extensionTable(HV_EXT_DISPLAY, host: host, as: hv_display_ext.self),
          let ramBar = hs.extensionTable(HV_EXT_RAM_BAR, host: host, as: hv_ram_bar_ext.self),
          let legacy = hs.extensionTable(HV_EXT_LEGACY_IO, host: host, as: hv_legacy_io_ext.self),
          display.pointee.attach != nil, display.pointee.set_mode != nil, display.pointee.set_palette != nil,
          display.pointee.update != nil, display.pointee.cursor_define != nil, display.pointee.cursor_move != nil,
          display.pointee.cursor_show != nil, ramBar.pointee.ram_bar_add != nil, ramBar.pointee.ram_bar_dirty != nil,
          legacy.pointee.claim != nil else {
        say(HV_LOG_ERROR, "the host does not offer \(HV_EXT_DISPLAY), \(HV_EXT_RAM_BAR) and \(HV_EXT_LEGACY_IO) (ABI 1.1)")
        return HV_ENOTSUP
    }
    guard let vramBytes = vramSize(hs, host, say: say) else { return HV_EINVAL }

    var identity = hv_pci_identity()
    identity.struct_size = UInt32(MemoryLayout<hv_pci_identity>.size)
    identity.vendor_id = 0x15AD
    identity.device_id = 0x0405
    identity.subsystem_vendor_id = 0x15AD
    identity.subsystem_id = 0x0405
    identity.class_code = 0x03_00_00
    identity.revision = 0
    identity.interrupt_pin = 1
    var rc = setIdentity(host, &identity)
    guard rc >= 0 else { return rc }
    rc = offerVGABIOS(hs, host, say: say)
    guard rc >= 0 else { return rc }

    var io = hv_bar_desc()
    io.struct_size = UInt32(MemoryLayout<hv_bar_desc>.size)
    io.index = 0
    io.kind = HV_BAR_IO
    io.size = SVGAPort.size
    io.read = ioRead
    io.write = ioWrite
    rc = addBAR(host, &io)
    guard rc >= 0 else { return rc }

    var barSize = 1 << 20
    while barSize < vramBytes { barSize <<= 1 }
    var vram: UnsafeMutableRawPointer?
    var fifo: UnsafeMutableRawPointer?
    for (index, size, flags) in [(UInt32(1), barSize, HV_BAR_PREFETCHABLE), (UInt32(2), SVGADevice.fifoSize, UInt32(0))] {
        var desc = hv_ram_bar_desc()
        desc.struct_size = UInt32(MemoryLayout<hv_ram_bar_desc>.size)
        desc.index = index
        desc.kind = HV_BAR_MMIO32
        desc.flags = flags
        desc.size = UInt64(size)
        var p: UnsafeMutableRawPointer?
        rc = ramBar.pointee.ram_bar_add(host, &desc, &p)
        guard rc >= 0, let p else {
            say(HV_LOG_ERROR, "cannot add RAM BAR\(index) of \(size) bytes (error \(rc))")
            return rc < 0 ? rc : HV_ENOMEM
        }
        if index == 1 { vram = p } else { fifo = p }
    }

    rc = display.pointee.attach(host)
    guard rc >= 0 else { return rc }

    let font = VGAFont.readFile(defaultVGABIOS).flatMap(VGAFont.find)
    if font == nil { say(HV_LOG_INFO, "no 8x16 font in \(defaultVGABIOS): text mode stays blank until a VGA BIOS loads one") }
    let device = SVGADevice(host: host, services: hs, display: display, ramBar: ramBar, vram: vram!, vramSize: vramBytes,
                            vramBarSize: barSize, fifo: fifo!, font: font)
    let handle = InstanceHandle.retain(device)
    func fail(_ code: Int32) -> Int32 {
        InstanceHandle.release(handle, as: SVGADevice.self)
        return code
    }
    device.refreshTimer = hs.timer_create(host, refreshCallback, nil)
    guard device.refreshTimer != nil else { return fail(HV_ENOMEM) }

    let claims: [(UInt32, UInt64, UInt64, hv_legacy_read_fn, hv_legacy_write_fn, String)] = [
        (HV_LEGACY_PORT, 0x3C0, 0x20, legacyPortRead, legacyPortWrite, "vga"),
        (HV_LEGACY_PORT, UInt64(BochsDISPI.indexPort), 4, legacyPortRead, legacyPortWrite, "bochs-dispi"),
        (HV_LEGACY_MEMORY, VGA.windowBase, VGA.windowSize, windowRead, windowWrite, "vga-window"),
    ]
    for (space, base, size, read, write, name) in claims {
        var region = hv_legacy_region()
        region.struct_size = UInt32(MemoryLayout<hv_legacy_region>.size)
        region.space = space
        region.base = base
        region.size = size
        region.read = read
        region.write = write
        rc = name.withCString { n in
            region.name = n
            return legacy.pointee.claim(host, &region)
        }
        guard rc == HV_OK else {
            say(HV_LOG_ERROR, "cannot claim the legacy \(name) range 0x\(String(base, radix: 16)) (error \(rc))")
            return fail(rc)
        }
    }
    out.pointee = handle
    return HV_OK
}

// MARK: descriptors

private let svgaModel: UnsafePointer<hv_device_model> = {
    var m = hv_device_model()
    m.struct_size = UInt32(MemoryLayout<hv_device_model>.size)
    m.kind = HV_DEVICE_KIND_DISPLAY
    m.name = cString("svga")
    m.description = cString("VMware SVGA II (15ad:0405) with VGA and Bochs VBE compatibility")
    m.flags = 0
    m.state_version = SVGADevice.stateVersion
    m.create = { services, host, out in svgaCreate(services, host, out) }
    m.ops = svgaOps
    m.key_count = svgaKeyCount
    m.command_count = svgaCommandCount
    m.keys = svgaKeys
    m.commands = svgaCommands
    return permanent(m)
}()

private let svgaEntry = devicePluginEntry(id: "org.hvproject.svga", name: "VMware SVGA II display",
                                           version: "1.0.0", vendor: "hvproject", models: [svgaModel])

/// The one exported symbol (HV_PLUGIN_ENTRY_SYMBOL).
@_cdecl("hv_plugin_entry_v1")
public func hv_plugin_entry_v1() -> UnsafePointer<hv_plugin_entry> {
    svgaEntry
}
