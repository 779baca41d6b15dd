import Glibc
import PluginABI
import PluginKit

// The plugin descriptor: id "org.hvproject.buslogic", factory "hv.device/1", one SCSI
// adapter model "buslogic". Everything the host reads is allocated once and never freed.

private func instance(_ dev: OpaquePointer?) -> BusLogicDevice? { InstanceHandle.object(dev, as: BusLogicDevice.self) }

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
        InstanceHandle.release(dev, as: BusLogicDevice.self)
    }
    return permanent(ops)
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


private func busLogicCreate(_ services: UnsafePointer<hv_host_services>?, _ host: OpaquePointer?,
                            _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guard let services, let host, let out else { return HV_EINVAL }
    let hs = services.pointee
    guard hs.isCompatible, let setIdentity = hs.pci_set_identity, let addBAR = hs.pci_add_bar else { return HV_ENOTSUP }
    func say(_ level: Int32, _ text: String) { hs.log(level, text, host: host) }

    guard let scsi = hs.extensionTable(HV_EXT_SCSI, host: host, as: hv_scsi_ext.self), let busOpen = scsi.pointee.bus_open else {
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
    let handle = InstanceHandle.retain(device)

    // The ISA-compatible windows (0x330 by default), claimed as the three 8-port blocks
    // 0x330, 0x230 and 0x130 (two windows each); Modify I/O Address picks the one that
    // decodes. A second adapter finds 0x330 taken (the host logs it once) and runs with
    // its ISA port disabled.
    if let legacy = hs.extensionTable(HV_EXT_LEGACY_IO, host: host, as: hv_legacy_io_ext.self), let claim = legacy.pointee.claim {
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
    m.command_count = busLogicCommandCount
    m.commands = busLogicCommands
    return permanent(m)
}()

private let busLogicEntry = devicePluginEntry(id: "org.hvproject.buslogic", name: "BusLogic BT-958 SCSI host adapter",
                                         version: "1.0.0", vendor: "hvproject", models: [busLogicModel])

/// The one exported symbol (HV_PLUGIN_ENTRY_SYMBOL).
@_cdecl("hv_plugin_entry_v1")
public func hv_plugin_entry_v1() -> UnsafePointer<hv_plugin_entry> {
    busLogicEntry
}
