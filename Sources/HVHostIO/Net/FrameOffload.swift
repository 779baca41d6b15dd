/// Work a NIC leaves to the VMkernel for a frame it sends ("hv.net-offload/1"): inserting
/// a transport checksum, and cutting a large TCP frame into MSS-sized segments. A
/// receiving port that takes large frames gets the frame whole (its checksums completed);
/// any other gets the segments, each a complete frame with its own headers and checksums.
package struct FrameOffload: Sendable, Equatable {
    /// A 16-bit Internet checksum over bytes `checksumStart...` stored at `checksumOffset`
    /// (the field holds the pseudo-header sum when the frame is handed over).
    package static let checksum: UInt32 = 0x1
    /// TCP segmentation over IPv4 or IPv6 (no extension headers): `headerLength` bytes of
    /// Ethernet (optionally 802.1Q), IP and TCP headers, then payload cut every `mss` bytes.
    package static let segmentation: UInt32 = 0x2

    package var flags: UInt32
    package var checksumStart: Int
    package var checksumOffset: Int
    package var headerLength: Int
    package var mss: Int

    package init(flags: UInt32, checksumStart: Int = 0, checksumOffset: Int = 0, headerLength: Int = 0, mss: Int = 0) {
        self.flags = flags
        self.checksumStart = checksumStart
        self.checksumOffset = checksumOffset
        self.headerLength = headerLength
        self.mss = mss
    }

    /// Where a TCP frame's headers are.
    struct TCPLayout {
        let l3: Int
        let l4: Int
        let ipv4: Bool
    }

    /// The layout of a segmentation frame, or nil when the frame is not TCP over IPv4/IPv6
    /// with `headerLength` covering the headers.
    func tcpLayout(_ f: UnsafeRawBufferPointer) -> TCPLayout? {
        let len = f.count
        guard len >= 14 else { return nil }
        var l3 = 14
        var type = UInt16(f[12]) << 8 | UInt16(f[13])
        if type == 0x8100 {
            guard len >= 18 else { return nil }
            type = UInt16(f[16]) << 8 | UInt16(f[17])
            l3 = 18
        }
        let l4: Int
        if type == 0x0800 {
            guard len >= l3 + 20, f[l3] >> 4 == 4, f[l3 + 9] == 6 else { return nil }
            l4 = l3 + Int(f[l3] & 0xF) * 4
        } else if type == 0x86DD {
            guard len >= l3 + 40, f[l3 + 6] == 6 else { return nil }
            l4 = l3 + 40
        } else {
            return nil
        }
        let tcpHeader = len >= l4 + 13 ? Int(f[l4 + 12] >> 4) * 4 : 0
        guard tcpHeader >= 20, headerLength == l4 + tcpHeader, headerLength <= len else { return nil }
        return TCPLayout(l3: l3, l4: l4, ipv4: type == 0x0800)
    }

    /// The checksum a frame the host's own stack sent still lacks (the kernel marks it
    /// CHECKSUM_PARTIAL, an AF_PACKET ring TP_STATUS_CSUMNOTREADY): TCP or UDP over IPv4
    /// (unfragmented) or IPv6 (no extension headers), the field holding the pseudo-header
    /// sum. nil for anything else, which is left as it came.
    package static func pendingChecksum(of f: UnsafeRawBufferPointer) -> FrameOffload? {
        guard f.count >= 14 else { return nil }
        var l3 = 14
        var type = UInt16(f[12]) << 8 | UInt16(f[13])
        if type == 0x8100, f.count >= 18 {
            type = UInt16(f[16]) << 8 | UInt16(f[17])
            l3 = 18
        }
        let l4: Int, proto: UInt8
        if type == 0x0800, f.count >= l3 + 20, f[l3] >> 4 == 4 {
            let fragment = UInt16(f[l3 + 6] & 0x3F) << 8 | UInt16(f[l3 + 7])
            guard fragment == 0 else { return nil }
            (l4, proto) = (l3 + Int(f[l3] & 0xF) * 4, f[l3 + 9])
        } else if type == 0x86DD, f.count >= l3 + 40 {
            (l4, proto) = (l3 + 40, f[l3 + 6])
        } else {
            return nil
        }
        let field: Int
        switch proto {
        case 6: field = 16
        case 17: field = 6
        default: return nil
        }
        let offload = FrameOffload(flags: checksum, checksumStart: l4, checksumOffset: l4 + field)
        return offload.isValid(for: f) ? offload : nil
    }

    /// Whether the metadata fits `frame` (checked before anything is sent).
    package func isValid(for frame: UnsafeRawBufferPointer) -> Bool {
        guard flags & ~(Self.checksum | Self.segmentation) == 0, flags != 0 else { return false }
        if flags & Self.segmentation != 0 {
            return mss >= 1 && tcpLayout(frame) != nil
        }
        return checksumStart < frame.count && checksumOffset >= checksumStart && checksumOffset + 2 <= frame.count
    }

    /// The one's-complement sum of `count` bytes at `p`, added to `initial`, folded.
    static func sum(_ p: UnsafeRawPointer, _ count: Int, _ initial: UInt32 = 0) -> UInt32 {
        var s = UInt64(initial)
        let b = p.assumingMemoryBound(to: UInt8.self)
        var i = 0
        while i + 1 < count {
            s &+= UInt64(b[i]) << 8 | UInt64(b[i + 1])
            i += 2
        }
        if i < count { s &+= UInt64(b[i]) << 8 }
        while s >> 16 != 0 { s = (s & 0xFFFF) &+ (s >> 16) }
        return UInt32(s)
    }

    private static func put16(_ p: UnsafeMutableRawPointer, _ at: Int, _ v: UInt16) {
        p.storeBytes(of: UInt8(v >> 8), toByteOffset: at, as: UInt8.self)
        p.storeBytes(of: UInt8(v & 0xFF), toByteOffset: at + 1, as: UInt8.self)
    }

    /// Completes the frame in place as one packet: checksum insertion, or for a
    /// segmentation frame its IP length (and IPv4 header checksum) and the TCP checksum
    /// over the whole payload. For a receiver that takes large frames.
    package func completeWhole(_ f: UnsafeMutableRawBufferPointer) {
        let p = f.baseAddress!
        if flags & Self.segmentation != 0, let t = tcpLayout(UnsafeRawBufferPointer(f)) {
            Self.fixHeaders(p, t, total: f.count, sequenceAdvance: 0, first: true, last: true)
            return
        }
        let c = ~Self.sum(p + checksumStart, f.count - checksumStart) & 0xFFFF
        Self.put16(p, checksumOffset, UInt16(c))
    }

    /// Sets the IP length fields (and IPv4 checksum), advances the TCP sequence number,
    /// clears FIN/PSH except on the last and CWR except on the first segment, and computes
    /// the TCP checksum with the pseudo-header.
    private static func fixHeaders(_ s: UnsafeMutableRawPointer, _ t: TCPLayout, total: Int, sequenceAdvance: UInt32,
                                   first: Bool, last: Bool) {
        let b = s.assumingMemoryBound(to: UInt8.self)
        if t.ipv4 {
            put16(s, t.l3 + 2, UInt16(total - t.l3))
            put16(s, t.l3 + 10, 0)
            put16(s, t.l3 + 10, UInt16(~sum(s + t.l3, t.l4 - t.l3) & 0xFFFF))
        } else {
            put16(s, t.l3 + 4, UInt16(total - t.l4))
        }
        let seq = (UInt32(b[t.l4 + 4]) << 24 | UInt32(b[t.l4 + 5]) << 16 | UInt32(b[t.l4 + 6]) << 8
                   | UInt32(b[t.l4 + 7])) &+ sequenceAdvance
        b[t.l4 + 4] = UInt8(seq >> 24); b[t.l4 + 5] = UInt8((seq >> 16) & 0xFF)
        b[t.l4 + 6] = UInt8((seq >> 8) & 0xFF); b[t.l4 + 7] = UInt8(seq & 0xFF)
        if !last { b[t.l4 + 13] &= ~0x09 }
        if !first { b[t.l4 + 13] &= ~0x80 }
        put16(s, t.l4 + 16, 0)
        let tcpLength = total - t.l4
        let pseudo = t.ipv4 ? sum(s + t.l3 + 12, 8, UInt32(tcpLength) + 6) : sum(s + t.l3 + 8, 32, UInt32(tcpLength) + 6)
        put16(s, t.l4 + 16, UInt16(~sum(s + t.l4, tcpLength, pseudo) & 0xFFFF))
    }

    /// The frames a receiver that does not take large frames gets: `frame` itself with
    /// its checksum inserted, or one segment after the other (IPv4 ids counting up),
    /// each built in `scratch` (at least headerLength + mss bytes) and handed to `emit`.
    package func segments(of frame: UnsafeMutableRawBufferPointer, scratch: UnsafeMutableRawPointer,
                          emit: (UnsafeRawBufferPointer) -> Void) {
        guard flags & Self.segmentation != 0, let t = tcpLayout(UnsafeRawBufferPointer(frame)) else {
            completeWhole(frame)
            emit(UnsafeRawBufferPointer(frame))
            return
        }
        let f = frame.baseAddress!.assumingMemoryBound(to: UInt8.self)
        let payload = frame.count - headerLength
        let ipID = UInt16(f[t.l3 + 4]) << 8 | UInt16(f[t.l3 + 5])
        var off = 0, n = 0
        repeat {
            let chunk = min(mss, payload - off)
            scratch.copyMemory(from: f, byteCount: headerLength)
            (scratch + headerLength).copyMemory(from: f + headerLength + off, byteCount: chunk)
            let total = headerLength + chunk
            if t.ipv4 { Self.put16(scratch, t.l3 + 4, ipID &+ UInt16(truncatingIfNeeded: n)) }
            Self.fixHeaders(scratch, t, total: total, sequenceAdvance: UInt32(off), first: n == 0,
                            last: off + chunk >= payload)
            emit(UnsafeRawBufferPointer(start: scratch, count: total))
            off += chunk
            n += 1
        } while off < payload
    }
}
