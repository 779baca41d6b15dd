import PluginABI

/// Transmit offloads done by the device in software, as the VMkernel does for a
/// receiver that cannot take them: checksum insertion (OM 2) and TCP segmentation
/// (OM 3) over IPv4 and IPv6 without extension headers.
extension VmxnetDevice {
    /// The Internet checksum over `len` bytes, added to `initial`, folded.
    static func onesSum(_ p: UnsafePointer<UInt8>, _ len: Int, _ initial: UInt32 = 0) -> UInt32 {
        var sum = UInt64(initial)
        var i = 0
        while i + 1 < len {
            sum &+= UInt64(p[i]) << 8 | UInt64(p[i + 1])
            i += 2
        }
        if i < len { sum &+= UInt64(p[i]) << 8 }
        while sum >> 16 != 0 { sum = (sum & 0xFFFF) &+ (sum >> 16) }
        return UInt32(sum)
    }

    /// Checksums bytes start..<len (the driver left the pseudo-header sum in the field)
    /// and stores the result at `at`. False when the offsets do not fit the frame.
    func insertChecksum(_ p: UnsafeMutablePointer<UInt8>, _ len: Int, start: Int, at: Int) -> Bool {
        guard start < len, at >= start, at + 2 <= len else { return false }
        let c = ~Self.onesSum(p + start, len - start) & 0xFFFF
        p[at] = UInt8(c >> 8)
        p[at + 1] = UInt8(c & 0xFF)
        return true
    }

    /// Splits a TCP frame in frameBuf into frames of at most `mss` payload bytes, each
    /// with the headers copied and fixed up (IP length and id, TCP sequence, flags,
    /// checksums), and sends them.
    func segment(_ q: TxQueue, len: Int, headerLength hlen: Int, mss: Int) {
        let f = frameBuf
        var l3 = 14
        var ethertype = UInt16(f[12]) << 8 | UInt16(f[13])
        if ethertype == 0x8100 && len >= 18 { ethertype = UInt16(f[16]) << 8 | UInt16(f[17]); l3 = 18 }
        let v4 = ethertype == 0x0800, v6 = ethertype == 0x86DD
        var l4 = 0
        if v4, len >= l3 + 20 {
            l4 = l3 + Int(f[l3] & 0xF) * 4
            guard f[l3 + 9] == 6 else { return tsoError(q, "TSO on a non-TCP IPv4 frame") }
        } else if v6, len >= l3 + 40 {
            guard f[l3 + 6] == 6 else { return tsoError(q, "TSO on an IPv6 frame whose next header is not TCP") }
            l4 = l3 + 40
        }
        guard l4 > 0, l4 + 20 <= len, hlen >= l4 + 20, hlen <= len, hlen <= 1024, mss > 0 else {
            return tsoError(q, "TSO frame of \(len) bytes with header length \(hlen), MSS \(mss)")
        }
        let payload = len - hlen
        let ipID = UInt16(f[l3 + 4]) << 8 | UInt16(f[l3 + 5])
        let seq0 = UInt32(f[l4 + 4]) << 24 | UInt32(f[l4 + 5]) << 16 | UInt32(f[l4 + 6]) << 8 | UInt32(f[l4 + 7])
        let flags = f[l4 + 13]
        var off = 0
        var n = 0
        repeat {
            let chunk = min(mss, payload - off)
            let last = off + chunk >= payload
            let s = scratch
            s.update(from: f, count: hlen)
            (s + hlen).update(from: f + hlen + off, count: chunk)
            let total = hlen + chunk
            if v4 {
                put16(s, l3 + 2, UInt16(total - l3))
                put16(s, l3 + 4, ipID &+ UInt16(truncatingIfNeeded: n))
                put16(s, l3 + 10, 0)
                put16(s, l3 + 10, UInt16(~Self.onesSum(s + l3, l4 - l3) & 0xFFFF))
            } else {
                put16(s, l3 + 4, UInt16(total - l4))
            }
            let seq = seq0 &+ UInt32(off)
            s[l4 + 4] = UInt8(seq >> 24); s[l4 + 5] = UInt8((seq >> 16) & 0xFF)
            s[l4 + 6] = UInt8((seq >> 8) & 0xFF); s[l4 + 7] = UInt8(seq & 0xFF)
            // FIN and PSH only on the last segment, CWR only on the first.
            var fl = flags
            if !last { fl &= ~0x09 }
            if n > 0 { fl &= ~0x80 }
            s[l4 + 13] = fl
            put16(s, l4 + 16, 0)
            let tcpLen = total - l4
            var pseudo: UInt32 = UInt32(tcpLen) + 6
            if v4 {
                pseudo = Self.onesSum(s + l3 + 12, 8, pseudo)
            } else {
                pseudo = Self.onesSum(s + l3 + 8, 32, pseudo)
            }
            put16(s, l4 + 16, UInt16(~Self.onesSum(s + l4, tcpLen, pseudo) & 0xFFFF))
            let rc = netSend(port, s, total)
            countTx(q, rc == HV_OK ? (Self.destination(s), total) : nil, discard: rc == HV_EAGAIN)
            off += chunk
            n += 1
        } while off < payload
    }

    private func tsoError(_ q: TxQueue, _ why: String) {
        guestError("tx queue \(q.id): \(why)")
        countTx(q, nil, discard: true)
    }

    @inline(__always) private func put16(_ p: UnsafeMutablePointer<UInt8>, _ at: Int, _ v: UInt16) {
        p[at] = UInt8(v >> 8)
        p[at + 1] = UInt8(v & 0xFF)
    }
}
