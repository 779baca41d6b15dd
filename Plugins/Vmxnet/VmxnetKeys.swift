import PluginABI
import PluginKit

/// The keys vmxnetCreate reads through config_get (both are also the host's own NIC
/// keys); declared so `hvhost validate` and `hvhost plugins --keys vmxnet` know them.
let vmxnetKeys: UnsafePointer<hv_config_key> = {
    func key(_ name: StaticString, _ help: StaticString) -> hv_config_key {
        hv_config_key(struct_size: UInt32(MemoryLayout<hv_config_key>.size), type: HV_KEY_MAC, name: cString(name),
                      min: 0, max: -1, choices: nil, default_value: nil, help: cString(help))
    }
    let keys = UnsafeMutablePointer<hv_config_key>.allocate(capacity: 2)
    keys[0] = key("address", "static unicast MAC address (00:50:56:00:00:00 to 00:50:56:3F:FF:FF)")
    keys[1] = key("generatedAddress", "the address the host generated (written by ESX and suspend files)")
    return UnsafePointer(keys)
}()
let vmxnetKeyCount: UInt32 = 2
