import Glibc
import PluginABI
import PluginKit

// The plugin descriptor: id "org.hvproject.vmxnet", factory "hv.device/1", one NIC model
// "vmxnet" (a VMXNET3). Everything the host reads is allocated once and never freed.

private func instance(_ dev: OpaquePointer?) -> VmxnetDevice? { InstanceHandle.object(dev, as: VmxnetDevice.self) }

private let vmxnetOps: UnsafePointer<hv_device_ops> = {
    var ops = hv_device_ops()
    ops.struct_size = UInt32(MemoryLayout<hv_device_ops>.size)
    ops.reset = { dev in instance(dev)?.powerOnReset() }
    ops.resume = { dev in instance(dev)?.resumed() }
    ops.save_state = { dev, writer in instance(dev)?.saveState(writer) ?? HV_EINVAL }
    ops.load_state = { dev, reader, version in instance(dev)?.loadState(reader, version: version) ?? HV_EINVAL }
    ops.destroy = { dev in
        guard let dev, let device = instance(dev), device.shutdown() else { return }
        InstanceHandle.release(dev, as: VmxnetDevice.self)
    }
    return permanent(ops)
}()

private let barRead: hv_bar_read_fn = { dev, bar, offset, size in
    instance(dev)?.barRead(bar: bar, offset: offset, size: size) ?? ~0
}

private let barWrite: hv_bar_write_fn = { dev, bar, offset, size, value in
    instance(dev)?.barWrite(bar: bar, offset: offset, size: size, value: value)
}

/// Doorbell opaque values: kind (0 TXPROD, 1 RXPROD, 2 RXPROD2) << 8 | queue, offset so
/// that none is a null pointer.
private let doorbellBase = 0x1000

private let doorbellRing: hv_doorbell_fn = { dev, opaque, _ in
    let v = Int(bitPattern: opaque) - doorbellBase
    instance(dev)?.doorbell(kind: v >> 8, queue: v & 0xFF)
}

private let pollCallback: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?) -> Void = { dev, _ in
    instance(dev)?.pollTimerFired()
}

private func makeClient(mac: [UInt8]) -> hv_net_client {
    var client = hv_net_client()
    client.struct_size = UInt32(MemoryLayout<hv_net_client>.size)
    withUnsafeMutableBytes(of: &client.mac) { for i in 0..<6 { $0[i] = mac[i] } }
    client.receive = { dev, frame, len in instance(dev)?.receive(frame, len) ?? HV_EAGAIN }
    client.link_changed = { dev, up in instance(dev)?.linkChanged(up != 0) }
    return client
}

/// Debian's iPXE PXE ROM for VMXNET3 (package ipxe-qemu).
let defaultBootROM = "/usr/lib/ipxe/qemu/pxe-vmxnet3.rom"

private func vmxnetCreate(_ services: UnsafePointer<hv_host_services>?, _ host: OpaquePointer?,
                          _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guard let services, let host, let out else { return HV_EINVAL }
    let hs = services.pointee
    guard hs.isCompatible, let setIdentity = hs.pci_set_identity, let addBAR = hs.pci_add_bar,
          let addMSI = hs.pci_add_msi, let timerCreate = hs.timer_create, let attach = hs.net_attach,
          let linkUp = hs.net_link_up else { return HV_ENOTSUP }
    func say(_ level: Int32, _ text: String) { hs.log(level, text, host: host) }

    guard let mac = NICConfiguration.macAddress(hs, host: host) else { return HV_EINVAL }

    guard let netQueue = hs.extensionTable(HV_EXT_NET_QUEUE, host: host, as: hv_net_queue_ext.self),
          let backpressure = netQueue.pointee.rx_backpressure,
          let msix = hs.extensionTable(HV_EXT_MSIX, host: host, as: hv_msix_ext.self), let msixAdd = msix.pointee.msix_add,
          let doorbells = hs.extensionTable(HV_EXT_DOORBELL, host: host, as: hv_doorbell_ext.self),
          let doorbellAdd = doorbells.pointee.doorbell_add,
          let netOffload = hs.extensionTable(HV_EXT_NET_OFFLOAD, host: host, as: hv_net_offload_ext.self) else {
        say(HV_LOG_ERROR, "the host does not offer \(HV_EXT_NET_QUEUE), \(HV_EXT_MSIX), \(HV_EXT_DOORBELL) (ABI 1.1) and \(HV_EXT_NET_OFFLOAD) (ABI 1.2)")
        return HV_ENOTSUP
    }

    var identity = hv_pci_identity()
    identity.struct_size = UInt32(MemoryLayout<hv_pci_identity>.size)
    identity.vendor_id = 0x15AD
    identity.device_id = 0x07B0
    identity.subsystem_vendor_id = 0x15AD
    identity.subsystem_id = 0x07B0
    identity.class_code = 0x02_00_00
    identity.revision = 0x01
    identity.interrupt_pin = 1
    var rc = setIdentity(host, &identity)
    guard rc >= 0 else { return rc }

    rc = NICConfiguration.offerBootROM(hs, host: host, defaultROM: defaultBootROM)
    guard rc >= 0 else { return rc }

    // BAR0 "PT" and BAR1 "VD" registers, BAR2 the MSI-X table (0) and PBA (0x1000).
    for (index, size) in [(UInt32(0), UInt64(0x1000)), (1, 0x1000), (2, 0x2000)] {
        var bar = hv_bar_desc()
        bar.struct_size = UInt32(MemoryLayout<hv_bar_desc>.size)
        bar.index = index
        bar.kind = HV_BAR_MMIO32
        bar.size = size
        bar.read = index < 2 ? barRead : nil
        bar.write = index < 2 ? barWrite : nil
        rc = addBAR(host, &bar)
        guard rc >= 0 else { return rc }
    }
    var msixDesc = hv_msix_desc()
    msixDesc.struct_size = UInt32(MemoryLayout<hv_msix_desc>.size)
    msixDesc.vectors = UInt32(Limits.maxIntrs)
    msixDesc.bar = 2
    msixDesc.table_offset = 0
    msixDesc.pba_offset = 0x1000
    rc = msixAdd(host, &msixDesc)
    guard rc >= 0 else { return rc }
    rc = addMSI(host, 1)
    guard rc >= 0 else { return rc }

    // TXPROD, RXPROD and RXPROD2 are doorbells: the write completes in the host.
    var bells: [(UInt64, Int)] = (0..<Limits.maxTxQueues).map { (PTReg.txProd + 8 * UInt64($0), $0) }
    for q in 0..<Limits.maxRxQueues {
        bells.append((PTReg.rxProd + 8 * UInt64(q), 1 << 8 | q))
        bells.append((PTReg.rxProd2 + 8 * UInt64(q), 2 << 8 | q))
    }
    for (offset, code) in bells {
        var d = hv_doorbell_desc()
        d.struct_size = UInt32(MemoryLayout<hv_doorbell_desc>.size)
        d.bar = 0
        d.offset = offset
        d.size = 4
        d.ring = doorbellRing
        d.opaque = UnsafeMutableRawPointer(bitPattern: doorbellBase + code)
        rc = doorbellAdd(host, &d)
        guard rc >= 0 else { return rc }
    }

    guard let device = VmxnetDevice(services: services, host: host, mac: mac, netQueue: netQueue,
                                    netOffload: netOffload, msix: msix)
    else { return HV_ENOTSUP }
    let handle = InstanceHandle.retain(device)
    func fail(_ rc: Int32) -> Int32 {
        InstanceHandle.release(handle, as: VmxnetDevice.self)
        return rc
    }
    device.pollTimer = timerCreate(host, pollCallback, nil)
    device.timerCancelWait = hs.extensionTable(HV_EXT_TIMER, host: host, as: hv_timer_ext.self)?.pointee.timer_cancel_wait
    guard device.pollTimer != nil else { return fail(HV_ENOMEM) }
    var port: OpaquePointer?
    var client = makeClient(mac: mac)
    rc = attach(host, &client, &port)
    guard rc >= 0, let port else {
        say(HV_LOG_ERROR, "cannot attach to the virtual switch (error \(rc))")
        return fail(rc < 0 ? rc : HV_EIO)
    }
    device.port = port
    device.linkUp = linkUp(port) != 0
    rc = backpressure(port, 1)
    guard rc >= 0 else { return fail(rc) }
    out.pointee = handle
    return HV_OK
}

private let vmxnetModel: UnsafePointer<hv_device_model> = {
    var m = hv_device_model()
    m.struct_size = UInt32(MemoryLayout<hv_device_model>.size)
    m.kind = HV_DEVICE_KIND_NIC
    m.name = cString("vmxnet")
    m.description = cString("VMware VMXNET3 paravirtual Ethernet (15ad:07b0), the ESX vmxnet NIC")
    m.flags = HV_DEVICE_THREAD_SAFE
    m.state_version = VmxnetDevice.stateVersion
    m.create = { services, host, out in vmxnetCreate(services, host, out) }
    m.ops = vmxnetOps
    m.key_count = vmxnetKeyCount
    m.keys = vmxnetKeys
    m.command_count = vmxnetCommandCount
    m.commands = vmxnetCommands
    return permanent(m)
}()

private let vmxnetEntry = devicePluginEntry(id: "org.hvproject.vmxnet", name: "Vmxnet (VMXNET3) NIC",
                                         version: "1.0.0", vendor: "hvproject", models: [vmxnetModel])

/// The one exported symbol (HV_PLUGIN_ENTRY_SYMBOL).
@_cdecl("hv_plugin_entry_v1")
public func hv_plugin_entry_v1() -> UnsafePointer<hv_plugin_entry> {
    vmxnetEntry
}
