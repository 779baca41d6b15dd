import PluginABI
import Synchronization

/// The transmit path: a TXPROD doorbell (or write) sends every frame whose descriptors
/// the driver has handed over (generation bit equal to the ring's), straight from guest
/// memory when the device needs not touch it, and writes one completion per frame whose
/// EOP descriptor asks for it (CQ).
extension VmxnetDevice {
    private struct TxFrame {
        var count = 0
        var length = 0
        var offload: UInt32 = 0     // OM of the SOP descriptor
        var hlen = 0
        var msscof = 0
        var vlanTag: UInt16?
        var eopIndex: UInt32 = 0
        var completion = false
    }

    func transmitAll() {
        for q in txQueues { transmit(q) }
    }

    func transmit(_ q: TxQueue) {
        guard active, !q.stopped, q.ring.present else { return }
        guard pciCommand(host) & 0x4 != 0 else {
            guestError("TXPROD with bus mastering disabled")
            return
        }
        var completed = false
        // One pass sends at most a ring's worth of frames; a driver that keeps refilling
        // is served again by the poll timer instead of holding this thread.
        var budget = Int(q.ring.size)
        while budget > 0 {
            let first = q.ring.dword(q.ring.index, 2)
            guard (first >> 14) & 1 == q.ring.gen else { break }
            atomicMemoryFence(ordering: .acquiring)
            var frame = TxFrame()
            var idx = q.ring.index, gen = q.ring.gen
            while true {
                let d2 = q.ring.dword(idx, 2)
                guard (d2 >> 14) & 1 == gen else {
                    stopTx(q, QueueError.noEOP, "frame at descriptor \(q.ring.index) has no EOP descriptor owned by the device")
                    return
                }
                atomicMemoryFence(ordering: .acquiring)
                let d3 = q.ring.dword(idx, 3)
                if (d2 >> 16) & 1 != 0 {
                    stopTx(q, QueueError.descNotSupported, "descriptor \(idx) has descriptor type 1")
                    return
                }
                guard frame.count < Limits.maxTxDescPerPacket else {
                    stopTx(q, QueueError.bigPacket, "frame at descriptor \(q.ring.index) uses more than \(Limits.maxTxDescPerPacket) descriptors")
                    return
                }
                let len = d2 & 0x3FFF == 0 ? 0x4000 : Int(d2 & 0x3FFF)
                txSegments[frame.count] = hv_net_segment(gpa: q.ring.qword0(idx), len: UInt32(len), reserved: 0)
                if frame.count == 0 {
                    frame.offload = (d3 >> 10) & 3
                    frame.hlen = Int(d3 & 0x3FF)
                    frame.msscof = Int(d2 >> 18)
                    if (d3 >> 15) & 1 != 0 { frame.vlanTag = UInt16(truncatingIfNeeded: d3 >> 16) }
                }
                frame.count += 1
                frame.length += len
                if (d3 >> 12) & 1 != 0 {
                    frame.eopIndex = idx
                    frame.completion = (d3 >> 13) & 1 != 0
                    break
                }
                idx += 1
                if idx == q.ring.size { idx = 0; gen ^= 1 }
            }
            q.ring.index = idx
            q.ring.gen = gen
            q.ring.advance()
            send(q, frame)
            if frame.completion {
                guard q.comp.present else { break }
                q.comp.complete(frame.eopIndex, 0, 0, 0)   // type 0: tx completion
                completed = true
            }
            budget -= 1
        }
        if budget == 0 { requestPoll(after: 0) }
        if completed { raise(q.intrIdx) }
    }

    private func send(_ q: TxQueue, _ f: TxFrame) {
        let plain = f.offload == 0 && f.vlanTag == nil
        if plain {
            guard f.length >= 14, f.length <= Self.maxFrame else {
                countTx(q, nil, discard: true)
                return
            }
            // The destination, for the unicast / multicast / broadcast counters.
            var dst: UInt64 = 0
            _ = withUnsafeMutableBytes(of: &dst) { memRead(host, txSegments[0].gpa, $0.baseAddress, 6) }
            let rc = sendGuest(port, txSegments, UInt32(f.count), 0)
            countTx(q, rc == HV_OK ? (dst, f.length) : nil, discard: rc == HV_EAGAIN)
            return
        }
        // The device changes the frame: gather it here first.
        guard f.length <= Self.maxFrame else { countTx(q, nil, discard: true); return }
        var off = 0
        for i in 0..<f.count {
            let s = txSegments[i]
            guard memRead(host, s.gpa, frameBuf + off, Int(s.len)) == HV_OK else {
                guestError("tx queue \(q.id): buffer at 0x\(String(s.gpa, radix: 16)) is not guest RAM")
                countTx(q, nil, discard: false)
                return
            }
            off += Int(s.len)
        }
        var len = off
        var hlen = f.hlen
        var csumAt = f.msscof
        if let tag = f.vlanTag {
            guard len >= 14, len + 4 <= Self.maxFrame else { countTx(q, nil, discard: true); return }
            (frameBuf + 16).update(from: frameBuf + 12, count: len - 12)
            frameBuf[12] = 0x81; frameBuf[13] = 0x00
            frameBuf[14] = UInt8(tag >> 8); frameBuf[15] = UInt8(tag & 0xFF)
            len += 4
            if f.offload != 0 { hlen += 4; if f.offload == 2 { csumAt += 4 } }
        }
        switch f.offload {
        case 2, 3:
            // Checksum (from hlen, stored at msscof) or TSO (hlen header bytes, MSS msscof):
            // the VMkernel does it, and segments only for receivers that need it.
            var o = hv_net_offload()
            o.struct_size = UInt32(MemoryLayout<hv_net_offload>.size)
            if f.offload == 2 {
                o.flags = HV_NET_OFFLOAD_CSUM
                o.csum_start = UInt16(truncatingIfNeeded: hlen)
                o.csum_offset = UInt16(truncatingIfNeeded: csumAt)
            } else {
                o.flags = HV_NET_OFFLOAD_TSO
                o.hdr_len = UInt16(truncatingIfNeeded: hlen)
                o.mss = UInt16(truncatingIfNeeded: f.msscof)
                q.stats.v[TxStat.tsoPkts] &+= 1
                q.stats.v[TxStat.tsoBytes] &+= UInt64(len)
            }
            let rc = sendOffload(port, frameBuf, len, &o)
            if rc == HV_EINVAL {
                guestError("tx queue \(q.id): offload \(f.offload) with header length \(hlen), offset/MSS \(f.msscof) does not fit a \(len)-byte frame")
            }
            countTx(q, rc == HV_OK ? (Self.destination(frameBuf), len) : nil, discard: rc == HV_EAGAIN)
            return
        case 1:
            guestError("tx queue \(q.id): encapsulation offload is not offered")
            countTx(q, nil, discard: true)
            return
        default:
            break
        }
        let rc = netSend(port, frameBuf, len)
        countTx(q, rc == HV_OK ? (Self.destination(frameBuf), len) : nil, discard: rc == HV_EAGAIN)
    }

    /// The destination MAC of a frame as the low 48 bits of a little-endian word.
    static func destination(_ p: UnsafePointer<UInt8>) -> UInt64 {
        var v: UInt64 = 0
        for i in 0..<6 { v |= UInt64(p[i]) << (8 * UInt64(i)) }
        return v
    }

    /// Counts a frame: sent (destination and length given), or an error / a discard.
    func countTx(_ q: TxQueue, _ sent: (UInt64, Int)?, discard: Bool) {
        guard let (dst, len) = sent else {
            q.stats.v[discard ? TxStat.discards : TxStat.errors] &+= 1
            return
        }
        let kind = dst & 1 == 0 ? TxStat.ucastPkts : (dst & 0xFFFF_FFFF_FFFF == 0xFFFF_FFFF_FFFF ? TxStat.bcastPkts : TxStat.mcastPkts)
        q.stats.v[kind] &+= 1
        q.stats.v[kind + 1] &+= UInt64(len)
    }
}
