import PluginABI

/// One `.vmx` key a device model (or a policy's tunable) declares (`hv_config_key`):
/// its name relative to the device's prefix, type, range or choices, default and help.
package struct ConfigKeyDeclaration: Sendable, Equatable {
    package enum ValueType: UInt32, Sendable, CustomStringConvertible {
        case bool = 1, int = 2, uint = 3, string = 4, mac = 5, enumeration = 6

        package var description: String {
            switch self {
            case .bool: "bool"
            case .int: "int"
            case .uint: "uint"
            case .string: "string"
            case .mac: "mac"
            case .enumeration: "enum"
            }
        }
    }

    package let name: String
    package let type: ValueType
    /// INT: signed bounds; UINT: the same bits read as unsigned. nil = no range.
    let minimum: Int64?
    let maximum: Int64?
    package let choices: [String]
    package let defaultValue: String?
    package let help: String?

    /// "uint 1..100", "enum fast|slow", "bool".
    package var typeText: String {
        switch type {
        case .int:
            if let lo = minimum, let hi = maximum { return "int \(lo)..\(hi)" }
        case .uint:
            if let lo = minimum, let hi = maximum { return "uint \(UInt64(bitPattern: lo))..\(UInt64(bitPattern: hi))" }
        case .enumeration:
            return "enum " + choices.joined(separator: "|")
        default: break
        }
        return type.description
    }

    /// What a valid value looks like, for messages.
    package var expected: String {
        switch type {
        case .bool: "TRUE or FALSE"
        case .int, .uint:
            if let lo = minimum, let hi = maximum {
                type == .int ? "an integer from \(lo) to \(hi)"
                    : "an unsigned integer from \(UInt64(bitPattern: lo)) to \(UInt64(bitPattern: hi))"
            } else {
                type == .int ? "an integer (decimal or 0x hex)" : "an unsigned integer (decimal or 0x hex)"
            }
        case .string: "any text"
        case .mac: "a MAC address, e.g. 00:50:56:01:02:03"
        case .enumeration: "one of " + choices.joined(separator: ", ")
        }
    }

    /// Why `value` is not valid for this key, or nil when it is.
    package func problem(with raw: String) -> String? {
        let value = raw.trimmingCharacters(in: " \t")
        switch type {
        case .bool:
            return ConfigValueParsing.bool(value) == nil ? "not a boolean" : nil
        case .int:
            guard let v = ConfigValueParsing.signed(value) else { return "not an integer" }
            if let lo = minimum, let hi = maximum, lo <= hi, !(lo...hi).contains(v) { return "\(v) is out of range" }
            return nil
        case .uint:
            guard let v = ConfigValueParsing.unsigned(value) else { return "not an unsigned integer" }
            if let lo = minimum.map({ UInt64(bitPattern: $0) }), let hi = maximum.map({ UInt64(bitPattern: $0) }),
               lo <= hi, !(lo...hi).contains(v) { return "\(v) is out of range" }
            return nil
        case .string:
            return nil
        case .mac:
            return ConfigValueParsing.isMAC(value) ? nil : "not a MAC address"
        case .enumeration:
            return choices.contains { $0.lowercased() == value.lowercased() } ? nil : "not one of the choices"
        }
    }

    /// Reads a declaration: the declaration, or why it is malformed.
    static func read(_ k: hv_config_key) -> Result<ConfigKeyDeclaration, DeclarationProblem> {
        guard k.struct_size >= UInt32(MemoryLayout<hv_config_key>.size) else {
            return .failure(DeclarationProblem("has struct_size \(k.struct_size), expected \(MemoryLayout<hv_config_key>.size)"))
        }
        guard let name = DeclarationStrings.string(k.name, limit: 64), !name.isEmpty,
              name.utf8.allSatisfy({ DeclarationStrings.isKeyCharacter($0) }) else {
            return .failure(DeclarationProblem("has a missing or invalid name (1..64 of A-Z a-z 0-9 _ . -)"))
        }
        guard let type = ValueType(rawValue: k.type) else {
            return .failure(DeclarationProblem("'\(name)' has unknown type \(k.type) (expected HV_KEY_BOOL..HV_KEY_ENUM)"))
        }
        var choices: [String] = []
        if type == .enumeration {
            guard let text = DeclarationStrings.string(k.choices, limit: 1024), !text.isEmpty else {
                return .failure(DeclarationProblem("'\(name)' is an enum without choices"))
            }
            choices = text.split(separator: "|", omittingEmptySubsequences: false).map(String.init)
            guard !choices.contains(where: \.isEmpty) else {
                return .failure(DeclarationProblem("'\(name)' has an empty choice in \"\(text)\""))
            }
        }
        let ranged = (type == .int || type == .uint)
        let hasRange = ranged && (type == .int ? k.min <= k.max : UInt64(bitPattern: k.min) <= UInt64(bitPattern: k.max))
        let decl = ConfigKeyDeclaration(
            name: name, type: type, minimum: hasRange ? k.min : nil, maximum: hasRange ? k.max : nil,
            choices: choices, defaultValue: DeclarationStrings.string(k.default_value, limit: 1024),
            help: DeclarationStrings.string(k.help, limit: 1024))
        if let d = decl.defaultValue, let p = decl.problem(with: d) {
            return .failure(DeclarationProblem("'\(name)' has default \"\(d)\": \(p), expected \(decl.expected)"))
        }
        return .success(decl)
    }
}

/// What is wrong with a declaration (keys or commands), for the load error.
struct DeclarationProblem: Error {
    let text: String
    init(_ text: String) { self.text = text }
}

/// Value syntax shared by key checks and command arguments.
package enum ConfigValueParsing {
    package static func bool(_ s: String) -> Bool? {
        switch s.lowercased() {
        case "true", "yes", "1", "on": true
        case "false", "no", "0", "off": false
        default: nil
        }
    }

    package static func unsigned(_ s: String) -> UInt64? {
        let t = s.lowercased()
        if t.hasPrefix("0x") { return UInt64(t.dropFirst(2), radix: 16) }
        return UInt64(t)
    }

    package static func signed(_ s: String) -> Int64? {
        let t = s.lowercased()
        if t.hasPrefix("-0x") { return UInt64(t.dropFirst(3), radix: 16).flatMap { $0 <= UInt64(Int64.max) + 1 ? Int64(truncatingIfNeeded: 0 &- $0) : nil } }
        if t.hasPrefix("0x") { return UInt64(t.dropFirst(2), radix: 16).flatMap { $0 <= UInt64(Int64.max) ? Int64($0) : nil } }
        return Int64(t)
    }

    static func isMAC(_ s: String) -> Bool {
        let parts = s.split(separator: ":", omittingEmptySubsequences: false)
        return parts.count == 6 && parts.allSatisfy { $0.count == 2 && UInt8($0, radix: 16) != nil }
    }
}

/// Bounded C strings of declarations.
enum DeclarationStrings {
    static func string(_ p: UnsafePointer<CChar>?, limit: Int) -> String? {
        guard let p else { return nil }
        var n = 0
        while n <= limit, p[n] != 0 { n += 1 }
        guard n <= limit else { return nil }
        return String(decoding: UnsafeRawBufferPointer(start: p, count: n), as: UTF8.self)
    }

    static func isKeyCharacter(_ c: UInt8) -> Bool {
        (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39) || c == 0x5F || c == 0x2E || c == 0x2D
    }
}

extension String {
    func trimmingCharacters(in set: String) -> String {
        var s = Substring(self)
        while let f = s.first, set.contains(f) { s = s.dropFirst() }
        while let l = s.last, set.contains(l) { s = s.dropLast() }
        return String(s)
    }
}
