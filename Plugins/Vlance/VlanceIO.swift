import PluginABI

/// The I/O map (BAR0 port I/O and BAR1 MMIO decode the same 32 bytes):
///
///   0x00-0x0F  APROM (byte, word or dword reads; writes only with BCR2.APROMWE)
///   WIO (16-bit accesses):   0x10 RDP, 0x12 RAP, 0x14 RESET, 0x16 BDP
///   DWIO (32-bit accesses):  0x10 RDP, 0x14 RAP, 0x18 RESET, 0x1C BDP
///
/// The chip leaves reset in WIO mode; a dword write to 0x10 switches it to DWIO (the
/// written data is ignored), and only H_RESET switches it back. Accesses of the wrong
/// width for the current mode read as all ones and are otherwise ignored.
extension VlanceDevice {
    var stoppedOrSuspended: Bool { csr[0] & CSR0.STOP != 0 || csr[5] & CSR5.SPND != 0 }
    var dwio: Bool { bcr[BCR.BSBC] & BCR.DWIO != 0 }
    var ssize32: Bool { bcr[BCR.SWS] & BCR.SSIZE32 != 0 }
    var swstyle: UInt16 { bcr[BCR.SWS] & 0xFF }

    func ioRead(offset: UInt64, size: UInt32) -> UInt64 {
        if offset < 0x10 {
            var v: UInt64 = 0
            for i in 0..<UInt64(min(size, 8)) {
                let o = offset + i
                v |= UInt64(o < 0x10 ? prom[Int(o)] : 0xFF) << (8 * i)
            }
            return v
        }
        if !dwio {
            guard size == 2 else { return ~0 }
            switch offset {
            case 0x10: return UInt64(csrRead(Int(rap)) & 0xFFFF)
            case 0x12: return UInt64(rap)
            case 0x14: softReset(); return 0
            case 0x16: return UInt64(bcrRead(Int(rap)))
            default: return ~0
            }
        }
        guard size == 4 else { return ~0 }
        switch offset {
        case 0x10: return UInt64(csrRead(Int(rap)))
        case 0x14: return UInt64(rap)
        case 0x18: softReset(); return 0
        case 0x1C: return UInt64(bcrRead(Int(rap)))
        default: return ~0
        }
    }

    func ioWrite(offset: UInt64, size: UInt32, value: UInt64) {
        if offset < 0x10 {
            guard bcr[BCR.MC] & BCR.APROMWE != 0 else { return }
            for i in 0..<UInt64(min(size, 8)) where offset + i < 0x10 {
                prom[Int(offset + i)] = UInt8(truncatingIfNeeded: value >> (8 * i))
            }
            return
        }
        let v16 = UInt16(truncatingIfNeeded: value)
        if !dwio {
            if size == 4 && offset == 0x10 {
                bcr[BCR.BSBC] |= BCR.DWIO
                return
            }
            guard size == 2 else { return }
            switch offset {
            case 0x10: csrWrite(Int(rap), v16)
            case 0x12: rap = v16 & 0x7F
            case 0x16: bcrWrite(Int(rap), v16)
            default: break
            }
            return
        }
        guard size == 4 else { return }
        switch offset {
        case 0x10: csrWrite(Int(rap), v16)
        case 0x14: rap = v16 & 0x7F
        case 0x1C: bcrWrite(Int(rap), v16)
        default: break
        }
    }

    // MARK: CSRs

    /// Ring counter as CSR72/74 show it: the two's complement of the descriptors left
    /// before the end of the ring (the first descriptor reads as CSR76/78).
    @inline(__always) func ringCounter(_ index: UInt32, _ len: UInt32) -> UInt16 {
        UInt16(truncatingIfNeeded: index &- len)
    }

    @inline(__always) func ringLengthRegister(_ len: UInt32) -> UInt16 {
        UInt16(truncatingIfNeeded: 0x1_0000 &- len)
    }

    func csrRead(_ index: Int) -> UInt32 {
        switch index {
        case 0:
            updateIRQ()
            let v = csr[0]
            return UInt32(v & CSR0.errorSources != 0 ? v | CSR0.ERR : v & ~CSR0.ERR)
        case 16: return UInt32(csr[1])
        case 17: return UInt32(csr[2])
        case 24: return rdra & 0xFFFF
        case 25: return rdra >> 16
        case 26: return UInt32(rxDescriptorAddress((rxIndex + 1) % rxLen) & 0xFFFF)
        case 27: return UInt32(rxDescriptorAddress((rxIndex + 1) % rxLen) >> 16 & 0xFFFF)
        case 28: return UInt32(rxDescriptorAddress(rxIndex) & 0xFFFF)
        case 29: return UInt32(rxDescriptorAddress(rxIndex) >> 16 & 0xFFFF)
        case 30: return tdra & 0xFFFF
        case 31: return tdra >> 16
        case 32: return UInt32(txDescriptorAddress((txIndex + 1) % txLen) & 0xFFFF)
        case 33: return UInt32(txDescriptorAddress((txIndex + 1) % txLen) >> 16 & 0xFFFF)
        case 34: return UInt32(txDescriptorAddress(txIndex) & 0xFFFF)
        case 35: return UInt32(txDescriptorAddress(txIndex) >> 16 & 0xFFFF)
        case 58: return UInt32(bcr[BCR.SWS])
        case 72: return UInt32(ringCounter(rxIndex, rxLen))
        case 74: return UInt32(ringCounter(txIndex, txLen))
        case 76: return UInt32(ringLengthRegister(rxLen))
        case 78: return UInt32(ringLengthRegister(txLen))
        // CSR88 in DWIO mode also shows CSR89 in bits 31-16 (the full chip id).
        case 88: return UInt32(csr[89]) << 16 | UInt32(csr[88])
        case 0..<128: return UInt32(csr[index])
        default: return 0
        }
    }

    func csrWrite(_ index: Int, _ v: UInt16) {
        let stopped = stoppedOrSuspended
        switch index {
        case 0:
            writeCSR0(v)
        case 1, 16:
            if stopped { csr[1] = v }
        case 2, 17:
            if stopped { csr[2] = v }
        case 3:
            let writable = stopped ? CSR3.alwaysWritable | CSR3.stoppedOnly : CSR3.alwaysWritable
            csr[3] = (csr[3] & ~writable) | (v & writable)
        case 4:
            let before = csr[4]
            var c4 = before & ~(v & CSR4.writeOneToClear)
            c4 = (c4 & ~CSR4.control) | (v & CSR4.control)
            if v & CSR4.UINTCMD != 0 { c4 |= CSR4.UINT }
            csr[4] = c4
            if before & CSR4.TXDPOLL != 0 && c4 & CSR4.TXDPOLL == 0 { pollArmed = false }
        case 5:
            let before = csr[5]
            var c5 = before & ~(v & CSR5.writeOneToClear)
            c5 = (c5 & ~CSR5.control) | (v & CSR5.control)
            csr[5] = c5
            if before & CSR5.SPND != 0 && c5 & CSR5.SPND == 0 {
                // Leaving suspend: look at the transmit ring again.
                pollArmed = false
                if csr[0] & CSR0.TXON != 0 { transmitPass() }
            }
        case 8...15:
            if stopped { csr[index] = v }
        case 24:
            if stopped { rdra = (rdra & 0xFFFF_0000) | UInt32(v) }
        case 25:
            if stopped { rdra = (rdra & 0xFFFF) | UInt32(v) << 16 }
        case 30:
            if stopped { tdra = (tdra & 0xFFFF_0000) | UInt32(v) }
        case 31:
            if stopped { tdra = (tdra & 0xFFFF) | UInt32(v) << 16 }
        case 58:
            bcrWrite(BCR.SWS, v)
        case 72:
            if stopped { rxIndex = indexFromCounter(v, rxLen) }
        case 74:
            if stopped { txIndex = indexFromCounter(v, txLen) }
        case 76:
            if stopped {
                rxLen = v == 0 ? 0x1_0000 : 0x1_0000 - UInt32(v)
                if rxIndex >= rxLen { rxIndex = 0 }
            }
        case 78:
            if stopped {
                txLen = v == 0 ? 0x1_0000 : 0x1_0000 - UInt32(v)
                if txIndex >= txLen { txIndex = 0 }
            }
        case 47, 80, 82, 100, 112, 122, 124:
            // POLLINT, DMA/FIFO control, bus timeout, missed frames, receive alignment,
            // test register: stored only (see README.md).
            if stopped { csr[index] = v }
        default:
            break   // read-only, internal or not implemented
        }
    }

    @inline(__always) func indexFromCounter(_ v: UInt16, _ len: UInt32) -> UInt32 {
        let i = (UInt32(v) &+ len) & 0xFFFF
        return i < len ? i : i % len
    }

    /// CSR0: bits 8-14 are write-one-to-clear; INEA and TDMD are taken as written; STOP,
    /// INIT and STRT act on a 0→1 transition (STOP wins when all three are written).
    func writeCSR0(_ v: UInt16) {
        var c0 = csr[0] & ~(v & CSR0.writeOneToClear)
        c0 = (c0 & ~CSR0.INEA) | (v & CSR0.INEA)
        if v & CSR0.TDMD != 0 { c0 |= CSR0.TDMD }
        csr[0] = c0
        var command = v & (CSR0.INIT | CSR0.STRT | CSR0.STOP)
        if command == CSR0.INIT | CSR0.STRT | CSR0.STOP { command = CSR0.STOP }
        if command & CSR0.STOP != 0 && csr[0] & CSR0.STOP == 0 { stop() }
        if command & CSR0.INIT != 0 && csr[0] & CSR0.INIT == 0 { initialize() }
        if command & CSR0.STRT != 0 && csr[0] & CSR0.STRT == 0 { start() }
        if csr[0] & CSR0.TDMD != 0 {
            txStalled = false
            transmitPass()
        }
    }

    /// Setting STOP: everything stops, CSR0 reads 0x0004.
    func stop() {
        csr[0] = CSR0.STOP
        csr[4] &= ~(CSR4.MFCO | CSR4.UINTCMD | CSR4.UINT | CSR4.JAB)
        csr[5] &= ~(CSR5.SPND | CSR5.MPINT)
        txStalled = false
        txContinue = false
    }

    func start() {
        var c0 = csr[0] & ~CSR0.STOP
        c0 |= CSR0.STRT
        if csr[15] & CSR15.DTX == 0 { c0 |= CSR0.TXON }
        if csr[15] & CSR15.DRX == 0 { c0 |= CSR0.RXON }
        csr[0] = c0
        txStalled = false
        pollArmed = false
    }

    // MARK: BCRs

    func bcrRead(_ index: Int) -> UInt16 {
        guard index < BCR.count else { return 0 }
        switch index {
        case BCR.LNKST...BCR.LED3:
            // LEDOUT follows the link when the LED is programmed to show link status.
            let v = bcr[index] & ~BCR.LEDOUT
            return linkUp && v & BCR.LNKSTE != 0 ? v | BCR.LEDOUT : v
        default:
            return bcr[index]
        }
    }

    func bcrWrite(_ index: Int, _ v: UInt16) {
        switch index {
        case BCR.MC:
            bcr[index] = v
        case BCR.LNKST...BCR.LED3:
            bcr[index] = v & ~BCR.LEDOUT
        case BCR.FDC:
            bcr[index] = v & 0x0007
        case BCR.BSBC:
            bcr[index] = (v & ~BCR.DWIO) | (bcr[index] & BCR.DWIO)
        case BCR.EECAS:
            bcr[index] = v & 0x3FFF   // PVALID/PREAD: no serial EEPROM
        case BCR.SWS:
            guard stoppedOrSuspended else { return }
            var style = v & 0x00FF
            switch style {
            case 0: style |= BCR.CSRPCNET
            case 1: style |= BCR.SSIZE32
            case 2, 3: style |= BCR.SSIZE32 | BCR.CSRPCNET
            default:
                guestError("BCR20 SWSTYLE \(style) is reserved; using 0")
                style = BCR.CSRPCNET
            }
            bcr[index] = style
        case BCR.PCILAT:
            bcr[index] = v
        default:
            break
        }
    }
}
