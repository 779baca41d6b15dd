import HVHostIO
import PluginABI

/// A plugin's hv_input_client on the VM's input router: each event is one call of the
/// plugin's callback under the device lock (none for a thread-safe model).
final class PluginInputClient: InputClient {
    unowned let device: PluginDevice
    let keyHandler: (@convention(c) (OpaquePointer?, UInt32, Int32) -> Int32)?
    let pointerHandler: (@convention(c) (OpaquePointer?, UnsafePointer<hv_pointer_event>?) -> Int32)?

    init(device: PluginDevice, client: hv_input_client) {
        self.device = device
        keyHandler = client.key
        pointerHandler = client.pointer
    }

    func key(scancode: UInt32, pressed: Bool) -> Bool {
        guard let keyHandler else { return false }
        var rc = HV_EAGAIN
        device.call { rc = keyHandler($0, scancode, pressed ? 1 : 0) }
        return rc == HV_OK
    }

    func pointer(_ event: PointerEvent) -> Bool {
        guard let pointerHandler else { return false }
        var e = hv_pointer_event()
        e.struct_size = UInt32(MemoryLayout<hv_pointer_event>.size)
        e.kind = event.kind.rawValue
        e.x = event.x
        e.y = event.y
        e.wheel = event.wheel
        e.buttons = event.buttons.rawValue
        var rc = HV_EAGAIN
        device.call { instance in rc = withUnsafePointer(to: &e) { pointerHandler(instance, $0) } }
        return rc == HV_OK
    }
}

extension PluginExtensions {
    static func inputTable() -> hv_input_ext {
        var t = hv_input_ext()
        t.struct_size = UInt32(MemoryLayout<hv_input_ext>.size)
        t.attach = { host, client in
            guard let d = PluginDevice.from(host), let client, let router = d.context.input else { return HV_EINVAL }
            guard d.creating else { return d.refuse(HV_EPERM, "input client attached after create()") }
            let c = client.pointee
            guard c.struct_size >= UInt32(MemoryLayout<hv_input_client>.size), c.key != nil || c.pointer != nil else {
                return d.refuse(HV_EINVAL, "input client without a key or pointer callback (or struct_size too small)")
            }
            guard !router.hasClient(where: { ($0 as? PluginInputClient)?.device === d }) else {
                return d.refuse(HV_EEXIST, "a second input client for one instance")
            }
            let adapter = PluginInputClient(device: d, client: c)
            router.attach(adapter)
            d.resources.withLock { d.extensionReleases.append { router.detach(adapter) } }
            return HV_OK
        }
        return t
    }
}
