/// Little-endian binary encoding of saved device state (the payload of a suspend-file
/// section). Every value a decoder returns came from a file and is as hostile as a guest
/// write: readers validate ranges themselves.
package struct StateEncoder {
    private(set) package var bytes: [UInt8] = []

    package init() {}

    package mutating func u8(_ v: UInt8) { bytes.append(v) }
    package mutating func bool(_ v: Bool) { bytes.append(v ? 1 : 0) }
    package mutating func u16(_ v: UInt16) { for i in 0..<2 { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * i))) } }
    package mutating func u32(_ v: UInt32) { for i in 0..<4 { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * i))) } }
    package mutating func u64(_ v: UInt64) { for i in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * i))) } }
    package mutating func i64(_ v: Int64) { u64(UInt64(bitPattern: v)) }

    /// An optional u64: a presence byte, then the value.
    package mutating func optionalU64(_ v: UInt64?) {
        bool(v != nil)
        if let v { u64(v) }
    }

    /// A length-prefixed (u32) byte string.
    package mutating func data<C: Collection>(_ v: C) where C.Element == UInt8 {
        u32(UInt32(v.count))
        bytes.append(contentsOf: v)
    }

    package mutating func string(_ s: String) { data(Array(s.utf8)) }
}

/// Why saved state could not be read back.
package struct StateDecodingError: Error, CustomStringConvertible, Equatable {
    package let message: String
    package init(_ message: String) { self.message = message }
    package var description: String { message }
}

package struct StateDecoder {
    private let bytes: [UInt8]
    private(set) package var position = 0
    /// Names the data in error messages ("section 'chipset'").
    package let context: String

    package init(_ bytes: [UInt8], context: String) {
        self.bytes = bytes
        self.context = context
    }

    package var isAtEnd: Bool { position == bytes.count }

    private mutating func take(_ n: Int) throws -> ArraySlice<UInt8> {
        guard n >= 0, n <= bytes.count - position else {
            throw StateDecodingError("\(context): truncated (needed \(n) bytes at offset \(position) of \(bytes.count))")
        }
        defer { position += n }
        return bytes[position..<position + n]
    }

    private mutating func integer(_ size: Int) throws -> UInt64 {
        var v: UInt64 = 0
        for (i, b) in try take(size).enumerated() { v |= UInt64(b) << (8 * UInt64(i)) }
        return v
    }

    package mutating func u8() throws -> UInt8 { UInt8(try integer(1)) }
    package mutating func u16() throws -> UInt16 { UInt16(try integer(2)) }
    package mutating func u32() throws -> UInt32 { UInt32(try integer(4)) }
    package mutating func u64() throws -> UInt64 { try integer(8) }
    package mutating func i64() throws -> Int64 { Int64(bitPattern: try integer(8)) }

    package mutating func bool() throws -> Bool {
        let b = try u8()
        guard b <= 1 else { throw StateDecodingError("\(context): a boolean at offset \(position - 1) reads \(b)") }
        return b == 1
    }

    package mutating func optionalU64() throws -> UInt64? { try bool() ? try u64() : nil }

    /// A length-prefixed byte string of at most `limit` bytes.
    package mutating func data(limit: Int = 1 << 24) throws -> [UInt8] {
        let n = Int(try u32())
        guard n <= limit else { throw StateDecodingError("\(context): a field of \(n) bytes exceeds \(limit)") }
        return Array(try take(n))
    }

    /// A byte string that must be exactly `count` bytes long.
    package mutating func data(count: Int) throws -> [UInt8] {
        let d = try data(limit: count)
        guard d.count == count else { throw StateDecodingError("\(context): expected \(count) bytes, found \(d.count)") }
        return d
    }

    package mutating func string(limit: Int = 1 << 20) throws -> String {
        let d = try data(limit: limit)
        guard let s = String(validating: d, as: UTF8.self) else {
            throw StateDecodingError("\(context): a string is not UTF-8")
        }
        return s
    }

    /// Throws unless every byte was consumed (a longer payload is a different layout).
    package func finish() throws {
        guard isAtEnd else { throw StateDecodingError("\(context): \(bytes.count - position) unexpected trailing bytes") }
    }
}
