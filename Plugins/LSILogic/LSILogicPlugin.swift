import Glibc
import PluginABI
import PluginKit

// The plugin descriptor: id "org.hvproject.lsilogic", factory "hv.device/1", one SCSI
// adapter model "lsilogic". Everything the host reads is allocated once and never freed.

private func instance(_ dev: OpaquePointer?) -> LSILogicDevice? { InstanceHandle.object(dev, as: LSILogicDevice.self) }

private let lsiOps: UnsafePointer<hv_device_ops> = {
    var ops = hv_device_ops()
    ops.struct_size = UInt32(MemoryLayout<hv_device_ops>.size)
    ops.reset = { dev in instance(dev)?.powerOnReset() }
    ops.save_state = { dev, writer in instance(dev)?.saveState(writer) ?? HV_EINVAL }
    ops.load_state = { dev, reader, version in instance(dev)?.loadState(reader, version: version) ?? HV_EINVAL }
    // The host waits for every SCSI request in flight before destroy: nothing calls the
    // instance afterwards.
    ops.destroy = { dev in
        guard let dev else { return }
        InstanceHandle.release(dev, as: LSILogicDevice.self)
    }
    return permanent(ops)
}()

private let barRead: hv_bar_read_fn = { dev, _, offset, size in
    instance(dev)?.barRead(offset: offset, size: size) ?? ~0
}

private let barWrite: hv_bar_write_fn = { dev, _, offset, size, value in
    instance(dev)?.barWrite(offset: offset, size: size, value: value)
}

private func lsiCreate(_ services: UnsafePointer<hv_host_services>?, _ host: OpaquePointer?,
                       _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guard let services, let host, let out else { return HV_EINVAL }
    let hs = services.pointee
    guard hs.isCompatible, let setIdentity = hs.pci_set_identity, let addBAR = hs.pci_add_bar else { return HV_ENOTSUP }
    func say(_ level: Int32, _ text: String) { hs.log(level, text, host: host) }

    guard let ext = hs.extensionTable(HV_EXT_SCSI, host: host, as: hv_scsi_ext.self), let busOpen = ext.pointee.bus_open else {
        say(HV_LOG_ERROR, "the host does not offer \(HV_EXT_SCSI) (ABI 1.2)")
        return HV_ENOTSUP
    }

    var identity = hv_pci_identity()
    identity.struct_size = UInt32(MemoryLayout<hv_pci_identity>.size)
    identity.vendor_id = 0x1000
    identity.device_id = 0x0030
    identity.subsystem_vendor_id = 0x1000
    identity.subsystem_id = 0x8000
    identity.class_code = 0x01_00_00
    identity.revision = 0x01
    identity.interrupt_pin = 1
    var rc = setIdentity(host, &identity)
    guard rc >= 0 else { return rc }

    // BAR0 I/O and BAR1 memory decode the registers; BAR2 is the diagnostic memory
    // window, whose IOC memory is not modelled (reads zero).
    for (index, kind, size) in [(UInt32(0), HV_BAR_IO, UInt64(256)), (1, HV_BAR_MMIO32, 0x20000), (2, HV_BAR_MMIO32, 0x20000)] {
        var bar = hv_bar_desc()
        bar.struct_size = UInt32(MemoryLayout<hv_bar_desc>.size)
        bar.index = index
        bar.kind = kind
        bar.size = size
        bar.read = index == 2 ? { _, _, _, _ in 0 } : barRead
        bar.write = index == 2 ? nil : barWrite
        rc = addBAR(host, &bar)
        guard rc >= 0 else { return rc }
    }

    var bus: OpaquePointer?
    rc = busOpen(host, &bus)
    guard rc >= 0, let bus else {
        say(HV_LOG_ERROR, "cannot open the SCSI bus (error \(rc))")
        return rc < 0 ? rc : HV_EIO
    }
    guard let device = LSILogicDevice(services: services, host: host, scsi: ext, bus: bus) else { return HV_ENOTSUP }
    let handle = InstanceHandle.retain(device)
    out.pointee = handle
    return HV_OK
}

private let lsiModel: UnsafePointer<hv_device_model> = {
    var m = hv_device_model()
    m.struct_size = UInt32(MemoryLayout<hv_device_model>.size)
    m.kind = HV_DEVICE_KIND_SCSI
    m.name = cString("lsilogic")
    m.description = cString("LSI Logic LSI53C1030 Fusion-MPT Ultra320 SCSI (1000:0030), the ESX lsilogic adapter")
    m.flags = HV_DEVICE_THREAD_SAFE
    m.state_version = LSILogicDevice.stateVersion
    m.create = { services, host, out in lsiCreate(services, host, out) }
    m.ops = lsiOps
    m.command_count = lsiCommandCount
    m.commands = lsiCommands
    return permanent(m)
}()

private let lsiEntry = devicePluginEntry(id: "org.hvproject.lsilogic", name: "LSI Logic 53C1030 Fusion-MPT SCSI adapter",
                                         version: "1.0.0", vendor: "hvproject", models: [lsiModel])

/// The one exported symbol (HV_PLUGIN_ENTRY_SYMBOL).
@_cdecl("hv_plugin_entry_v1")
public func hv_plugin_entry_v1() -> UnsafePointer<hv_plugin_entry> {
    lsiEntry
}
