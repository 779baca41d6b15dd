import Glibc
import PluginABI
import Testing
@testable import HVPluginHost

/// Declared keys and typed commands (ABI 1.2) as the host reads, checks and calls them,
/// without a VM: declarations straight from C structs, commands that are Swift
/// `@convention(c)` functions called through libffi.
@Suite struct PluginDeclarationTests {
    private func key(_ type: UInt32, _ name: StaticString, min: Int64 = 1, max: Int64 = 0,
                     choices: StaticString? = nil, defaultValue: StaticString? = nil) -> hv_config_key {
        func c(_ s: StaticString) -> UnsafePointer<CChar> { UnsafeRawPointer(s.utf8Start).assumingMemoryBound(to: CChar.self) }
        return hv_config_key(struct_size: UInt32(MemoryLayout<hv_config_key>.size), type: type, name: c(name),
                             min: min, max: max, choices: choices.map(c), default_value: defaultValue.map(c), help: nil)
    }

    private func read(_ k: hv_config_key) -> ConfigKeyDeclaration? {
        if case .success(let d) = ConfigKeyDeclaration.read(k) { return d }
        return nil
    }

    @Test func keyValuesAreCheckedByTypeAndRange() throws {
        let depth = try #require(read(key(HV_KEY_UINT, "depth", min: 1, max: 64, defaultValue: "8")))
        #expect(depth.problem(with: "64") == nil)
        #expect(depth.problem(with: "0x10") == nil)
        #expect(depth.problem(with: "65") == "65 is out of range")
        #expect(depth.problem(with: "-1") == "not an unsigned integer")
        #expect(depth.expected == "an unsigned integer from 1 to 64")
        let offset = try #require(read(key(HV_KEY_INT, "offset", min: -5, max: 5)))
        #expect(offset.problem(with: "-5") == nil)
        #expect(offset.problem(with: "-6") == "-6 is out of range")
        let mode = try #require(read(key(HV_KEY_ENUM, "mode", choices: "fast|slow")))
        #expect(mode.problem(with: "SLOW") == nil)
        #expect(mode.problem(with: "medium") == "not one of the choices")
        #expect(mode.typeText == "enum fast|slow")
        let flag = try #require(read(key(HV_KEY_BOOL, "on")))
        #expect(flag.problem(with: "TRUE") == nil && flag.problem(with: "maybe") == "not a boolean")
        let mac = try #require(read(key(HV_KEY_MAC, "address")))
        #expect(mac.problem(with: "00:50:56:00:00:01") == nil && mac.problem(with: "00:50:56") == "not a MAC address")
        // A UINT range with the top bit set reads as unsigned (edu's dmaMask up to UINT64_MAX).
        let mask = try #require(read(key(HV_KEY_UINT, "mask", min: 0xfff, max: -1)))
        #expect(mask.problem(with: "0xffffffffffffffff") == nil)
        #expect(mask.problem(with: "0x10") == "16 is out of range")
    }

    @Test func malformedKeyDeclarationsAreRefused() {
        if case .success = ConfigKeyDeclaration.read(key(HV_KEY_UINT, "depth", min: 1, max: 64, defaultValue: "deep")) {
            Issue.record("a default that is not of the key's type was accepted")
        }
        if case .success = ConfigKeyDeclaration.read(key(HV_KEY_ENUM, "mode")) { Issue.record("an enum without choices was accepted") }
        if case .success = ConfigKeyDeclaration.read(key(99, "x")) { Issue.record("an unknown type was accepted") }
        if case .success = ConfigKeyDeclaration.read(key(HV_KEY_BOOL, "bad key")) { Issue.record("a name with a space was accepted") }
    }

    // Commands: Swift functions with C signatures, called through libffi.
    static let sum: @convention(c) (OpaquePointer?, Int8, Int16, Int32, Int64) -> Int64 = { _, a, b, c, d in
        Int64(a) + Int64(b) + Int64(c) + d
    }
    static let describe: @convention(c) (OpaquePointer?, Double, Int32, UnsafePointer<CChar>?, UnsafeMutablePointer<CChar>?, Int) -> UInt16 = {
        _, x, flag, s, buf, len in
        let text = "x=\(x) flag=\(flag) s=\(String(cString: s!))"
        _ = text.withCString { strncpy(buf!, $0, len - 1) }
        return UInt16(len)
    }

    private func command(_ name: StaticString, _ fn: UnsafeRawPointer, result: UInt32, args: [UInt32]) -> CommandDeclaration? {
        let types = UnsafeMutablePointer<UInt32>.allocate(capacity: args.count)
        types.initialize(from: args, count: args.count)
        let c = hv_command(struct_size: UInt32(MemoryLayout<hv_command>.size), flags: 0,
                           name: UnsafeRawPointer(name.utf8Start).assumingMemoryBound(to: CChar.self), help: nil,
                           fn: unsafeBitCast(fn, to: (@convention(c) () -> Void).self), result: result,
                           arg_count: UInt32(args.count), args: UnsafePointer(types), arg_names: nil)
        if case .success(let d) = CommandDeclaration.read(c) { return d }
        return nil
    }

    @Test func commandsAreParsedByTheirSignatureAndCalledThroughLibFFI() throws {
        let instance = OpaquePointer(bitPattern: 0x1000)!
        let sum = try #require(command("sum", unsafeBitCast(Self.sum, to: UnsafeRawPointer.self), result: HV_ARG_I64,
                                       args: [HV_ARG_I8, HV_ARG_I16, HV_ARG_I32, HV_ARG_I64]))
        #expect(sum.signature == "sum(arg0: int8, arg1: int16, arg2: int32, arg3: int64) -> int64")
        let out = sum.call(instance: instance, with: try sum.parse(["-128", "0x7fff", "-2147483648", "9000000000000000000"]))
        #expect(out.result == String(Int64(-128) + 0x7fff - 2147483648 + 9000000000000000000))
        #expect(throws: CommandRefusal.self) { try sum.parse(["1", "2", "3"]) }
        #expect(throws: CommandRefusal.self) { try sum.parse(["128", "0", "0", "0"]) }

        let describe = try #require(command("describe", unsafeBitCast(Self.describe, to: UnsafeRawPointer.self),
                                            result: HV_ARG_U16, args: [HV_ARG_DOUBLE, HV_ARG_BOOL, HV_ARG_STRING, HV_ARG_TEXT_OUT]))
        #expect(describe.signature == "describe(arg0: double, arg1: bool, arg2: string) -> uint16 + text")
        let d = describe.call(instance: instance, with: try describe.parse(["2.5", "on", "hello"]))
        #expect(d.text == "x=2.5 flag=1 s=hello")
        #expect(d.result == String(HV_COMMAND_TEXT_MAX))
        do {
            _ = try describe.parse(["2.5", "perhaps", "x"])
            Issue.record("'perhaps' was accepted as a bool")
        } catch {
            #expect(error.message == "describe: 'perhaps' is not a valid bool for arg1; usage: describe(arg0: double, arg1: bool, arg2: string) -> uint16 + text")
        }
    }

    @Test func malformedCommandsAreRefused() {
        let fn = unsafeBitCast(Self.sum, to: UnsafeRawPointer.self)
        #expect(command("sum", fn, result: HV_ARG_STRING, args: []) == nil, "a string result has no owner")
        #expect(command("sum", fn, result: HV_ARG_VOID, args: [HV_ARG_TEXT_OUT, HV_ARG_TEXT_OUT]) == nil)
        #expect(command("sum", fn, result: HV_ARG_VOID, args: [77]) == nil)
        #expect(command("Sum", fn, result: HV_ARG_VOID, args: []) == nil, "names are lowercase")
    }
}
