import PluginABI

/// A descriptor as read from guest memory, in the SWSTYLE 2 layout: `base` is the
/// buffer address, `flags` is word 1 (status in bits 31-16, BCNT in 11-0), `misc` is
/// word 2 (TMD2 errors / RMD2 MCNT). SWSTYLE 0 and 3 descriptors are converted.
struct Descriptor {
    var base: UInt32
    var flags: UInt32
    var misc: UInt32

    var owned: Bool { flags & Desc.OWN != 0 }
    /// The buffer size: BCNT is the two's complement of the length (0 means 4096).
    var bufferLength: Int { 4096 - Int(flags & Desc.BCNT) }
}

extension VlanceDevice {
    // MARK: descriptor access (all under `mutex`, after refreshDMA)

    var descriptorSize: UInt64 { ssize32 ? 16 : 8 }

    func rxDescriptorAddress(_ index: UInt32) -> UInt64 {
        (UInt64(rdra) &+ UInt64(index) &* descriptorSize) & 0xFFFF_FFFF
    }

    func txDescriptorAddress(_ index: UInt32) -> UInt64 {
        (UInt64(tdra) &+ UInt64(index) &* descriptorSize) & 0xFFFF_FFFF
    }

    /// Bits 31-24 of a 24-bit (SWSTYLE 0) address come from CSR2[15:8].
    var upperAddressByte: UInt32 { UInt32(csr[2] & 0xFF00) << 16 }

    @inline(__always) private func load16(_ o: Int) -> UInt32 {
        UInt32(UInt16(littleEndian: scratch.loadUnaligned(fromByteOffset: o, as: UInt16.self)))
    }

    @inline(__always) private func load32(_ o: Int) -> UInt32 {
        UInt32(littleEndian: scratch.loadUnaligned(fromByteOffset: o, as: UInt32.self))
    }

    /// Reads one descriptor (once; the guest may change it concurrently). nil when the
    /// address is not guest RAM.
    func loadDescriptor(at address: UInt64) -> Descriptor? {
        if ssize32 {
            guard dmaRead(address, scratch, 12) else { return nil }
            var d = Descriptor(base: load32(0), flags: load32(4), misc: load32(8))
            if swstyle == 3 { swap(&d.base, &d.misc) }
            return d
        }
        guard dmaRead(address, scratch, 8) else { return nil }
        let w1 = load16(2)
        return Descriptor(base: load16(0) | (w1 & 0xFF) << 16 | upperAddressByte,
                          flags: (w1 & 0xFF00) << 16 | load16(4),
                          misc: load16(6))
    }

    /// Writes the status half of word 1 (OWN last, after `misc` when given). In SWSTYLE 0
    /// only the status byte is written; `misc` is TMD3/RMD3 (given in the 32-bit layout
    /// for transmit errors, i.e. shifted left 16, or as MCNT for receive).
    func storeStatus(at address: UInt64, status: UInt32, misc: UInt32?, transmit: Bool) -> Bool {
        if ssize32 {
            if var m = misc?.littleEndian {
                let at: UInt64 = swstyle == 3 ? 0 : 8
                guard dmaWrite(address &+ at, &m, 4) else { return false }
            }
            var s = UInt16(truncatingIfNeeded: status >> 16).littleEndian
            return dmaWrite(address &+ 6, &s, 2)
        }
        if let misc {
            var m = UInt16(truncatingIfNeeded: transmit ? misc >> 16 : misc & 0x0FFF).littleEndian
            guard dmaWrite(address &+ 6, &m, 2) else { return false }
        }
        var s = UInt8(truncatingIfNeeded: status >> 24)
        return dmaWrite(address &+ 3, &s, 1)
    }

    // MARK: initialization

    /// INIT: reads the initialization block at IADR (CSR1/CSR2) in the format BCR20
    /// selects. On success sets IDON and INIT and clears STOP; when the block is not in
    /// guest RAM sets MERR and leaves everything else alone.
    func initialize() {
        let iadr = UInt64(csr[1]) | UInt64(csr[2]) << 16
        let size = ssize32 ? 28 : 24
        guard refreshDMA(), dmaRead(iadr, scratch, size) else {
            guestError("initialization block at 0x\(String(iadr, radix: 16)) is not in guest RAM")
            csr[0] |= CSR0.MERR
            return
        }
        let mode = UInt16(load16(0))
        var rlen: UInt32, tlen: UInt32
        var ladrf = (UInt16(0), UInt16(0), UInt16(0), UInt16(0))
        var padr = (UInt16(0), UInt16(0), UInt16(0))
        if ssize32 {
            rlen = UInt32(scratch.load(fromByteOffset: 2, as: UInt8.self) >> 4)
            tlen = UInt32(scratch.load(fromByteOffset: 3, as: UInt8.self) >> 4)
            padr = (UInt16(load16(4)), UInt16(load16(6)), UInt16(load16(8)))
            ladrf = (UInt16(load16(12)), UInt16(load16(14)), UInt16(load16(16)), UInt16(load16(18)))
            rdra = load32(20) & ~0xF
            tdra = load32(24) & ~0xF
        } else {
            padr = (UInt16(load16(2)), UInt16(load16(4)), UInt16(load16(6)))
            ladrf = (UInt16(load16(8)), UInt16(load16(10)), UInt16(load16(12)), UInt16(load16(14)))
            let r = load32(16), t = load32(20)
            rlen = r >> 29
            tlen = t >> 29
            rdra = (r & 0x00FF_FFF8) | upperAddressByte
            tdra = (t & 0x00FF_FFF8) | upperAddressByte
        }
        rlen = min(rlen, 9)
        tlen = min(tlen, 9)
        rxLen = 1 << rlen
        txLen = 1 << tlen
        rxIndex = 0
        txIndex = 0
        csr[6] = UInt16(tlen << 12 | rlen << 8)
        csr[15] = mode
        csr[8] = ladrf.0; csr[9] = ladrf.1; csr[10] = ladrf.2; csr[11] = ladrf.3
        csr[12] = padr.0; csr[13] = padr.1; csr[14] = padr.2
        csr[0] = (csr[0] | CSR0.IDON | CSR0.INIT) & ~CSR0.STOP
        txStalled = false
    }

    // MARK: transmit

    /// One pass over the transmit ring: sends every frame the guest owns, up to
    /// `descriptorsPerPass` descriptors (the poll timer continues).
    func transmitPass() {
        csr[0] &= ~CSR0.TDMD
        let c0 = csr[0]
        guard c0 & CSR0.TXON != 0, c0 & CSR0.STOP == 0, csr[5] & CSR5.SPND == 0 else { return }
        guard refreshDMA() else {
            csr[0] |= CSR0.MERR
            txStalled = true
            return
        }
        var budget = Self.descriptorsPerPass
        while budget > 0 && csr[0] & CSR0.TXON != 0 {
            let used = transmitFrame()
            if used == 0 { return }
            budget -= used
        }
        if budget <= 0 {
            txContinue = true
            requestPoll(after: 0)
        }
    }

    private func transmitRingFault(_ address: UInt64) {
        guestError("transmit descriptor at 0x\(String(address, radix: 16)) is not in guest RAM")
        csr[0] |= CSR0.MERR
        txStalled = true
    }

    /// The status bits the chip keeps when it hands a transmit descriptor back.
    private var txKeptStatus: UInt32 {
        Desc.STP | Desc.ENP | Desc.ADD_FCS | (csr[5] & CSR5.LTINTEN != 0 ? Desc.LTINT : 0)
    }

    /// Handles the frame (or stray descriptor) at `txIndex`. Returns the number of
    /// descriptors consumed; 0 when the guest owns nothing there or the ring failed.
    private func transmitFrame() -> Int {
        let first = txIndex
        let firstAddress = txDescriptorAddress(first)
        guard let d0 = loadDescriptor(at: firstAddress) else { transmitRingFault(firstAddress); return 0 }
        guard d0.owned else { return 0 }
        let kept = txKeptStatus

        if d0.flags & Desc.STP == 0 {
            // Not the start of a frame: the chip skips it, handing it back.
            guard storeStatus(at: firstAddress, status: d0.flags & kept, misc: nil, transmit: true) else {
                transmitRingFault(firstAddress); return 0
            }
            txIndex = (first + 1) % txLen
            return 1
        }

        var index = first
        var address = firstAddress
        var d = d0
        var length = 0            // bytes the descriptors describe
        var pieces = 0            // buffers recorded in txSegments
        var copied = false        // gathering into txBuf instead (more than HV_NET_MAX_SEGMENTS pieces)
        var memoryFault = false
        var lateInterrupt = d0.flags & Desc.LTINT != 0
        var count = 0
        while true {
            count += 1
            let n = d.bufferLength
            if !memoryFault && length + n <= Self.maxFrame {
                if !copied && pieces == Int(HV_NET_MAX_SEGMENTS) {
                    copied = true
                    memoryFault = !copySegments(pieces)
                }
                if !copied {
                    txSegments[pieces] = hv_net_segment(gpa: UInt64(d.base), len: UInt32(n), reserved: 0)
                    pieces += 1
                } else if !memoryFault && !dmaRead(UInt64(d.base), txBuf + length, n) {
                    guestError("transmit buffer at 0x\(String(d.base, radix: 16)) (\(n) bytes) is not in guest RAM")
                    memoryFault = true
                }
            }
            length += n
            if d.flags & Desc.ENP != 0 { break }
            // Longer than any frame: the transmission ends here (babble). What is left
            // of the chain has no STP and is skipped by later passes, so one frame never
            // walks more than maxFrame + 1 descriptors however long the ring is.
            if length > Self.maxFrame { break }

            // The frame continues in the next descriptor, which the guest must own.
            let next = (index + 1) % txLen
            let nextAddress = txDescriptorAddress(next)
            var nd: Descriptor?
            if count < Int(txLen) {
                guard let loaded = loadDescriptor(at: nextAddress) else {
                    transmitRingFault(nextAddress); return 0
                }
                nd = loaded
            }
            guard let following = nd, following.owned, following.flags & Desc.STP == 0 else {
                // The chain ends without ENP: buffer error and underflow on the last
                // descriptor; the transmitter turns off unless DXSUFLO.
                guestError("transmit chain without ENP at descriptor \(index)")
                guard storeStatus(at: address, status: (d.flags & kept) | Desc.ERR,
                                  misc: Desc.TBUFF | Desc.UFLO, transmit: true) else {
                    transmitRingFault(address); return 0
                }
                txIndex = next
                csr[0] |= CSR0.TINT
                if csr[3] & CSR3.DXSUFLO == 0 { csr[0] &= ~CSR0.TXON }
                return count
            }
            // Hand the intermediate descriptor back and move on.
            guard storeStatus(at: address, status: d.flags & kept, misc: 0, transmit: true) else {
                transmitRingFault(address); return 0
            }
            index = next
            address = nextAddress
            d = following
            if d.flags & Desc.LTINT != 0 { lateInterrupt = true }
        }

        // ENP (or babble): the frame is complete.
        csr[4] |= CSR4.TXSTRT
        let loopback = csr[15] & CSR15.LOOP != 0
        var status = d.flags & kept
        var misc: UInt32 = 0
        if memoryFault {
            csr[0] |= CSR0.MERR
        } else if length > Self.maxFrame {
            guestError("transmit frame of \(length) bytes exceeds \(Self.maxFrame); dropped (BABL)")
            csr[0] |= CSR0.BABL
        } else if !linkUp && !loopback {
            // 10BASE-T link fail: loss of carrier, and CERR after the transmission.
            status |= Desc.ERR
            misc = Desc.LCAR
            csr[0] |= CSR0.CERR
        } else {
            if length + 4 > 1518 { csr[0] |= CSR0.BABL }   // longer than a maximum frame
            if !transmit(length: length, pieces: pieces, copied: copied, loopback: loopback) {
                csr[0] |= CSR0.MERR
            }
        }
        guard storeStatus(at: address, status: status, misc: misc, transmit: true) else {
            transmitRingFault(address); return 0
        }
        txIndex = (index + 1) % txLen
        let tokintd = csr[5] & CSR5.TOKINTD != 0
        let ltint = csr[5] & CSR5.LTINTEN != 0 && lateInterrupt
        if status & Desc.ERR != 0 || !tokintd || ltint { csr[0] |= CSR0.TINT }
        return count
    }

    /// Copies the first `pieces` recorded transmit buffers into `txBuf`; false (logged)
    /// when one is not in guest RAM.
    private func copySegments(_ pieces: Int) -> Bool {
        var at = 0
        for i in 0..<pieces {
            let s = txSegments[i]
            guard dmaRead(s.gpa, txBuf + at, Int(s.len)) else {
                guestError("transmit buffer at 0x\(String(s.gpa, radix: 16)) (\(s.len) bytes) is not in guest RAM")
                return false
            }
            at += Int(s.len)
        }
        return true
    }

    /// Puts a complete frame of `length` bytes on the wire, padded to 60: from guest memory
    /// through `send_guest` (the switch copies it once, into the receivers' queues), or
    /// from `txBuf` when it is `copied` there or loops back. False on a guest-memory fault.
    private func transmit(length: Int, pieces: Int, copied: Bool, loopback: Bool) -> Bool {
        if !copied && !loopback {
            let rc = sendGuest(port, txSegments, UInt32(pieces), UInt32(Self.minFrame))
            if rc == HV_EFAULT {
                guestError("a transmit buffer of the \(length)-byte frame at descriptor \(txIndex) is not in guest RAM")
                return false
            }
            countSend(rc)
            return true
        }
        if !copied { guard copySegments(pieces) else { return false } }
        var n = length
        if n < Self.minFrame {
            (txBuf + n).update(repeating: 0, count: Self.minFrame - n)
            n = Self.minFrame
        }
        if loopback {
            _ = receiveFrame(UnsafeRawBufferPointer(start: txBuf, count: n), loopback: true)
        } else {
            countSend(netSend(port, txBuf, n))
        }
        return true
    }

    // MARK: receive

    /// Address filtering: physical address, broadcast, logical address filter (hash of the
    /// CRC-32 of the destination, top 6 bits) or promiscuous mode.
    private func acceptance(of dst: UnsafeRawBufferPointer) -> (accept: Bool, status: UInt32) {
        let mode = csr[15]
        if mode & CSR15.PROM != 0 { return (true, 0) }
        var broadcast = true
        for i in 0..<6 where dst[i] != 0xFF { broadcast = false; break }
        if broadcast && mode & CSR15.DRCVBC == 0 { return (true, Desc.BAM) }
        if dst[0] & 1 != 0 {
            let hash = Int(VlanceCRC.hashLE(dst) >> 26)
            let hit = csr[8 + (hash >> 4)] & (1 << UInt16(hash & 15)) != 0
            return (hit, hit ? Desc.LAFM : 0)
        }
        guard mode & CSR15.DRCVPA == 0 else { return (false, 0) }
        for i in 0..<3 {
            let word = csr[12 + i]
            if dst[2 * i] != UInt8(word & 0xFF) || dst[2 * i + 1] != UInt8(word >> 8) { return (false, 0) }
        }
        return (true, Desc.PAM)
    }

    /// Stores a frame into the receive ring. Returns HV_OK when it was taken or filtered
    /// out; HV_EAGAIN when no descriptor is owned (the switch holds the frame and
    /// `rxWaiting` polls for a buffer; a looped-back frame is missed instead: MISS);
    /// HV_EIO (dropped) when the receiver is off, the frame is too long, it overflowed the
    /// owned buffers (OFLO) or guest memory failed (MERR).
    func receiveFrame(_ frame: UnsafeRawBufferPointer, loopback: Bool) -> Int32 {
        let c0 = csr[0]
        guard c0 & CSR0.RXON != 0, c0 & CSR0.STOP == 0, csr[5] & CSR5.SPND == 0 else { return HV_EIO }
        // In loopback mode the receiver listens to the transmitter only.
        guard loopback || csr[15] & CSR15.LOOP == 0 else { return HV_EIO }
        guard frame.count >= 14, frame.count <= Self.maxFrame else { return HV_EIO }
        let match = acceptance(of: UnsafeRawBufferPointer(rebasing: frame[0..<6]))
        guard match.accept else { return HV_OK }

        guard refreshDMA() else { csr[0] |= CSR0.MERR; return HV_EIO }
        let first = rxIndex
        let firstAddress = rxDescriptorAddress(first)
        guard let d0 = loadDescriptor(at: firstAddress) else { return receiveRingFault(firstAddress) }
        guard d0.owned else {
            guard loopback else {
                rxWaiting = true
                rxPollDelay = Self.rxWaitPollNs
                return HV_EAGAIN
            }
            // No buffer for the internal loopback: missed frame.
            csr[0] |= CSR0.MISS
            csr[112] &+= 1
            if csr[112] == 0 { csr[4] |= CSR4.MFCO }
            return HV_EIO
        }

        // The message as the chip stores it: the frame (read in place), then `tail`
        // bytes from rxTail: zeros to 60 bytes and the FCS; with ASTRP_RCV an 802.3
        // frame's data only, without pad and FCS.
        let data: Int
        let tail: Int
        let typeLength = Int(frame[12]) << 8 | Int(frame[13])
        if csr[4] & CSR4.ASTRP_RCV != 0 && typeLength < 46 {
            data = min(frame.count, 14 + typeLength)
            tail = 14 + typeLength - data
            rxTail.update(repeating: 0, count: tail)
        } else {
            data = frame.count
            let pad = max(0, Self.minFrame - data)
            rxTail.update(repeating: 0, count: pad)
            let fcs = ~VlanceCRC.update(VlanceCRC.update(0xFFFF_FFFF, frame),
                                        UnsafeRawBufferPointer(start: rxTail, count: pad))
            for i in 0..<4 { rxTail[pad + i] = UInt8(truncatingIfNeeded: fcs >> (8 * UInt32(i))) }
            tail = pad + 4
        }
        let messageLength = data + tail
        // Writes message bytes [offset, offset + n) to guest memory at `gpa`.
        func store(_ gpa: UInt64, _ offset: Int, _ n: Int) -> Bool {
            let fromFrame = max(0, min(n, data - offset))
            if fromFrame > 0 && !dmaWrite(gpa, frame.baseAddress! + offset, fromFrame) { return false }
            let rest = n - fromFrame
            return rest == 0 || dmaWrite(gpa &+ UInt64(fromFrame), rxTail + (offset + fromFrame - data), rest)
        }

        var index = first
        var address = firstAddress
        var d = d0
        var offset = 0
        var count = 0
        var finalStatus: UInt32
        while true {
            count += 1
            let n = min(d.bufferLength, messageLength - offset)
            guard store(UInt64(d.base), offset, n) else {
                guestError("receive buffer at 0x\(String(d.base, radix: 16)) is not in guest RAM")
                csr[0] |= CSR0.MERR
                return HV_EIO
            }
            offset += n
            if offset == messageLength {
                finalStatus = Desc.ENP | match.status
                break
            }
            let next = (index + 1) % rxLen
            var nd: Descriptor?
            if count < Int(rxLen) && next != first {
                let nextAddress = rxDescriptorAddress(next)
                guard let loaded = loadDescriptor(at: nextAddress) else { return receiveRingFault(nextAddress) }
                nd = loaded
            }
            guard let following = nd, following.owned else {
                // The frame does not fit the buffers the guest owns.
                finalStatus = Desc.ERR | Desc.RBUFF | Desc.OFLO
                break
            }
            // Intermediate descriptors go back now; the STP descriptor goes back last.
            if index != first {
                guard storeStatus(at: address, status: 0, misc: nil, transmit: false) else {
                    return receiveRingFault(address)
                }
            }
            index = next
            address = rxDescriptorAddress(next)
            d = following
        }
        if index == first { finalStatus |= Desc.STP }
        let mcnt: UInt32? = finalStatus & Desc.ENP != 0 ? UInt32(messageLength) : nil
        guard storeStatus(at: address, status: finalStatus, misc: mcnt, transmit: false) else {
            return receiveRingFault(address)
        }
        if index != first {
            guard storeStatus(at: firstAddress, status: Desc.STP, misc: nil, transmit: false) else {
                return receiveRingFault(firstAddress)
            }
        }
        rxIndex = (index + 1) % rxLen
        csr[0] |= CSR0.RINT
        framesReceived &+= 1
        return finalStatus & Desc.ERR == 0 ? HV_OK : HV_EIO
    }

    private func receiveRingFault(_ address: UInt64) -> Int32 {
        guestError("receive descriptor at 0x\(String(address, radix: 16)) is not in guest RAM")
        csr[0] |= CSR0.MERR
        return HV_EIO
    }
}

/// CRC-32 (IEEE 802.3, reflected) for the FCS and the logical address filter hash.
enum VlanceCRC {
    static let table: [UInt32] = (0..<256).map { n -> UInt32 in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    /// The raw register value over `bytes` (initial all ones, no final inversion), as the
    /// chip's hash uses it.
    static func hashLE(_ bytes: UnsafeRawBufferPointer) -> UInt32 { update(0xFFFF_FFFF, bytes) }

    /// The register after feeding `bytes` to it.
    static func update(_ register: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var crc = register
        table.withUnsafeBufferPointer { t in
            for b in bytes { crc = t[Int((crc ^ UInt32(b)) & 0xFF)] ^ (crc >> 8) }
        }
        return crc
    }
}
