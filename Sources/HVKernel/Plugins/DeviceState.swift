import PluginABI

/// A device's saved state: named, typed fields of one versioned section, as written
/// through `state_put` and read back through `state_get`.
public struct DeviceStateSection: Sendable, Equatable {
    public struct Field: Sendable, Equatable {
        public let type: UInt32
        public let bytes: [UInt8]
    }

    public let name: String
    public let version: UInt32
    public var fields: [String: Field] = [:]

    public init(name: String, version: UInt32) {
        self.name = name
        self.version = version
    }

    /// The byte length a field of `type` must have, nil for HV_STATE_BYTES.
    static func fixedLength(of type: UInt32) -> Int?? {
        switch type {
        case HV_STATE_U8: return 1
        case HV_STATE_U16: return 2
        case HV_STATE_U32: return 4
        case HV_STATE_U64: return 8
        case HV_STATE_BYTES: return .some(nil)
        default: return nil
        }
    }
}
