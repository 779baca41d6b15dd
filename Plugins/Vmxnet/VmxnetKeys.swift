import PluginABI
import PluginKit

/// The keys vmxnetCreate reads through config_get (both are also the host's own NIC
/// keys); declared so `hvhost validate` and `hvhost plugins --keys vmxnet` know them.
let vmxnetKeys = PluginDeclarations.table([
    PluginDeclarations.key(HV_KEY_MAC, "address", "static unicast MAC address (00:50:56:00:00:00 to 00:50:56:3F:FF:FF)"),
    PluginDeclarations.key(HV_KEY_MAC, "generatedAddress", "the address the host generated (written by ESX and suspend files)"),
])
let vmxnetKeyCount: UInt32 = 2
