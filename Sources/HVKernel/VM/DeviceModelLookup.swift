import HVPluginHost

extension PluginCatalog {
    /// The model for a device of a VM's configuration: found by the device's model name
    /// and checked to be of the device's kind (a NIC model for ethernetN, ...). Errors
    /// name the `.vmx` line and key that chose the model.
    package func deviceModel(named name: String, for device: DeviceConfiguration) throws(PluginCatalogError)
        -> DeviceModelMatch
    {
        let context: String
        if let e = device.entry(forDeviceKey: "virtualDev") ?? device.entry(forDeviceKey: "model") {
            context = "\(e.location): \(e.key) = \"\(e.value)\""
        } else {
            context = "\(device.location): \(device.prefix) (default model \"\(device.modelName)\")"
        }
        return try deviceModel(named: name, kind: device.kind.rawValue, kindName: device.kind.description,
                               context: context)
    }
}
