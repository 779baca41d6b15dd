import Glibc
import PluginABI

// The plugin descriptor: id "org.hvproject.vlance", factory "hv.device/1", one NIC model
// "vlance". Everything the host reads is allocated once and never freed.

func cString(_ s: StaticString) -> UnsafePointer<CChar> {
    UnsafeRawPointer(s.utf8Start).assumingMemoryBound(to: CChar.self)
}

private let abiVersion: UInt32 = (HV_ABI_VERSION_MAJOR << 16) | HV_ABI_VERSION_MINOR

private func instance(_ dev: OpaquePointer?) -> VlanceDevice? { VlanceDevice.from(dev) }

// MARK: device ops

private let vlanceOps: UnsafePointer<hv_device_ops> = {
    var ops = hv_device_ops()
    ops.struct_size = UInt32(MemoryLayout<hv_device_ops>.size)
    ops.realize = nil
    ops.reset = { dev in instance(dev)?.powerOnReset() }
    ops.pause = nil
    ops.resume = { dev in instance(dev)?.resumed() }
    ops.save_state = { dev, writer in instance(dev)?.saveState(writer) ?? HV_EINVAL }
    ops.load_state = { dev, reader, version in instance(dev)?.loadState(reader, version: version) ?? HV_EINVAL }
    ops.destroy = { dev in
        guard let dev, let device = instance(dev), device.shutdown() else { return }
        Unmanaged<VlanceDevice>.fromOpaque(UnsafeRawPointer(dev)).release()
    }
    let p = UnsafeMutablePointer<hv_device_ops>.allocate(capacity: 1)
    p.initialize(to: ops)
    return UnsafePointer(p)
}()

// MARK: create

private let barRead: hv_bar_read_fn = { dev, _, offset, size in
    instance(dev)?.barRead(offset: offset, size: size) ?? ~0
}

private let barWrite: hv_bar_write_fn = { dev, _, offset, size, value in
    instance(dev)?.barWrite(offset: offset, size: size, value: value)
}

private let pollCallback: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?) -> Void = { dev, _ in
    instance(dev)?.pollTimerFired()
}

/// The client handed to net_attach (which copies it).
private func makeClient(mac: [UInt8]) -> hv_net_client {
    var client = hv_net_client()
    client.struct_size = UInt32(MemoryLayout<hv_net_client>.size)
    withUnsafeMutableBytes(of: &client.mac) { for i in 0..<6 { $0[i] = mac[i] } }
    client.receive = { dev, frame, len in instance(dev)?.receive(frame, len) ?? HV_EAGAIN }
    client.link_changed = { dev, up in instance(dev)?.linkChanged(up != 0) }
    return client
}

/// Debian's iPXE PXE ROM for the PCnet (package ipxe-qemu).
let defaultBootROM = "/usr/lib/ipxe/qemu/pxe-pcnet.rom"

/// The PCI expansion ROM ("hv.rom/1") from the `bootRom` key: "none" (the host's answer
/// when the boot order does not name this NIC), "default" (`defaultBootROM`, skipped with
/// a warning when it is not installed) or a file path.
private func offerBootROM(_ hs: hv_host_services, _ host: OpaquePointer, say: (Int32, String) -> Void) -> Int32 {
    let setting = hs.config_get.flatMap { $0(host, cString("bootRom")) }.map { String(cString: $0) } ?? "none"
    let trimmed = String(setting.drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
    guard trimmed.lowercased() != "none", !trimmed.isEmpty else { return 0 }
    var path = trimmed
    if trimmed.lowercased() == "default" {
        guard access(defaultBootROM, R_OK) == 0 else {
            say(HV_LOG_WARN, "bootRom: \(defaultBootROM) is not installed (apt-get install ipxe-qemu); no PXE ROM")
            return 0
        }
        path = defaultBootROM
    }
    guard let lookup = hs.get_extension,
          let raw = HV_EXT_ROM.withCString({ lookup(host, $0) }) else {
        say(HV_LOG_ERROR, "bootRom = \"\(trimmed)\": the host does not offer \(HV_EXT_ROM)")
        return HV_ENOTSUP
    }
    let ext = raw.assumingMemoryBound(to: hv_rom_ext.self)
    guard ext.pointee.struct_size >= UInt32(MemoryLayout<hv_rom_ext>.size), let load = ext.pointee.load_file else {
        return HV_ENOTSUP
    }
    return path.withCString { load(host, $0) }
}

/// hv.timer/1's timer_cancel_wait, when the host offers it.
private func timerCancelWait(_ services: hv_host_services, _ host: OpaquePointer)
    -> (@convention(c) (OpaquePointer?, OpaquePointer?) -> Int32)? {
    guard let lookup = services.get_extension,
          let raw = HV_EXT_TIMER.withCString({ lookup(host, $0) }) else { return nil }
    let ext = raw.assumingMemoryBound(to: hv_timer_ext.self)
    guard ext.pointee.struct_size >= UInt32(MemoryLayout<hv_timer_ext>.size) else { return nil }
    return ext.pointee.timer_cancel_wait
}

/// Parses "00:50:56:12:34:56" (or with '-'); nil when malformed.
func parseMAC(_ text: String) -> [UInt8]? {
    let trimmed = text.filter { $0 != " " && $0 != "\t" }
    let parts = trimmed.split(omittingEmptySubsequences: false, whereSeparator: { $0 == ":" || $0 == "-" })
    guard parts.count == 6 else { return nil }
    var mac: [UInt8] = []
    for p in parts {
        guard p.count == 2, let b = UInt8(p, radix: 16) else { return nil }
        mac.append(b)
    }
    return mac
}

private func vlanceCreate(_ services: UnsafePointer<hv_host_services>?, _ host: OpaquePointer?,
                          _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guard let services, let host, let out else { return HV_EINVAL }
    let hs = services.pointee
    guard hs.struct_size >= UInt32(MemoryLayout<hv_host_services>.size),
          hs.abi_version >> 16 == HV_ABI_VERSION_MAJOR,
          let log = hs.log, let configGet = hs.config_get, let setIdentity = hs.pci_set_identity,
          let addBAR = hs.pci_add_bar, let timerCreate = hs.timer_create, let attach = hs.net_attach,
          let linkUp = hs.net_link_up else { return HV_ENOTSUP }
    func say(_ level: Int32, _ text: String) { text.withCString { log(host, level, $0) } }

    // The MAC: a static "address", else the host's "generatedAddress".
    var mac: [UInt8]
    if let p = configGet(host, cString("address")) {
        let text = String(cString: p)
        guard let m = parseMAC(text), m[0] & 1 == 0 else {
            say(HV_LOG_ERROR, "address = \"\(text.prefix(40))\": expected a unicast MAC address like 00:50:56:00:00:01")
            return HV_EINVAL
        }
        mac = m
    } else if let p = configGet(host, cString("generatedAddress")), let m = parseMAC(String(cString: p)), m[0] & 1 == 0 {
        mac = m
    } else {
        say(HV_LOG_ERROR, "no usable address or generatedAddress for this NIC")
        return HV_EINVAL
    }

    var identity = hv_pci_identity()
    identity.struct_size = UInt32(MemoryLayout<hv_pci_identity>.size)
    identity.vendor_id = 0x1022
    identity.device_id = 0x2000
    identity.subsystem_vendor_id = 0x1022
    identity.subsystem_id = 0x2000
    identity.class_code = 0x02_00_00
    identity.revision = 0x10
    identity.interrupt_pin = 1
    var rc = setIdentity(host, &identity)
    guard rc >= 0 else { return rc }

    rc = offerBootROM(hs, host, say: say)
    guard rc >= 0 else { return rc }

    for (index, kind) in [(UInt32(0), HV_BAR_IO), (UInt32(1), HV_BAR_MMIO32)] {
        var bar = hv_bar_desc()
        bar.struct_size = UInt32(MemoryLayout<hv_bar_desc>.size)
        bar.index = index
        bar.kind = kind
        bar.flags = 0
        bar.size = 0x20
        bar.read = barRead
        bar.write = barWrite
        rc = addBAR(host, &bar)
        guard rc >= 0 else { return rc }
    }

    // Ports are queues ("hv.net-queue/1"): the NIC sends straight from the ring and the
    // switch holds frames while the guest has no receive buffer.
    guard let getExtension = hs.get_extension,
          let ext = HV_EXT_NET_QUEUE.withCString({ getExtension(host, $0) })?.assumingMemoryBound(to: hv_net_queue_ext.self),
          ext.pointee.struct_size >= UInt32(MemoryLayout<hv_net_queue_ext>.size),
          let backpressure = ext.pointee.rx_backpressure else {
        say(HV_LOG_ERROR, "the host does not offer \(HV_EXT_NET_QUEUE) (ABI 1.1)")
        return HV_ENOTSUP
    }
    guard let device = VlanceDevice(services: services, host: host, mac: mac, netQueue: ext) else { return HV_ENOTSUP }
    let handle = OpaquePointer(Unmanaged.passRetained(device).toOpaque())

    device.pollTimer = timerCreate(host, pollCallback, nil)
    device.timerCancelWait = timerCancelWait(hs, host)
    guard device.pollTimer != nil else {
        Unmanaged<VlanceDevice>.fromOpaque(UnsafeRawPointer(handle)).release()
        return HV_ENOMEM
    }
    var port: OpaquePointer?
    var client = makeClient(mac: mac)
    rc = attach(host, &client, &port)
    guard rc >= 0, let port else {
        say(HV_LOG_ERROR, "cannot attach to the virtual switch (error \(rc))")
        Unmanaged<VlanceDevice>.fromOpaque(UnsafeRawPointer(handle)).release()
        return rc < 0 ? rc : HV_EIO
    }
    device.port = port
    device.linkUp = linkUp(port) != 0
    rc = backpressure(port, 1)
    guard rc >= 0 else {
        Unmanaged<VlanceDevice>.fromOpaque(UnsafeRawPointer(handle)).release()
        return rc
    }
    out.pointee = handle
    return HV_OK
}

// MARK: descriptors

private let vlanceModel: UnsafePointer<hv_device_model> = {
    var m = hv_device_model()
    m.struct_size = UInt32(MemoryLayout<hv_device_model>.size)
    m.kind = HV_DEVICE_KIND_NIC
    m.name = cString("vlance")
    m.description = cString("AMD PCnet-PCI II Am79C970A Ethernet (1022:2000), the ESX vlance NIC")
    m.flags = HV_DEVICE_THREAD_SAFE
    m.state_version = VlanceDevice.stateVersion
    m.create = { services, host, out in vlanceCreate(services, host, out) }
    m.ops = vlanceOps
    m.key_count = vlanceKeyCount
    m.command_count = vlanceCommandCount
    m.keys = vlanceKeys
    m.commands = vlanceCommands
    let p = UnsafeMutablePointer<hv_device_model>.allocate(capacity: 1)
    p.initialize(to: m)
    return UnsafePointer(p)
}()

private let vlanceFactory: UnsafePointer<hv_device_factory> = {
    let models = UnsafeMutablePointer<UnsafePointer<hv_device_model>?>.allocate(capacity: 1)
    models.initialize(to: vlanceModel)
    var f = hv_device_factory()
    f.struct_size = UInt32(MemoryLayout<hv_device_factory>.size)
    f.abi_version = abiVersion
    f.model_count = 1
    f.reserved = 0
    f.models = UnsafePointer(models)
    let p = UnsafeMutablePointer<hv_device_factory>.allocate(capacity: 1)
    p.initialize(to: f)
    return UnsafePointer(p)
}()

private let deviceFactoryID = cString("hv.device/1")

private let vlanceEntry: UnsafePointer<hv_plugin_entry> = {
    let ids = UnsafeMutablePointer<UnsafePointer<CChar>?>.allocate(capacity: 2)
    ids.initialize(to: deviceFactoryID)
    (ids + 1).initialize(to: nil)
    var e = hv_plugin_entry()
    e.struct_size = UInt32(MemoryLayout<hv_plugin_entry>.size)
    e.abi_version = abiVersion
    e.id = cString("org.hvproject.vlance")
    e.name = cString("Vlance (AMD PCnet-PCI II) NIC")
    e.version = cString("1.0.0")
    e.vendor = cString("hvproject")
    e.`init` = nil
    e.deinit = nil
    e.get_factory = { id in
        guard let id, strcmp(id, deviceFactoryID) == 0 else { return nil }
        return UnsafeRawPointer(vlanceFactory)
    }
    e.factory_ids = UnsafePointer(ids)
    let p = UnsafeMutablePointer<hv_plugin_entry>.allocate(capacity: 1)
    p.initialize(to: e)
    return UnsafePointer(p)
}()

/// The one exported symbol (HV_PLUGIN_ENTRY_SYMBOL).
@_cdecl("hv_plugin_entry_v1")
public func hv_plugin_entry_v1() -> UnsafePointer<hv_plugin_entry> {
    vlanceEntry
}
