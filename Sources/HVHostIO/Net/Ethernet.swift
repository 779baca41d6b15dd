import Glibc

/// Frame-format facts the switch needs. Internal: the switch works on raw frames as
/// NICs hand them over (destination MAC, source MAC, EtherType…, no FCS).
package enum Ethernet {
    /// Destination + source + EtherType: the shortest frame the switch accepts.
    static let minimumFrameLength = 14
    /// The largest frame the ABI lets a NIC hand over (`net_send`: 14..65535 bytes).
    package static let maximumFrameLength = 65535

    static func isValidLength(_ count: Int) -> Bool {
        count >= minimumFrameLength && count <= maximumFrameLength
    }

    /// The six octets at `offset` as a 48-bit key, first octet most significant
    /// (the same numbering as `MACAddress.value`).
    @inline(__always)
    static func address(in frame: UnsafeRawBufferPointer, at offset: Int) -> UInt64 {
        var v: UInt64 = 0
        for i in offset..<(offset + 6) { v = v << 8 | UInt64(frame[i]) }
        return v
    }

    @inline(__always) static func destination(of frame: UnsafeRawBufferPointer) -> UInt64 { address(in: frame, at: 0) }
    @inline(__always) static func source(of frame: UnsafeRawBufferPointer) -> UInt64 { address(in: frame, at: 6) }

    /// The I/G bit (bit 0 of the first octet): set for broadcast and multicast.
    @inline(__always)
    static func isGroup(_ address: UInt64) -> Bool { address & (1 << 40) != 0 }
}

/// Monotonic nanoseconds from the coarse clock (cheap; ms resolution is plenty for aging).
@inline(__always)
func monotonicCoarseNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

/// Monotonic nanoseconds from the precise clock (the shaper's token arithmetic).
@inline(__always)
func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}
