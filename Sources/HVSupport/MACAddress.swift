/// A 48-bit Ethernet address, written `00:50:56:01:02:03` in `.vmx` files.
package struct MACAddress: Hashable, Sendable, CustomStringConvertible {
    package var bytes: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8)

    package init(_ b0: UInt8, _ b1: UInt8, _ b2: UInt8, _ b3: UInt8, _ b4: UInt8, _ b5: UInt8) {
        bytes = (b0, b1, b2, b3, b4, b5)
    }

    /// Parses six colon-separated two-digit hex octets (either case); nil otherwise.
    package init?(_ text: String) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 6 else { return nil }
        var octets: [UInt8] = []
        for part in parts {
            guard part.count == 2, part.allSatisfy(\.isHexDigit), let v = UInt8(part, radix: 16) else { return nil }
            octets.append(v)
        }
        self.init(octets[0], octets[1], octets[2], octets[3], octets[4], octets[5])
    }

    package var array: [UInt8] { [bytes.0, bytes.1, bytes.2, bytes.3, bytes.4, bytes.5] }

    /// The lowest and highest address VMware reserves for manually assigned ("static")
    /// addresses: 00:50:56:00:00:00 – 00:50:56:3F:FF:FF.
    static let vmwareStaticRange: ClosedRange<UInt64> = 0x0050_5600_0000...0x0050_563F_FFFF

    /// The address as a 48-bit integer, first octet most significant.
    package var value: UInt64 { array.reduce(0) { $0 << 8 | UInt64($1) } }

    /// True for an address in VMware's static range.
    package var isVMwareStatic: Bool { Self.vmwareStaticRange.contains(value) }

    /// True when the group (multicast) bit of the first octet is set.
    var isMulticast: Bool { bytes.0 & 1 != 0 }

    package var description: String {
        array.map { b in
            let s = String(b, radix: 16, uppercase: true)
            return b < 16 ? "0" + s : s
        }.joined(separator: ":")
    }

    package static func == (a: MACAddress, b: MACAddress) -> Bool { a.value == b.value }
    package func hash(into hasher: inout Hasher) { hasher.combine(value) }
}
