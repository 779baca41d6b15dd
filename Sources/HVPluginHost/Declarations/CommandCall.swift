import CFFI
import Glibc
import PluginABI

/// An operator's words refused before the plugin is called: wrong count or a word
/// that is not of the declared type. The message carries the declared signature.
package struct CommandRefusal: Error, CustomStringConvertible, Sendable {
    package let message: String
    package var description: String { message }
}

/// The outcome of one call: the typed result (nil for void) and the text the command
/// wrote into its out-buffer (nil without one).
package struct CommandOutput: Sendable, Equatable {
    package var result: String?
    package var text: String?

    /// What the console prints: the text, then the result (`= 42`).
    package var rendered: String {
        var lines: [String] = []
        if let text, !text.isEmpty { lines.append(text.hasSuffix("\n") ? String(text.dropLast()) : text) }
        if let result { lines.append("= \(result)") }
        return lines.isEmpty ? "ok" : lines.joined(separator: "\n")
    }
}

/// One argument parsed from a console word.
package enum CommandArgument: Sendable, Equatable {
    case signed(Int64), unsigned(UInt64), double(Double), string(String), bool(Bool)
}

extension CommandDeclaration {
    /// The console's words as this command's arguments, checked against the declared
    /// types (ranges of the integer widths included); refused with the signature.
    package func parse(_ words: [String]) throws(CommandRefusal) -> [CommandArgument] {
        let declared = wordArguments
        guard words.count == declared.count else {
            throw CommandRefusal(message: "\(name) takes \(declared.count) argument\(declared.count == 1 ? "" : "s"), got \(words.count); usage: \(signature)")
        }
        var out: [CommandArgument] = []
        for (word, arg) in zip(words, declared) {
            guard let v = Self.parse(word, as: arg.type) else {
                throw CommandRefusal(message: "\(name): '\(word)' is not a valid \(arg.type) for \(arg.name); usage: \(signature)")
            }
            out.append(v)
        }
        return out
    }

    private static func parse(_ word: String, as type: ArgType) -> CommandArgument? {
        func signed(_ bits: Int) -> CommandArgument? {
            guard let v = ConfigValueParsing.signed(word) else { return nil }
            let lo = bits == 64 ? Int64.min : -(Int64(1) << (bits - 1)), hi = bits == 64 ? Int64.max : (Int64(1) << (bits - 1)) - 1
            return (lo...hi).contains(v) ? .signed(v) : nil
        }
        func unsigned(_ bits: Int) -> CommandArgument? {
            guard !word.hasPrefix("-"), let v = ConfigValueParsing.unsigned(word) else { return nil }
            return bits == 64 || v < (UInt64(1) << bits) ? .unsigned(v) : nil
        }
        switch type {
        case .i8: return signed(8)
        case .i16: return signed(16)
        case .i32: return signed(32)
        case .i64: return signed(64)
        case .u8: return unsigned(8)
        case .u16: return unsigned(16)
        case .u32: return unsigned(32)
        case .u64: return unsigned(64)
        case .double: return Double(word).flatMap { $0.isFinite ? .double($0) : nil }
        case .string: return .string(word)
        case .bool: return ConfigValueParsing.bool(word).map { .bool($0) }
        case .void, .textOut: return nil
        }
    }

    /// Calls the function through libffi as `result fn(instance, args...)`. The caller
    /// holds whatever lock the thread contract asks ([device] or [sched]).
    package func call(instance: OpaquePointer, with parsed: [CommandArgument]) -> CommandOutput {
        precondition(parsed.count == wordArguments.count, "arguments were not parsed by parse(_:)")
        // One 16-byte slot per C parameter (size_t is 64-bit here, LP64); strings and the text buffer are
        // allocated here and freed after the call.
        var types: [UnsafeMutablePointer<ffi_type>?] = [FFITypes.pointer]
        let slotCount = 2 + arguments.count   // the instance, the arguments, TEXT_OUT's length
        let slots = UnsafeMutableRawPointer.allocate(byteCount: 16 * slotCount, alignment: 16)
        defer { slots.deallocate() }
        var values: [UnsafeMutableRawPointer?] = []
        var slot = 0
        func next() -> UnsafeMutableRawPointer {
            defer { slot += 1 }
            return slots + 16 * slot
        }
        var owned: [UnsafeMutableRawPointer] = []
        defer { for p in owned { free(p) } }
        let first = next()
        first.storeBytes(of: UnsafeRawPointer(instance), as: UnsafeRawPointer.self)
        values.append(first)

        var text: UnsafeMutablePointer<CChar>?
        var words = parsed.makeIterator()
        for arg in arguments.map(\.type) {
            if arg == .textOut {
                let buffer = calloc(1, Int(HV_COMMAND_TEXT_MAX))!
                owned.append(buffer)
                text = buffer.assumingMemoryBound(to: CChar.self)
                let b = next(), n = next()
                b.storeBytes(of: UnsafeRawPointer(buffer), as: UnsafeRawPointer.self)
                n.storeBytes(of: Int(HV_COMMAND_TEXT_MAX), as: Int.self)
                types += [FFITypes.pointer, FFITypes.size]
                values += [b, n]
                continue
            }
            let s = next()
            switch (arg, words.next()!) {
            case (.i8, .signed(let v)): s.storeBytes(of: Int8(v), as: Int8.self)
            case (.i16, .signed(let v)): s.storeBytes(of: Int16(v), as: Int16.self)
            case (.i32, .signed(let v)): s.storeBytes(of: Int32(v), as: Int32.self)
            case (.i64, .signed(let v)): s.storeBytes(of: v, as: Int64.self)
            case (.u8, .unsigned(let v)): s.storeBytes(of: UInt8(v), as: UInt8.self)
            case (.u16, .unsigned(let v)): s.storeBytes(of: UInt16(v), as: UInt16.self)
            case (.u32, .unsigned(let v)): s.storeBytes(of: UInt32(v), as: UInt32.self)
            case (.u64, .unsigned(let v)): s.storeBytes(of: v, as: UInt64.self)
            case (.double, .double(let v)): s.storeBytes(of: v, as: Double.self)
            case (.bool, .bool(let v)): s.storeBytes(of: Int32(v ? 1 : 0), as: Int32.self)
            case (.string, .string(let v)):
                let copy = strdup(v)!
                owned.append(UnsafeMutableRawPointer(copy))
                s.storeBytes(of: UnsafeRawPointer(copy), as: UnsafeRawPointer.self)
            default: preconditionFailure("argument does not match its declared type")
            }
            types.append(FFITypes.of(arg))
            values.append(s)
        }

        var cif = ffi_cif()
        var resultSlot = (UInt64(0), UInt64(0))
        let status = types.withUnsafeMutableBufferPointer { t in
            ffi_prep_cif(&cif, FFI_DEFAULT_ABI, UInt32(t.count), FFITypes.of(result), t.baseAddress)
        }
        precondition(status == FFI_OK, "ffi_prep_cif failed for a validated signature")
        values.withUnsafeMutableBufferPointer { v in
            withUnsafeMutableBytes(of: &resultSlot) { r in
                ffi_call(&cif, function, r.baseAddress, v.baseAddress)
            }
        }
        var output = CommandOutput()
        output.result = withUnsafeBytes(of: resultSlot) { Self.render(result, $0.baseAddress!) }
        if let text { output.text = String(cString: text) }
        return output
    }

    /// libffi widens integer results narrower than a register to `ffi_arg`.
    private static func render(_ type: ArgType, _ p: UnsafeRawPointer) -> String? {
        let wide = p.load(as: UInt64.self)
        switch type {
        case .void: return nil
        case .i8: return String(Int8(truncatingIfNeeded: wide))
        case .i16: return String(Int16(truncatingIfNeeded: wide))
        case .i32: return String(Int32(truncatingIfNeeded: wide))
        case .i64: return String(Int64(bitPattern: wide))
        case .u8: return String(UInt8(truncatingIfNeeded: wide))
        case .u16: return String(UInt16(truncatingIfNeeded: wide))
        case .u32: return String(UInt32(truncatingIfNeeded: wide))
        case .u64: return String(wide)
        case .double: return String(p.load(as: Double.self))
        case .bool: return Int32(truncatingIfNeeded: wide) != 0 ? "true" : "false"
        case .string, .textOut: return nil
        }
    }
}

/// libffi's type descriptors (C globals, stable for the process).
private enum FFITypes {
    static let pointer = withUnsafeMutablePointer(to: &ffi_type_pointer) { $0 }
    static let size = withUnsafeMutablePointer(to: &ffi_type_uint64) { $0 }

    static func of(_ t: CommandDeclaration.ArgType) -> UnsafeMutablePointer<ffi_type> {
        switch t {
        case .void: withUnsafeMutablePointer(to: &ffi_type_void) { $0 }
        case .i8: withUnsafeMutablePointer(to: &ffi_type_sint8) { $0 }
        case .i16: withUnsafeMutablePointer(to: &ffi_type_sint16) { $0 }
        case .i32, .bool: withUnsafeMutablePointer(to: &ffi_type_sint32) { $0 }
        case .i64: withUnsafeMutablePointer(to: &ffi_type_sint64) { $0 }
        case .u8: withUnsafeMutablePointer(to: &ffi_type_uint8) { $0 }
        case .u16: withUnsafeMutablePointer(to: &ffi_type_uint16) { $0 }
        case .u32: withUnsafeMutablePointer(to: &ffi_type_uint32) { $0 }
        case .u64: withUnsafeMutablePointer(to: &ffi_type_uint64) { $0 }
        case .double: withUnsafeMutablePointer(to: &ffi_type_double) { $0 }
        case .string, .textOut: withUnsafeMutablePointer(to: &ffi_type_pointer) { $0 }
        }
    }
}
