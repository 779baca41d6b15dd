import HVHostIO
import HVPluginHost
import HVSupport

/// What the destination checks before the source copies anything: the "manifest"
/// section, sent after "config" (the suspend format).
///
///     manifest  v1  u64 RAM bytes, u32 vCPU count, u32 device count, per plugin device:
///                   string prefix, string model name, u32 state_version
///
/// The destination refuses when the configuration does not load here, a VM of that name
/// runs already, a device's model is not provided by any plugin here, or a model's
/// state_version is older than the source's (it could not read the saved state).
struct MigrationManifest: Equatable {
    struct Device: Equatable {
        var prefix: String
        var model: String
        var stateVersion: UInt32
    }

    var memoryBytes: UInt64
    var vcpuCount: Int
    var devices: [Device]

    var encoded: [UInt8] {
        var e = StateEncoder()
        e.u64(memoryBytes)
        e.u32(UInt32(vcpuCount))
        e.u32(UInt32(devices.count))
        for d in devices {
            e.string(d.prefix)
            e.string(d.model)
            e.u32(d.stateVersion)
        }
        return e.bytes
    }

    init(memoryBytes: UInt64, vcpuCount: Int, devices: [Device]) {
        self.memoryBytes = memoryBytes
        self.vcpuCount = vcpuCount
        self.devices = devices
    }

    init(_ payload: [UInt8], context: String) throws {
        var d = StateDecoder(payload, context: context)
        memoryBytes = try d.u64()
        vcpuCount = Int(try d.u32())
        let count = try d.u32()
        guard count <= 1024 else { throw MigrationError("\(context): \(count) devices") }
        devices = []
        for _ in 0..<count {
            devices.append(Device(prefix: try d.string(limit: 256), model: try d.string(limit: 256), stateVersion: try d.u32()))
        }
        try d.finish()
    }

    /// Why this host cannot take the VM, or nil. `resolve` finds a device's model here.
    func refusal(for configuration: VMConfiguration,
                 resolve: (DeviceConfiguration) throws -> DeviceModelMatch) -> String? {
        guard memoryBytes == configuration.memoryBytes, vcpuCount == configuration.vcpuCount else {
            return "the source runs \(configuration.displayName) with \(memoryBytes >> 20) MiB and \(vcpuCount) vCPU(s), but its configuration says memsize \(configuration.memoryMiB) and numvcpus \(configuration.vcpuCount)"
        }
        let configured = Set(configuration.devices.map(\.prefix))
        for d in devices where !configured.contains(d.prefix) {
            return "the source has state for \(d.prefix), a device its configuration does not have"
        }
        for device in configuration.devices {
            let match: DeviceModelMatch
            do { match = try resolve(device) } catch {
                return "\(device.prefix) cannot be created on this host: \(error)"
            }
            guard let theirs = devices.first(where: { $0.prefix == device.prefix }) else { continue }
            guard match.info.name == theirs.model else {
                return "\(device.prefix) is model '\(theirs.model)' on the source but '\(match.info.name)' here"
            }
            guard match.info.stateVersion >= theirs.stateVersion else {
                return "\(device.prefix) (model '\(theirs.model)') saves state version \(theirs.stateVersion) on the source, but the plugin here (\(match.pluginName)) reads only up to version \(match.info.stateVersion)"
            }
        }
        return nil
    }
}
