import Glibc
import PluginABI
import PluginKit

// The plugin descriptor: id "org.hvproject.vlance", factory "hv.device/1", one NIC model
// "vlance". Everything the host reads is allocated once and never freed.

private func instance(_ dev: OpaquePointer?) -> VlanceDevice? { InstanceHandle.object(dev, as: VlanceDevice.self) }

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
        InstanceHandle.release(dev, as: VlanceDevice.self)
    }
    return permanent(ops)
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

private func vlanceCreate(_ services: UnsafePointer<hv_host_services>?, _ host: OpaquePointer?,
                          _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guard let services, let host, let out else { return HV_EINVAL }
    let hs = services.pointee
    guard hs.isCompatible, let setIdentity = hs.pci_set_identity, let addBAR = hs.pci_add_bar,
          let timerCreate = hs.timer_create, let attach = hs.net_attach, let linkUp = hs.net_link_up else { return HV_ENOTSUP }
    func say(_ level: Int32, _ text: String) { hs.log(level, text, host: host) }

    guard let mac = NICConfiguration.macAddress(hs, host: host) else { return HV_EINVAL }

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

    rc = NICConfiguration.offerBootROM(hs, host: host, defaultROM: defaultBootROM)
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
    guard let ext = hs.extensionTable(HV_EXT_NET_QUEUE, host: host, as: hv_net_queue_ext.self),
          let backpressure = ext.pointee.rx_backpressure else {
        say(HV_LOG_ERROR, "the host does not offer \(HV_EXT_NET_QUEUE) (ABI 1.1)")
        return HV_ENOTSUP
    }
    guard let device = VlanceDevice(services: services, host: host, mac: mac, netQueue: ext) else { return HV_ENOTSUP }
    let handle = InstanceHandle.retain(device)

    device.pollTimer = timerCreate(host, pollCallback, nil)
    device.timerCancelWait = hs.extensionTable(HV_EXT_TIMER, host: host, as: hv_timer_ext.self)?.pointee.timer_cancel_wait
    guard device.pollTimer != nil else {
        InstanceHandle.release(handle, as: VlanceDevice.self)
        return HV_ENOMEM
    }
    var port: OpaquePointer?
    var client = makeClient(mac: mac)
    rc = attach(host, &client, &port)
    guard rc >= 0, let port else {
        say(HV_LOG_ERROR, "cannot attach to the virtual switch (error \(rc))")
        InstanceHandle.release(handle, as: VlanceDevice.self)
        return rc < 0 ? rc : HV_EIO
    }
    device.port = port
    device.linkUp = linkUp(port) != 0
    rc = backpressure(port, 1)
    guard rc >= 0 else {
        InstanceHandle.release(handle, as: VlanceDevice.self)
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
    return permanent(m)
}()

private let vlanceEntry = devicePluginEntry(id: "org.hvproject.vlance", name: "Vlance (AMD PCnet-PCI II) NIC",
                                             version: "1.0.0", vendor: "hvproject", models: [vlanceModel])

/// The one exported symbol (HV_PLUGIN_ENTRY_SYMBOL).
@_cdecl("hv_plugin_entry_v1")
public func hv_plugin_entry_v1() -> UnsafePointer<hv_plugin_entry> {
    vlanceEntry
}
