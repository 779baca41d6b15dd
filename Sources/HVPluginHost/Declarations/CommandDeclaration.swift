import PluginABI

/// One typed command of a model or policy (`hv_command`): a C function and its declared
/// signature, which the host checks every call against before it reaches the plugin.
package struct CommandDeclaration: @unchecked Sendable {
    /// `HV_ARG_*`.
    package enum ArgType: UInt32, Sendable, CustomStringConvertible {
        case void = 0, i8, i16, i32, i64, u8, u16, u32, u64, double, string, bool, textOut

        package var description: String {
            switch self {
            case .void: "void"
            case .i8: "int8"
            case .i16: "int16"
            case .i32: "int32"
            case .i64: "int64"
            case .u8: "uint8"
            case .u16: "uint16"
            case .u32: "uint32"
            case .u64: "uint64"
            case .double: "double"
            case .string: "string"
            case .bool: "bool"
            case .textOut: "text"
            }
        }

        /// Whether the operator gives a word for it (TEXT_OUT is the host's buffer).
        var takesWord: Bool { self != .void && self != .textOut }
    }

    package let name: String
    package let help: String?
    package let isTunable: Bool
    package let result: ArgType
    package let arguments: [(type: ArgType, name: String)]
    let function: @convention(c) () -> Void

    /// The arguments the operator types.
    package var wordArguments: [(type: ArgType, name: String)] { arguments.filter { $0.type.takesWord } }

    /// "dump-csr(index: uint32) -> int32", for help and refusals.
    package var signature: String {
        let args = wordArguments.map { "\($0.name): \($0.type)" }.joined(separator: ", ")
        let out = arguments.contains { $0.type == .textOut }
        let result = self.result == .void ? (out ? " -> text" : "") : " -> \(self.result)\(out ? " + text" : "")"
        return "\(name)(\(args))\(result)"
    }

    static func read(_ c: hv_command) -> Result<CommandDeclaration, DeclarationProblem> {
        guard c.struct_size >= UInt32(MemoryLayout<hv_command>.size) else {
            return .failure(DeclarationProblem("has struct_size \(c.struct_size), expected \(MemoryLayout<hv_command>.size)"))
        }
        guard let name = DeclarationStrings.string(c.name, limit: 64), !name.isEmpty,
              name.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5F || $0 == 0x2D }) else {
            return .failure(DeclarationProblem("has a missing or invalid name (1..64 of a-z 0-9 _ -)"))
        }
        func fail(_ s: String) -> Result<CommandDeclaration, DeclarationProblem> { .failure(DeclarationProblem("'\(name)' \(s)")) }
        guard let fn = c.fn else { return fail("has no function") }
        guard let result = ArgType(rawValue: c.result), result != .string, result != .textOut else {
            return fail("has result type \(c.result), expected HV_ARG_VOID or a number/bool type")
        }
        guard c.arg_count <= HV_COMMAND_MAX_ARGS else { return fail("has \(c.arg_count) arguments, at most \(HV_COMMAND_MAX_ARGS)") }
        guard c.flags & ~HV_COMMAND_TUNABLE == 0 else { return fail("has unknown flags 0x\(String(c.flags, radix: 16))") }
        var args: [(ArgType, String)] = []
        if c.arg_count > 0 {
            guard let types = c.args else { return fail("has arg_count \(c.arg_count) but args is NULL") }
            for i in 0..<Int(c.arg_count) {
                guard let t = ArgType(rawValue: types[i]), t != .void else { return fail("argument \(i) has unknown type \(types[i])") }
                let argName = c.arg_names.flatMap { DeclarationStrings.string($0[i], limit: 64) } ?? (c.flags & HV_COMMAND_TUNABLE != 0 ? "value" : "arg\(i)")
                args.append((t, argName))
            }
        }
        guard args.filter({ $0.0 == .textOut }).count <= 1 else { return fail("has more than one text out-buffer") }
        let tunable = c.flags & HV_COMMAND_TUNABLE != 0
        if tunable, args.count != 1 || !args[0].0.takesWord || result != .i32 {
            return fail("is a tunable but is not int32 \(name)(one value)")
        }
        return .success(CommandDeclaration(name: name, help: DeclarationStrings.string(c.help, limit: 1024),
                                           isTunable: tunable, result: result, arguments: args.map { (type: $0.0, name: $0.1) },
                                           function: fn))
    }
}

/// The keys and commands one model or policy declares (1.2; empty for older plugins).
package struct PluginDeclarations: @unchecked Sendable {
    package var keys: [ConfigKeyDeclaration] = []
    package var commands: [CommandDeclaration] = []

    package func key(named name: String) -> ConfigKeyDeclaration? {
        keys.first { $0.name.lowercased() == name.lowercased() }
    }

    package func command(named name: String) -> CommandDeclaration? {
        commands.first { $0.name == name.lowercased() }
    }

    /// Reads `count` keys and commands, checking every entry: the first malformed one is
    /// the error.
    static func read(keys: UnsafePointer<hv_config_key>?, keyCount: UInt32,
                     commands: UnsafePointer<hv_command>?, commandCount: UInt32) -> Result<PluginDeclarations, DeclarationProblem> {
        var d = PluginDeclarations()
        guard keyCount <= 256, commandCount <= 256 else {
            return .failure(DeclarationProblem("declares more than 256 keys or commands"))
        }
        if keyCount > 0 {
            guard let keys else { return .failure(DeclarationProblem("has key_count \(keyCount) but keys is NULL")) }
            for i in 0..<Int(keyCount) {
                switch ConfigKeyDeclaration.read(keys[i]) {
                case .failure(let p): return .failure(DeclarationProblem("key #\(i) \(p.text)"))
                case .success(let k):
                    guard d.key(named: k.name) == nil else { return .failure(DeclarationProblem("declares key '\(k.name)' twice")) }
                    d.keys.append(k)
                }
            }
        }
        if commandCount > 0 {
            guard let commands else { return .failure(DeclarationProblem("has command_count \(commandCount) but commands is NULL")) }
            for i in 0..<Int(commandCount) {
                switch CommandDeclaration.read(commands[i]) {
                case .failure(let p): return .failure(DeclarationProblem("command #\(i) \(p.text)"))
                case .success(let c):
                    guard d.command(named: c.name) == nil else { return .failure(DeclarationProblem("declares command '\(c.name)' twice")) }
                    if c.isTunable {
                        guard let k = d.key(named: c.name) else {
                            return .failure(DeclarationProblem("has tunable '\(c.name)' without a key of that name"))
                        }
                        if let problem = Self.mismatch(key: k, argument: c.arguments[0].type) {
                            return .failure(DeclarationProblem("has tunable '\(c.name)' whose \(problem)"))
                        }
                    }
                    d.commands.append(c)
                }
            }
        }
        return .success(d)
    }

    /// Why a tunable's argument type cannot carry its key's values, or nil.
    private static func mismatch(key: ConfigKeyDeclaration, argument: CommandDeclaration.ArgType) -> String? {
        let fits: Bool
        switch key.type {
        case .bool: fits = argument == .bool
        case .int: fits = [.i8, .i16, .i32, .i64, .double].contains(argument)
        case .uint: fits = [.u8, .u16, .u32, .u64, .double].contains(argument)
        case .string, .mac, .enumeration: fits = argument == .string
        }
        return fits ? nil : "argument is \(argument) but the key is \(key.type)"
    }
}

extension PluginDeclarations {
    /// `hvhost plugins --keys`: one line per key (name, type and range, default, help),
    /// then the commands with their signatures.
    package func listing(prefix: String) -> String {
        var lines: [String] = []
        if keys.isEmpty {
            lines.append("(no declared keys)")
        } else {
            let width = keys.map { prefix.count + $0.name.count }.max() ?? 0
            for k in keys {
                let full = prefix + k.name
                var line = full + String(repeating: " ", count: width - full.count + 2) + k.typeText
                if let d = k.defaultValue { line += "  default \"\(d)\"" }
                if let h = k.help { line += "  — \(h)" }
                lines.append(line)
            }
        }
        if !commands.isEmpty {
            lines.append("commands:")
            for c in commands {
                lines.append("  " + c.signature + (c.isTunable ? " [tunable]" : "") + (c.help.map { "  — \($0)" } ?? ""))
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

extension PluginCatalog {
    /// The declarations of the device model or scheduler policy `name`, with what it is
    /// ("device model 'vlance' (nic)", "scheduler policy 'propshare'") and the key prefix
    /// shown before its keys ("ethernetN." for a NIC, "" for a policy's tunables).
    package func declarations(ofModelOrPolicy name: String) throws(PluginCatalogError)
        -> (what: String, prefix: String, declarations: PluginDeclarations)
    {
        let m: (plugin: LoadedPlugin, model: LoadedPlugin.DeviceModel)
        do {
            m = try deviceModelInfo(named: name)
        } catch {
            // Not a device model: a policy, or the device-model error (with its hint).
            guard let p = try? schedPolicyInfo(named: name) else { throw error }
            return ("scheduler policy '\(p.policy.name)' (\(p.plugin.path)); tunables: sched tune POOL KEY VALUE", "", p.policy.declarations)
        }
        let prefix = switch m.model.kind {
        case HV_DEVICE_KIND_NIC: "ethernetN."
        case HV_DEVICE_KIND_SCSI: "scsiN."
        case HV_DEVICE_KIND_DISPLAY: "svga."
        default: "hv.deviceN."
        }
        return ("device model '\(m.model.name)' (\(m.model.kindName), \(m.plugin.path))", prefix, m.model.declarations)
    }
}
