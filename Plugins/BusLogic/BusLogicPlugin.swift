import Glibc
import PluginABI

// The plugin descriptor: id "org.hvproject.buslogic", factory "hv.device/1", one SCSI
// adapter model "buslogic". Everything the host reads is allocated once and never freed.

private func cString(_ s: StaticString) -> UnsafePointer<CChar> {
    UnsafeRawPointer(s.utf8Start).assumingMemoryBound(to: CChar.self)
}

private let abiVersion: UInt32 = (HV_ABI_VERSION_MAJOR << 16) | HV_ABI_VERSION_MINOR

private func instance(_ dev: OpaquePointer?) -> BusLogicDevice? { BusLogicDevice.from(dev) }

private let busLogicOps: UnsafePointer<hv_device_ops> = {
    var ops = hv_device_ops()
    ops.struct_size = UInt32(MemoryLayout<hv_device_ops>.size)
    ops.reset = { dev in instance(dev)?.powerOnReset() }
    ops.save_state = { dev, writer in
        guard let device = instance(dev), let put = device.statePut else { return HV_ENOSYS }
        return device.saveState(writer, put: put)
    }
    ops.load_state = { dev, reader, version in
        guard let device = instance(dev), let get = device.stateGet else { return HV_ENOSYS }
        return device.loadState(reader, version: version, get: get)
    }
    ops.destroy = { dev in
        guard let dev, let device = instance(dev) else { return }
        device.shutdown()
        Unmanaged<BusLogicDevice>.fromOpaque(UnsafeRawPointer(dev)).release()
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

/// The ISA blocks' handlers (the device picks the window from the port).
private let isaRead: hv_legacy_read_fn = { dev, _, addr, size in
    instance(dev)?.isaRead(port: addr, size: size) ?? ~0
}

private let isaWrite: hv_legacy_write_fn = { dev, _, addr, size, value in
    instance(dev)?.isaWrite(port: addr, size: size, value: value)
}

private let scsiComplete: hv_scsi_complete_fn = { dev, tag, result in
    instance(dev)?.completed(tag: tag, result: result)
}

private func extensionTable<T>(_ services: hv_host_services, _ host: OpaquePointer, _ id: String, _: T.Type)
    -> UnsafePointer<T>? {
    guard let lookup = services.get_extension,
          let raw = id.withCString({ lookup(host, $0) }) else { return nil }
    let table = raw.assumingMemoryBound(to: T.self)
    // Every extension table starts with its struct_size.
    guard raw.load(as: UInt32.self) >= UInt32(MemoryLayout<T>.size) else { return nil }
    return table
}

private func busLogicCreate(_ services: UnsafePointer<hv_host_services>?, _ host: OpaquePointer?,
                            _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guard let services, let host, let out else { return HV_EINVAL }
    let hs = services.pointee
    guard hs.struct_size >= UInt32(MemoryLayout<hv_host_services>.size),
          hs.abi_version >> 16 == HV_ABI_VERSION_MAJOR,
          let log = hs.log, let setIdentity = hs.pci_set_identity, let addBAR = hs.pci_add_bar else {
        return HV_ENOTSUP
    }
    func say(_ level: Int32, _ text: String) { text.withCString { log(host, level, $0) } }

    guard let scsi = extensionTable(hs, host, HV_EXT_SCSI, hv_scsi_ext.self), let busOpen = scsi.pointee.bus_open else {
        say(HV_LOG_ERROR, "the host does not offer \(HV_EXT_SCSI) (ABI 1.2)")
        return HV_ENOTSUP
    }
    var bus: OpaquePointer?
    var rc = busOpen(host, &bus)
    guard rc >= 0, let bus else {
        say(HV_LOG_ERROR, "cannot open the SCSI bus of this adapter (error \(rc))")
        return rc < 0 ? rc : HV_EIO
    }

    var identity = hv_pci_identity()
    identity.struct_size = UInt32(MemoryLayout<hv_pci_identity>.size)
    identity.vendor_id = 0x104B
    identity.device_id = 0x1040
    identity.subsystem_vendor_id = 0x104B
    identity.subsystem_id = 0x1040
    identity.class_code = 0x01_00_00
    identity.revision = 0x01
    identity.interrupt_pin = 1
    rc = setIdentity(host, &identity)
    guard rc >= 0 else { return rc }

    // BAR0 port I/O and BAR1 memory decode the same four registers (Linux requires
    // BAR0 to be I/O and BAR1 memory).
    for (index, kind) in [(UInt32(0), HV_BAR_IO), (UInt32(1), HV_BAR_MMIO32)] {
        var bar = hv_bar_desc()
        bar.struct_size = UInt32(MemoryLayout<hv_bar_desc>.size)
        bar.index = index
        bar.kind = kind
        bar.size = 0x20
        bar.read = barRead
        bar.write = barWrite
        rc = addBAR(host, &bar)
        guard rc >= 0 else { return rc }
    }

    guard let device = BusLogicDevice(services: services, host: host, scsi: scsi, bus: bus,
                                      completion: scsiComplete) else { return HV_ENOTSUP }
    let handle = OpaquePointer(Unmanaged.passRetained(device).toOpaque())

    // The ISA-compatible windows (0x330 by default), claimed as the three 8-port blocks
    // 0x330, 0x230 and 0x130 (two windows each); Modify I/O Address picks the one that
    // decodes. A second adapter finds 0x330 taken (the host logs it once) and runs with
    // its ISA port disabled.
    if let legacy = extensionTable(hs, host, HV_EXT_LEGACY_IO, hv_legacy_io_ext.self), let claim = legacy.pointee.claim {
        for (block, base) in BusLogicDevice.isaBlocks.enumerated() {
            var region = hv_legacy_region()
            region.struct_size = UInt32(MemoryLayout<hv_legacy_region>.size)
            region.space = HV_LEGACY_PORT
            region.base = base
            region.size = 8
            region.read = isaRead
            region.write = isaWrite
            let r = "buslogic-isa".withCString { name -> Int32 in
                region.name = name
                return claim(host, &region)
            }
            guard r == HV_OK else { break }
            device.isaClaimed[2 * block] = true
            device.isaClaimed[2 * block + 1] = true
        }
        if device.isaClaimed[0] {
            device.isaDefault = 0
            device.isaPort = 0
        }
    }
    out.pointee = handle
    return HV_OK
}

private let busLogicModel: UnsafePointer<hv_device_model> = {
    var m = hv_device_model()
    m.struct_size = UInt32(MemoryLayout<hv_device_model>.size)
    m.kind = HV_DEVICE_KIND_SCSI
    m.name = cString("buslogic")
    m.description = cString("BusLogic BT-958 MultiMaster SCSI host adapter (104B:1040), the ESX 2.x default")
    m.flags = HV_DEVICE_THREAD_SAFE
    m.state_version = BusLogicDevice.stateVersion
    m.create = { services, host, out in busLogicCreate(services, host, out) }
    m.ops = busLogicOps
    let p = UnsafeMutablePointer<hv_device_model>.allocate(capacity: 1)
    p.initialize(to: m)
    return UnsafePointer(p)
}()

private let busLogicFactory: UnsafePointer<hv_device_factory> = {
    let models = UnsafeMutablePointer<UnsafePointer<hv_device_model>?>.allocate(capacity: 1)
    models.initialize(to: busLogicModel)
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

private let busLogicEntry: UnsafePointer<hv_plugin_entry> = {
    let ids = UnsafeMutablePointer<UnsafePointer<CChar>?>.allocate(capacity: 2)
    ids.initialize(to: deviceFactoryID)
    (ids + 1).initialize(to: nil)
    var e = hv_plugin_entry()
    e.struct_size = UInt32(MemoryLayout<hv_plugin_entry>.size)
    e.abi_version = abiVersion
    e.id = cString("org.hvproject.buslogic")
    e.name = cString("BusLogic BT-958 SCSI host adapter")
    e.version = cString("1.0.0")
    e.vendor = cString("hvproject")
    e.get_factory = { id in
        guard let id, strcmp(id, deviceFactoryID) == 0 else { return nil }
        return UnsafeRawPointer(busLogicFactory)
    }
    e.factory_ids = UnsafePointer(ids)
    let p = UnsafeMutablePointer<hv_plugin_entry>.allocate(capacity: 1)
    p.initialize(to: e)
    return UnsafePointer(p)
}()

/// The one exported symbol (HV_PLUGIN_ENTRY_SYMBOL).
@_cdecl("hv_plugin_entry_v1")
public func hv_plugin_entry_v1() -> UnsafePointer<hv_plugin_entry> {
    busLogicEntry
}
