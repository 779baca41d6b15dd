/// 802.1Q facts and the views of one frame the switch needs when VLANs or uplinks are in
/// play: its VLAN, its untagged and tagged forms, and the header fields a teaming policy
/// hashes.
enum VLAN {
    static let tagProtocol: UInt16 = 0x8100
    /// A port group with this id passes tags through to the guest (VGT).
    static let guestTagging: UInt16 = 4095
    static let tagLength = 4

    /// Whether a frame of `vlan` (0 = untagged) goes to a port of port-group `portVLAN`.
    @inline(__always)
    static func port(_ portVLAN: UInt16, carries vlan: UInt16) -> Bool {
        portVLAN == guestTagging || portVLAN == vlan
    }
}

/// The first bytes of a frame, copied out (a NIC may hand the header split over buffers):
/// enough for Ethernet, one 802.1Q tag and an IPv6 header.
struct FrameHeader {
    static let capacity = 64
    private var storage: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)
    let count: Int

    init(_ frame: FrameSegments) {
        var n = 0
        withUnsafeMutableBytes(of: &storage) { h in
            for s in frame.segments where n < Self.capacity && s.count > 0 {
                let take = min(s.count, Self.capacity - n)
                (h.baseAddress! + n).copyMemory(from: s.baseAddress!, byteCount: take)
                n += take
            }
        }
        count = min(frame.length, Self.capacity)   // padding reads as the zeros already there
    }

    init(_ frame: UnsafeRawBufferPointer) {
        let n = min(frame.count, Self.capacity)
        withUnsafeMutableBytes(of: &storage) { $0.baseAddress!.copyMemory(from: frame.baseAddress!, byteCount: n) }
        count = n
    }

    func u8(_ at: Int) -> UInt8 {
        at < count ? withUnsafeBytes(of: storage) { $0[at] } : 0
    }

    func u16(_ at: Int) -> UInt16 { UInt16(u8(at)) << 8 | UInt16(u8(at + 1)) }
    func u32(_ at: Int) -> UInt32 { UInt32(u16(at)) << 16 | UInt32(u16(at + 2)) }
    func u64(_ at: Int) -> UInt64 { UInt64(u32(at)) << 32 | UInt64(u32(at + 4)) }

    var destination: UInt64 { u64(0) >> 16 }
    var source: UInt64 { u64(6) >> 16 }
    var isTagged: Bool { count >= 18 && u16(12) == VLAN.tagProtocol }
    /// The VLAN id of the in-band tag (0 when untagged or priority-tagged).
    var taggedVLAN: UInt16 { isTagged ? u16(14) & 0x0FFF : 0 }

    /// What a teaming policy sees. `vlan` is the frame's VLAN in the switch.
    func teamingInfo(port: UInt32, vlan: UInt16) -> TeamingFrameInfo {
        var info = TeamingFrameInfo()
        info.sourcePort = port
        info.sourceMAC = source
        info.destinationMAC = destination
        info.vlan = vlan
        let l3 = isTagged ? 18 : 14
        info.etherType = u16(l3 - 2)
        switch info.etherType {
        case 0x0800 where count >= l3 + 20:
            info.sourceIPv4 = u32(l3 + 12)
            info.destinationIPv4 = u32(l3 + 16)
        case 0x86DD where count >= l3 + 40:
            info.sourceIPv6 = (u64(l3 + 8), u64(l3 + 16))
            info.destinationIPv6 = (u64(l3 + 24), u64(l3 + 32))
        default:
            break
        }
        return info
    }
}

/// One frame in the VLAN forms the switch may deliver: `untagged` for access ports and
/// untagged uplinks, `tagged` (802.1Q tag of `vlan` after the source MAC) for VGT ports and
/// trunks. Built over one contiguous copy of the frame; valid only inside `with`.
struct VLANForms {
    let untagged: [UnsafeRawBufferPointer]
    let tagged: [UnsafeRawBufferPointer]

    /// Calls `body` with the forms of `frame` (contiguous, `inBandTag` when it carries a
    /// tag in its bytes) in VLAN `vlan`.
    static func with<R>(_ frame: UnsafeRawBufferPointer, inBandTag: Bool, vlan: UInt16, priority: UInt16 = 0,
                        _ body: (VLANForms) -> R) -> R {
        var tag = (UInt16(VLAN.tagProtocol).bigEndian, (priority << 13 | vlan).bigEndian)
        return withUnsafeBytes(of: &tag) { tagBytes in
            let head = UnsafeRawBufferPointer(rebasing: frame[0..<12])
            let payload = UnsafeRawBufferPointer(rebasing: frame[(inBandTag ? 16 : 12)...])
            return body(VLANForms(untagged: inBandTag ? [head, payload] : [frame],
                                  tagged: [head, tagBytes, payload]))
        }
    }
}

extension FrameSegments {
    /// Calls `body` with the frame in one contiguous buffer (padding included).
    func withContiguousBytes<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
        if segments.count == 1, dataLength == length, let only = segments.first { return body(only) }
        return withUnsafeTemporaryAllocation(byteCount: length, alignment: 16) { buffer in
            copy(to: buffer.baseAddress!)
            return body(UnsafeRawBufferPointer(buffer))
        }
    }
}

/// Calls `body` with `parts` as a `FrameSegments`.
func withFrameSegments<R>(_ parts: [UnsafeRawBufferPointer], _ body: (FrameSegments) -> R) -> R {
    parts.withUnsafeBufferPointer { body(FrameSegments($0)) }
}
