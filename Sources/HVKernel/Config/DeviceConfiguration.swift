/// One device instance the VM creates from a plugin model, e.g. `ethernet0` → "vlance".
package struct DeviceConfiguration: Equatable, Sendable {
    /// Which `.vmx` keys select the model; raw values equal `HV_DEVICE_KIND_*`.
    enum Kind: UInt32, Sendable, CustomStringConvertible {
        case nic = 1        // ethernetN.virtualDev
        case scsi = 2       // scsiN.virtualDev
        case display = 3    // svga.virtualDev
        case other = 4      // hv.deviceN.model

        var description: String {
            switch self {
            case .nic: "nic"
            case .scsi: "scsi"
            case .display: "display"
            case .other: "other"
            }
        }
    }

    var kind: Kind
    /// The plugin model name, e.g. "vlance", "lsilogic", "svga", "edu".
    package var modelName: String
    /// The key prefix of the instance: "ethernet0", "scsi0", "svga", "hv.device0".
    package var prefix: String
    /// N of ethernetN / scsiN / hv.deviceN; 0 for svga.
    var index: Int
    /// Where the model was chosen (the `virtualDev`/`model` line, else the `present` line).
    var location: String
    /// The disks of a SCSI adapter, by unit; empty for other kinds.
    var disks: [VirtualDiskConfiguration]
    /// The virtual switch of a NIC (`ethernetN.networkName`); nil for other kinds.
    var networkName: String?

    /// Every entry under the prefix, keyed by the lowercased key relative to it:
    /// "ethernet0.address" → "address", "scsi0:1.fileName" → ":1.filename".
    var entries: [String: VMXFile.Entry]

    init(kind: Kind, modelName: String, prefix: String, index: Int, location: String,
                disks: [VirtualDiskConfiguration] = [], networkName: String? = nil,
                entries: [String: VMXFile.Entry]) {
        self.kind = kind
        self.modelName = modelName
        self.prefix = prefix
        self.index = index
        self.location = location
        self.disks = disks
        self.networkName = networkName
        self.entries = entries
    }

    /// The entry of a key relative to the prefix, case-insensitive: for "ethernet0",
    /// "address" is `ethernet0.address`; a key starting with ':' is joined without the
    /// dot, so for "scsi0", ":1.fileName" is `scsi0:1.fileName`.
    package func entry(forDeviceKey key: String) -> VMXFile.Entry? {
        entries[key.lowercased()]
    }

    /// The value of a key relative to the prefix (see `entry(forDeviceKey:)`).
    func value(forDeviceKey key: String) -> String? {
        entry(forDeviceKey: key)?.value
    }

    /// The full `.vmx` key for a key relative to the prefix.
    func fullKey(forDeviceKey key: String) -> String {
        key.hasPrefix(":") ? prefix + key : prefix + "." + key
    }

    /// Collects the entries of `file` under `prefix` (see `entries`).
    static func entries(of file: VMXFile, prefix: String) -> [String: VMXFile.Entry] {
        let p = prefix.lowercased()
        var result: [String: VMXFile.Entry] = [:]
        for e in file.entries where e.normalizedKey.hasPrefix(p) {
            let rest = e.normalizedKey.dropFirst(p.count)
            if rest.hasPrefix(".") {
                result[String(rest.dropFirst())] = e
            } else if rest.hasPrefix(":") {
                result[String(rest)] = e
            }
        }
        return result
    }
}
