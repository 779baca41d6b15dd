import PluginABI

/// A device's saved state: named, typed fields of one versioned section, as written
/// through `state_put` and read back through `state_get`.
package struct DeviceStateSection: Sendable, Equatable {
    package struct Field: Sendable, Equatable {
        package let type: UInt32
        package let bytes: [UInt8]

        package init(type: UInt32, bytes: [UInt8]) {
            self.type = type
            self.bytes = bytes
        }
    }

    package let name: String
    package let version: UInt32
    package var fields: [String: Field] = [:]

    package init(name: String, version: UInt32) {
        self.name = name
        self.version = version
    }

    /// The byte length a field of `type` must have, nil for HV_STATE_BYTES.
    package static func fixedLength(of type: UInt32) -> Int?? {
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
