import PluginABI

/// Builders for a model's declared keys and typed console commands (ABI 1.2), all
/// allocated once and never freed.
package enum PluginDeclarations {
    /// A text-out command's function: fills `buffer` (`capacity` bytes, NUL-terminated).
    package typealias TextCommand = @convention(c) (OpaquePointer?, UnsafeMutablePointer<CChar>?, Int) -> Void
    /// A command taking one u32 argument and returning a u32.
    package typealias U32Command = @convention(c) (OpaquePointer?, UInt32) -> UInt32

    /// A declared key; `min`/`max` bound HV_KEY_INT/UINT values (max -1: unbounded).
    package static func key(_ type: UInt32, _ name: StaticString, _ help: StaticString, min: Int64 = 0, max: Int64 = -1,
                            defaultValue: StaticString? = nil) -> hv_config_key {
        hv_config_key(struct_size: UInt32(MemoryLayout<hv_config_key>.size), type: type, name: cString(name),
                      min: min, max: max, choices: nil, default_value: defaultValue.map(cString), help: cString(help))
    }

    /// A command printing text (`device VM DEV NAME`).
    package static func textCommand(_ name: StaticString, _ help: StaticString, _ fn: TextCommand) -> hv_command {
        command(name, help, unsafeBitCast(fn, to: UnsafeRawPointer.self), result: HV_ARG_VOID, args: textArgs, names: nil)
    }

    /// A command reading one u32 argument named `argument` and answering a u32.
    package static func u32Command(_ name: StaticString, _ help: StaticString, argument: StaticString,
                                   _ fn: U32Command) -> hv_command {
        let names = UnsafeMutablePointer<UnsafePointer<CChar>?>.allocate(capacity: 1)
        names[0] = cString(argument)
        return command(name, help, unsafeBitCast(fn, to: UnsafeRawPointer.self), result: HV_ARG_U32, args: u32Args,
                       names: UnsafePointer(names))
    }

    /// `items` in memory that is never freed, for `keys` / `commands`.
    package static func table<T>(_ items: [T]) -> UnsafePointer<T> {
        let p = UnsafeMutablePointer<T>.allocate(capacity: max(items.count, 1))
        for (i, item) in items.enumerated() { (p + i).initialize(to: item) }
        return UnsafePointer(p)
    }

    /// Copies `text` into a text-out command's buffer, truncated to fit, NUL-terminated.
    package static func write(_ text: String, to buffer: UnsafeMutablePointer<CChar>?, capacity: Int) {
        guard let buffer, capacity > 0 else { return }
        let bytes = Array(text.utf8.prefix(capacity - 1))
        for (i, b) in bytes.enumerated() { buffer[i] = CChar(bitPattern: b) }
        buffer[bytes.count] = 0
    }

    private static let textArgs = table([HV_ARG_TEXT_OUT])
    private static let u32Args = table([HV_ARG_U32])

    private static func command(_ name: StaticString, _ help: StaticString, _ fn: UnsafeRawPointer, result: UInt32,
                                args: UnsafePointer<UInt32>, names: UnsafePointer<UnsafePointer<CChar>?>?) -> hv_command {
        hv_command(struct_size: UInt32(MemoryLayout<hv_command>.size), flags: 0, name: cString(name), help: cString(help),
                   fn: unsafeBitCast(fn, to: (@convention(c) () -> Void).self), result: result, arg_count: 1,
                   args: args, arg_names: names)
    }
}
