import Glibc
import PluginABI

// The plugin descriptor: id "org.hvproject.lsilogic", factory "hv.device/1", one SCSI
// adapter model "lsilogic". Everything the host reads is allocated once and never freed.

private func cString(_ s: StaticString) -> UnsafePointer<CChar> {
    UnsafeRawPointer(s.utf8Start).assumingMemoryBound(to: CChar.self)
}

private let abiVersion: UInt32 = (HV_ABI_VERSION_MAJOR << 16) | HV_ABI_VERSION_MINOR

private func instance(_ dev: OpaquePointer?) -> LSILogicDevice? { LSILogicDevice.from(dev) }

private let lsiOps: UnsafePointer<hv_device_ops> = {
    var ops = hv_device_ops()
    ops.struct_size = UInt32(MemoryLayout<hv_device_ops>.size)
    ops.reset = { dev in instance(dev)?.powerOnReset() }
    // The host waits for every SCSI request in flight before destroy: nothing calls the
    // instance afterwards.
    ops.destroy = { dev in
        guard let dev else { return }
        Unmanaged<LSILogicDevice>.fromOpaque(UnsafeRawPointer(dev)).release()
    }
    let p = UnsafeMutablePointer<hv_device_ops>.allocate(capacity: 1)
    p.initialize(to: ops)
    return UnsafePointer(p)
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
    guard hs.struct_size >= UInt32(MemoryLayout<hv_host_services>.size),
          hs.abi_version >> 16 == HV_ABI_VERSION_MAJOR,
          let log = hs.log, let setIdentity = hs.pci_set_identity, let addBAR = hs.pci_add_bar,
          let getExtension = hs.get_extension else { return HV_ENOTSUP }
    func say(_ level: Int32, _ text: String) { text.withCString { log(host, level, $0) } }

    guard let ext = HV_EXT_SCSI.withCString({ getExtension(host, $0) })?.assumingMemoryBound(to: hv_scsi_ext.self),
          ext.pointee.struct_size >= UInt32(MemoryLayout<hv_scsi_ext>.size),
          let busOpen = ext.pointee.bus_open else {
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
    let handle = OpaquePointer(Unmanaged.passRetained(device).toOpaque())
    device.handle = handle
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
    m.state_version = 1
    m.create = { services, host, out in lsiCreate(services, host, out) }
    m.ops = lsiOps
    let p = UnsafeMutablePointer<hv_device_model>.allocate(capacity: 1)
    p.initialize(to: m)
    return UnsafePointer(p)
}()

private let lsiFactory: UnsafePointer<hv_device_factory> = {
    let models = UnsafeMutablePointer<UnsafePointer<hv_device_model>?>.allocate(capacity: 1)
    models.initialize(to: lsiModel)
    var f = hv_device_factory()
    f.struct_size = UInt32(MemoryLayout<hv_device_factory>.size)
    f.abi_version = abiVersion
    f.model_count = 1
    f.models = UnsafePointer(models)
    let p = UnsafeMutablePointer<hv_device_factory>.allocate(capacity: 1)
    p.initialize(to: f)
    return UnsafePointer(p)
}()

private let deviceFactoryID = cString("hv.device/1")

private let lsiEntry: UnsafePointer<hv_plugin_entry> = {
    let ids = UnsafeMutablePointer<UnsafePointer<CChar>?>.allocate(capacity: 2)
    ids.initialize(to: deviceFactoryID)
    (ids + 1).initialize(to: nil)
    var e = hv_plugin_entry()
    e.struct_size = UInt32(MemoryLayout<hv_plugin_entry>.size)
    e.abi_version = abiVersion
    e.id = cString("org.hvproject.lsilogic")
    e.name = cString("LSI Logic 53C1030 Fusion-MPT SCSI adapter")
    e.version = cString("1.0.0")
    e.vendor = cString("hvproject")
    e.get_factory = { id in
        guard let id, strcmp(id, deviceFactoryID) == 0 else { return nil }
        return UnsafeRawPointer(lsiFactory)
    }
    e.factory_ids = UnsafePointer(ids)
    let p = UnsafeMutablePointer<hv_plugin_entry>.allocate(capacity: 1)
    p.initialize(to: e)
    return UnsafePointer(p)
}()

/// The one exported symbol (HV_PLUGIN_ENTRY_SYMBOL).
@_cdecl("hv_plugin_entry_v1")
public func hv_plugin_entry_v1() -> UnsafePointer<hv_plugin_entry> {
    lsiEntry
}
