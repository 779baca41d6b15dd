import HVPluginHost

/// The keys of a `.vmx` file checked against what the plugins it selects declare
/// (`hv_config_key`): a bad value for a declared key is a problem; a key under a device's
/// prefix that neither the host nor the model declares is a warning with the closest
/// declared name; so is an unknown `sched.cpu.*` key. A model that declares no keys is
/// not checked (older plugins, and plugins that have not declared theirs yet).
package struct DeclaredKeyCheck: Sendable {
    /// `file:line: key = "value": problem, expected ...`.
    package var problems: [String] = []
    /// `file:line: key: warning ...; did you mean 'x'?`.
    package var warnings: [String] = []

    /// Keys the host itself reads under every device prefix, per kind.
    static func hostKeys(for kind: DeviceConfiguration.Kind) -> Set<String> {
        switch kind {
        case .nic: ["present", "virtualdev", "networkname", "address", "addresstype", "generatedaddress"]
        case .scsi: ["present", "virtualdev"]
        case .display: ["present", "virtualdev", "vramsize"]
        case .other: ["present", "model"]
        }
    }

    /// The `sched.cpu.*` keys the VMkernel reads.
    static let schedulingKeys = ["shares", "min", "max", "affinity", "htsharing"]

    package init(devices: [DeviceConfiguration], declarations: (DeviceConfiguration) -> PluginDeclarations?,
                 file: VMXFile) {
        for device in devices {
            guard let decl = declarations(device), !decl.keys.isEmpty else { continue }
            let host = Self.hostKeys(for: device.kind)
            for (relative, entry) in device.entries.sorted(by: { $0.value.line < $1.value.line }) {
                // SCSI target keys (`scsi0:1.fileName`) belong to the host's disk layer.
                if relative.hasPrefix(":") || host.contains(relative) { continue }
                if let key = decl.key(named: relative) {
                    if let problem = key.problem(with: entry.value) {
                        problems.append("\(entry.location): \(entry.key) = \"\(entry.value)\": \(problem), expected \(key.expected) (declared by model '\(device.modelName)')")
                    }
                    continue
                }
                let declared = decl.keys.map(\.name)
                let written = String(entry.key.dropFirst(device.prefix.count + 1))
                var line = "\(entry.location): \(entry.key): warning: model '\(device.modelName)' declares no key '\(written)'"
                if let close = Self.closest(to: relative, in: declared) {
                    line += "; did you mean '\(device.fullKey(forDeviceKey: close))'?"
                } else {
                    line += "; it declares: " + declared.joined(separator: ", ")
                }
                warnings.append(line)
            }
        }
        for entry in file.entries where entry.normalizedKey.hasPrefix("sched.cpu.") {
            let rest = String(entry.normalizedKey.dropFirst("sched.cpu.".count))
            guard !Self.schedulingKeys.contains(rest) else { continue }
            var line = "\(entry.location): \(entry.key): warning: the VMkernel reads no key 'sched.cpu.\(rest)'"
            if let close = Self.closest(to: rest, in: Self.schedulingKeys) { line += "; did you mean 'sched.cpu.\(close)'?" }
            warnings.append(line)
        }
    }

    /// The declared name nearest `name` (case-insensitive), when it is a plausible typo.
    static func closest(to name: String, in names: [String]) -> String? {
        let n = name.lowercased()
        guard let best = names.min(by: { editDistance($0.lowercased(), n) < editDistance($1.lowercased(), n) }) else { return nil }
        return editDistance(best.lowercased(), n) <= max(2, n.count / 3) ? best : nil
    }

    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a.utf8), b = Array(b.utf8)
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var prev = Array(0...b.count), cur = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            cur[0] = i
            for j in 1...b.count {
                cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            swap(&prev, &cur)
        }
        return prev[b.count]
    }
}

extension PluginCatalog {
    /// `file`'s device keys checked against the declarations of the models it selects.
    package func declaredKeyCheck(devices: [DeviceConfiguration], file: VMXFile) -> DeclaredKeyCheck {
        DeclaredKeyCheck(devices: devices, declarations: { device in
            (try? self.deviceModel(named: device.modelName, for: device))?.info.declarations
        }, file: file)
    }
}
