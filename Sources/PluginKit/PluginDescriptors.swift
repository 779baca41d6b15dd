import Glibc
import PluginABI

// Swift conveniences for device plugins written in Swift (ARCHITECTURE section 2: a small
// helper target that depends on PluginABI only). Everything here is linked into each
// plugin's own shared object; nothing crosses the C ABI but what hvplugin.h defines.

/// The ABI version the plugins of this tree declare.
package let pluginABIVersion: UInt32 = (HV_ABI_VERSION_MAJOR << 16) | HV_ABI_VERSION_MINOR

/// A string literal as the `const char *` a descriptor holds (static storage, never freed).
package func cString(_ s: StaticString) -> UnsafePointer<CChar> {
    UnsafeRawPointer(s.utf8Start).assumingMemoryBound(to: CChar.self)
}

/// `value` copied into memory that is never freed: the descriptors the host reads for as
/// long as the plugin is loaded.
package func permanent<T>(_ value: T) -> UnsafePointer<T> {
    let p = UnsafeMutablePointer<T>.allocate(capacity: 1)
    p.initialize(to: value)
    return UnsafePointer(p)
}

private let deviceFactoryID = cString("hv.device/1")

/// The device factory of this shared object, set once by `devicePluginEntry` (each plugin
/// links its own copy of this module). `get_factory` is a C function pointer and cannot
/// capture it.
nonisolated(unsafe) private var deviceFactory: UnsafePointer<hv_device_factory>?

/// The entry of a plugin offering device `models` through "hv.device/1". Call it once, from
/// the initializer of the global the plugin's `hv_plugin_entry_v1` returns.
package func devicePluginEntry(id: StaticString, name: StaticString, version: StaticString, vendor: StaticString,
                               models: [UnsafePointer<hv_device_model>]) -> UnsafePointer<hv_plugin_entry> {
    let list = UnsafeMutablePointer<UnsafePointer<hv_device_model>?>.allocate(capacity: models.count)
    for (i, m) in models.enumerated() { (list + i).initialize(to: m) }
    var f = hv_device_factory()
    f.struct_size = UInt32(MemoryLayout<hv_device_factory>.size)
    f.abi_version = pluginABIVersion
    f.model_count = UInt32(models.count)
    f.models = UnsafePointer(list)
    deviceFactory = permanent(f)

    let ids = UnsafeMutablePointer<UnsafePointer<CChar>?>.allocate(capacity: 2)
    ids.initialize(to: deviceFactoryID)
    (ids + 1).initialize(to: nil)
    var e = hv_plugin_entry()
    e.struct_size = UInt32(MemoryLayout<hv_plugin_entry>.size)
    e.abi_version = pluginABIVersion
    e.id = cString(id)
    e.name = cString(name)
    e.version = cString(version)
    e.vendor = cString(vendor)
    e.get_factory = { id in
        guard let id, strcmp(id, deviceFactoryID) == 0 else { return nil }
        return UnsafeRawPointer(deviceFactory)
    }
    e.factory_ids = UnsafePointer(ids)
    return permanent(e)
}
