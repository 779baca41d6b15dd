import PluginABI
import Synchronization

/// The receive path: filter, pick a queue (RSS), take buffers from ring 1 (a HEAD
/// buffer and the BODY buffers that follow it) and then ring 2, copy, and write one
/// completion per buffer. With no buffer the switch holds the frame (back-pressure)
/// until the driver posts some.
extension VmxnetDevice {

    func receiveFrame(_ frame: UnsafeRawBufferPointer) -> Int32 {
        guard active, linkUp, frame.count >= 14 else { return HV_OK }
        var data = frame.baseAddress!.assumingMemoryBound(to: UInt8.self)
        var len = frame.count
        guard accepts(data, len) else { return HV_OK }
        let (qi, hash, hashType) = pickQueue(data, len)
        let q = rxQueues[qi]
        guard !q.stopped, q.rings[0].present, q.comp.present else { return HV_OK }
        guard len <= Int(mtu) + 22 || features & Feature.lro != 0 else {
            q.stats.v[RxStat.errors] &+= 1
            return HV_OK
        }
        guard pciCommand(host) & 0x4 != 0 else { return HV_OK }

        var tci: UInt16?
        if features & Feature.rxVlan != 0, len >= 18, data[12] == 0x81, data[13] == 0x00 {
            tci = UInt16(data[14]) << 8 | UInt16(data[15])
            scratch.update(from: data, count: 12)
            (scratch + 12).update(from: data + 16, count: len - 16)
            data = UnsafePointer(scratch)
            len -= 4
        }

        // Plan the buffers before touching anything.
        let plan = rxPlan
        var planned = 0
        func add(_ ring: Int, _ index: UInt32, _ gpa: UInt64, _ length: Int) -> Bool {
            guard planned < Self.maxBuffersPerFrame else { return false }
            plan[planned] = RxBuffer(ring: ring, index: index, gpa: gpa, length: length, used: 0)
            planned += 1
            return true
        }
        var room = 0
        var r1 = q.rings[0]
        var d2 = r1.dword(r1.index, 2)
        guard d2 >> 31 == r1.gen else { return starve(q, ring: 0) }
        atomicMemoryFence(ordering: .acquiring)
        _ = add(0, r1.index, r1.qword0(r1.index), Int(d2 & 0x3FFF))
        room += Int(d2 & 0x3FFF)
        r1.advance()
        // BODY buffers after the HEAD belong to the same packet slot (a driver posting
        // several buffers per packet); unused ones complete with length 0.
        var taken1 = 1
        while taken1 < r1.size {
            d2 = r1.dword(r1.index, 2)
            guard d2 >> 31 == r1.gen, (d2 >> 14) & 1 == 1 else { break }
            atomicMemoryFence(ordering: .acquiring)
            guard add(0, r1.index, r1.qword0(r1.index), Int(d2 & 0x3FFF)) else { return tooManyBuffers(q) }
            room += Int(d2 & 0x3FFF)
            r1.advance()
            taken1 += 1
        }
        var r2 = q.rings[1]
        var taken2 = 0
        while room < len {
            guard r2.present, taken2 < r2.size else {
                // Ring 1's slot and ring 2 together can never hold it.
                q.stats.v[RxStat.errors] &+= 1
                return HV_OK
            }
            d2 = r2.dword(r2.index, 2)
            guard d2 >> 31 == r2.gen else { return starve(q, ring: 1) }
            atomicMemoryFence(ordering: .acquiring)
            guard add(1, r2.index, r2.qword0(r2.index), Int(d2 & 0x3FFF)) else { return tooManyBuffers(q) }
            room += Int(d2 & 0x3FFF)
            r2.advance()
            taken2 += 1
        }
        q.rings[0] = r1
        if taken2 > 0 { q.rings[1] = r2 }

        // Copy, then complete in order; the last completion carries EOP.
        var off = 0
        var fault = false
        for i in 0..<planned where off < len {
            let n = min(plan[i].length, len - off)
            if memWrite(host, plan[i].gpa, data + off, n) != HV_OK {
                fault = true
                guestError("rx queue \(q.id): buffer at 0x\(String(plan[i].gpa, radix: 16)) is not guest RAM")
                break
            }
            plan[i].used = n
            off += n
        }
        let numRx = UInt32(rxQueues.count)
        let rssBits = UInt32(hashType) << 26
        for i in 0..<planned {
            let b = plan[i]
            let rqID = UInt32(q.id) + (b.ring == 1 ? numRx : 0)
            var d0 = b.index & 0xFFF | rqID << 16 | rssBits | 1 << 30     // cnc: checksum not calculated
            if i == 0 { d0 |= 1 << 15 }
            if i == planned - 1 { d0 |= 1 << 14 }
            var w2 = UInt32(b.used) & 0x3FFF
            if fault { w2 |= 1 << 14 }
            if let tci { w2 |= 1 << 15 | UInt32(tci) << 16 }
            q.comp.complete(d0, hash, w2, 3 << 24)       // type 3: rx completion
        }
        if fault {
            q.stats.v[RxStat.errors] &+= 1
        } else {
            let kind = data[0] & 1 == 0 ? RxStat.ucastPkts
                : (data[0] == 0xFF && data[1] == 0xFF && data[2] == 0xFF && data[3] == 0xFF && data[4] == 0xFF && data[5] == 0xFF
                    ? RxStat.bcastPkts : RxStat.mcastPkts)
            q.stats.v[kind] &+= 1
            q.stats.v[kind + 1] &+= UInt64(len)
        }
        raise(q.intrIdx)
        return HV_OK
    }

    /// A frame that would take more than maxBuffersPerFrame buffers (a driver posting tiny
    /// buffers) is dropped and counted.
    private func tooManyBuffers(_ q: RxQueue) -> Int32 {
        guestError("rx queue \(q.id): a frame needs more than \(Self.maxBuffersPerFrame) receive buffers; dropped")
        q.stats.v[RxStat.errors] &+= 1
        return HV_OK
    }

    /// No buffer: the switch holds the frame; the driver is asked to write RXPROD when
    /// it posts buffers (updateRxProd), and the ring is polled for drivers that do not.
    private func starve(_ q: RxQueue, ring: Int) -> Int32 {
        q.stats.v[RxStat.outOfBuf] &+= 1
        rxWaiting = true
        rxWaitQueue = q.id
        rxWaitRing = ring
        rxPollDelay = Self.rxPollFirstNs
        q.desc?.storeBytes(of: UInt8(1), toByteOffset: QueueDesc.updateRxProd, as: UInt8.self)
        return HV_EAGAIN
    }

    /// While the switch holds a frame: once the starved ring has a buffer again (or the
    /// device stopped receiving, so the frame will be dropped) delivery resumes.
    func checkReceiveRoom() {
        if active, rxWaitQueue < rxQueues.count {
            let q = rxQueues[rxWaitQueue]
            let r = q.rings[rxWaitRing]
            if !q.stopped, r.present, r.dword(r.index, 2) >> 31 != r.gen {
                if !pollArmed { requestPoll(after: rxPollDelay) }
                return
            }
            q.desc?.storeBytes(of: UInt8(0), toByteOffset: QueueDesc.updateRxProd, as: UInt8.self)
        }
        rxWaiting = false
        rxReady(port)
    }

    // MARK: filters

    private func accepts(_ f: UnsafePointer<UInt8>, _ len: Int) -> Bool {
        let promisc = rxMode & RxMode.promisc != 0
        if !promisc {
            if f[0] & 1 == 0 {
                guard rxMode & RxMode.ucast != 0, f[0] == mac[0], f[1] == mac[1], f[2] == mac[2],
                      f[3] == mac[3], f[4] == mac[4], f[5] == mac[5] else { return false }
            } else if f[0] == 0xFF && f[1] == 0xFF && f[2] == 0xFF && f[3] == 0xFF && f[4] == 0xFF && f[5] == 0xFF {
                guard rxMode & RxMode.bcast != 0 else { return false }
            } else if rxMode & RxMode.allMulti == 0 {
                guard rxMode & RxMode.mcast != 0,
                      multicast.contains(where: { m in (0..<6).allSatisfy { m[$0] == f[$0] } }) else { return false }
            }
        }
        if !promisc, len >= 18, f[12] == 0x81, f[13] == 0x00 {
            let vid = Int(UInt16(f[14] & 0x0F) << 8 | UInt16(f[15]))
            return vlanFilter[vid >> 5] & (1 << UInt32(vid & 31)) != 0
        }
        return true
    }

    // MARK: RSS

    /// The queue for a frame: Toeplitz over IPv4 addresses (and TCP ports, or UDP ports
    /// when SET_RSS_FIELDS asked for them), through the indirection table.
    private func pickQueue(_ f: UnsafePointer<UInt8>, _ len: Int) -> (Int, UInt32, UInt32) {
        guard rssEnabled else { return (0, 0, 0) }
        var l3 = 14
        var type = UInt16(f[12]) << 8 | UInt16(f[13])
        if type == 0x8100, len >= 18 { type = UInt16(f[16]) << 8 | UInt16(f[17]); l3 = 18 }
        guard type == 0x0800, len >= l3 + 20, f[l3] >> 4 == 4 else { return (0, 0, 0) }
        let ihl = Int(f[l3] & 0xF) * 4
        let fragment = (UInt16(f[l3 + 6]) << 8 | UInt16(f[l3 + 7])) & 0x3FFF != 0
        let proto = f[l3 + 9]
        var input = [UInt8](repeating: 0, count: 12)
        for i in 0..<8 { input[i] = f[l3 + 12 + i] }
        var n = 8
        var hashType: UInt32 = 1
        let ports = !fragment && len >= l3 + ihl + 4
            && ((proto == 6 && rssHashType & RSSConf.hashTCPIPv4 != 0 && rssFields & RSSConf.fieldsTCPIP4 != 0)
                || (proto == 17 && rssFields & RSSConf.fieldsUDPIP4 != 0))
        if ports {
            for i in 0..<4 { input[8 + i] = f[l3 + ihl + i] }
            n = 12
            hashType = 2
        } else if rssHashType & RSSConf.hashIPv4 == 0 {
            return (0, 0, 0)
        }
        let h = toeplitz(input, n)
        return (Int(rssTable[Int(h % UInt32(rssTableSize))]), h, hashType)
    }

    func toeplitz(_ input: [UInt8], _ n: Int) -> UInt32 {
        var result: UInt32 = 0
        var window = UInt32(rssKey[0]) << 24 | UInt32(rssKey[1]) << 16 | UInt32(rssKey[2]) << 8 | UInt32(rssKey[3])
        for i in 0..<n {
            let next = i + 4 < rssKey.count ? rssKey[i + 4] : 0
            for bit in 0..<8 {
                if input[i] & (0x80 >> UInt8(bit)) != 0 { result ^= window }
                window = window << 1 | UInt32((next >> UInt8(7 - bit)) & 1)
            }
        }
        return result
    }
}
