import HVHostIO
import PluginABI

/// A plugin's NIC-teaming policy (`hv_teaming_ops`) as a ``TeamingPolicy``: one
/// `hv_teaming_policy *` instance per switch, made by `init` and released by `deinit`.
/// The switch calls it with its lock held, so calls never overlap.
final class TeamingPluginPolicy: TeamingPolicy {
    let name: String
    let origin: String
    /// The plugin's table as far as its struct_size goes (ops beyond it are NULL here).
    private let ops: hv_teaming_ops
    private let instance: OpaquePointer?

    init(name: String, pluginName: String, pluginPath: String, desc: UnsafePointer<hv_teaming_policy_desc>) throws {
        self.name = name
        origin = "plugin '\(pluginName)' (\(pluginPath))"
        guard let table = desc.pointee.ops else {
            throw SwitchConfigurationError("teaming policy '\(name)' of \(pluginPath) has no ops")
        }
        let ops = loadZeroExtended(table, structSize: UnsafeRawPointer(table).load(as: UInt32.self))
        guard let initOp = ops.`init` else {
            throw SwitchConfigurationError("teaming policy '\(name)' of \(pluginPath) has no init op")
        }
        self.ops = ops
        var out: OpaquePointer?
        let rc = initOp(&out)
        guard rc >= 0 else {
            throw SwitchConfigurationError("teaming policy '\(name)' (\(origin)): init failed with \(errnoName(rc))")
        }
        instance = out
    }

    deinit { ops.deinit(instance) }

    func addUplink(_ id: UInt32, order: UInt32) throws {
        let rc = ops.uplink_add(instance, id, order)
        guard rc >= 0 else {
            throw SwitchConfigurationError("teaming policy '\(name)' refused uplink \(id): uplink_add returned \(errnoName(rc))")
        }
    }

    func linkChanged(_ id: UInt32, up: Bool) { ops.link_changed(instance, id, up ? 1 : 0) }

    func selectUplink(_ frame: TeamingFrameInfo) -> Int32 {
        var info = hv_frame_info()
        info.struct_size = UInt32(MemoryLayout<hv_frame_info>.size)
        info.source_port = frame.sourcePort
        withUnsafeMutableBytes(of: &info.src_mac) { Self.put(frame.sourceMAC, into: $0) }
        withUnsafeMutableBytes(of: &info.dst_mac) { Self.put(frame.destinationMAC, into: $0) }
        info.vlan = frame.vlan
        info.ethertype = frame.etherType
        info.src_ip = frame.sourceIPv4
        info.dst_ip = frame.destinationIPv4
        withUnsafeMutableBytes(of: &info.src_ip6) {
            $0.storeBytes(of: frame.sourceIPv6.0.bigEndian, toByteOffset: 0, as: UInt64.self)
            $0.storeBytes(of: frame.sourceIPv6.1.bigEndian, toByteOffset: 8, as: UInt64.self)
        }
        withUnsafeMutableBytes(of: &info.dst_ip6) {
            $0.storeBytes(of: frame.destinationIPv6.0.bigEndian, toByteOffset: 0, as: UInt64.self)
            $0.storeBytes(of: frame.destinationIPv6.1.bigEndian, toByteOffset: 8, as: UInt64.self)
        }
        return ops.select_uplink(instance, &info)
    }

    func shouldFailback(_ id: UInt32) -> Bool? {
        ops.should_failback.map { $0(instance, id) != 0 }
    }

    /// A 48-bit address key as its six octets, first octet first.
    private static func put(_ address: UInt64, into bytes: UnsafeMutableRawBufferPointer) {
        for i in 0..<6 { bytes[i] = UInt8(truncatingIfNeeded: address >> UInt64(40 - 8 * i)) }
    }
}

extension PluginCatalog {
    /// A new instance of the teaming policy `name` offered by a loaded plugin (one per switch).
    package func makeTeamingPolicy(named name: String) throws -> TeamingPolicy {
        let hit = try teamingPolicyInfo(named: name)
        return try TeamingPluginPolicy(name: hit.policy.name, pluginName: hit.plugin.name,
                                       pluginPath: hit.plugin.path, desc: hit.policy.pointer)
    }

    /// The teaming policies the loaded plugins offer, by name.
    package var teamingNames: [String] { teamingPolicyNames }
}
