import PluginABI

/// Saved state, section "vlance" version 1. Fields:
///   csr (bytes, 128 x u16 LE), bcr (bytes, 32 x u16 LE), aprom (bytes, 16), rap (u16),
///   rdra, tdra, rxLen, txLen, rxIndex, txIndex (u32), txStalled (u8).
/// The link state is the port's and is read back from the host; the device keeps no
/// frames of its own (transmitted frames go to the switch at once; received ones wait in
/// the host's port queue, which is not saved: frames on the wire).
extension VlanceDevice {
    static let stateVersion: UInt32 = 1

    typealias StatePut = @convention(c) (OpaquePointer?, UnsafePointer<CChar>?, UInt32, UnsafeRawPointer?, Int) -> Int32
    typealias StateGet = @convention(c) (OpaquePointer?, UnsafePointer<CChar>?, UInt32, UnsafeMutableRawPointer?, Int) -> Int32

    func saveState(_ writer: OpaquePointer?) -> Int32 {
        guard let put = services.pointee.state_put else { return HV_ENOSYS }
        guard lockLive() else { return HV_EINVAL }
        defer { finish() }
        var rc: Int32 = HV_OK
        func field(_ name: String, _ type: UInt32, _ data: UnsafeRawPointer, _ len: Int) {
            guard rc >= 0 else { return }
            rc = name.withCString { put(writer, $0, type, data, len) }
        }
        func u32(_ name: String, _ value: UInt32) {
            withUnsafeBytes(of: value) { field(name, HV_STATE_U32, $0.baseAddress!, 4) }
        }
        var words = [UInt8](repeating: 0, count: 256)
        for i in 0..<128 { words[2 * i] = UInt8(csr[i] & 0xFF); words[2 * i + 1] = UInt8(csr[i] >> 8) }
        words.withUnsafeBytes { field("csr", HV_STATE_BYTES, $0.baseAddress!, 256) }
        for i in 0..<BCR.count { words[2 * i] = UInt8(bcr[i] & 0xFF); words[2 * i + 1] = UInt8(bcr[i] >> 8) }
        words.withUnsafeBytes { field("bcr", HV_STATE_BYTES, $0.baseAddress!, 2 * BCR.count) }
        field("aprom", HV_STATE_BYTES, prom, 16)
        withUnsafeBytes(of: rap) { field("rap", HV_STATE_U16, $0.baseAddress!, 2) }
        u32("rdra", rdra)
        u32("tdra", tdra)
        u32("rxLen", rxLen)
        u32("txLen", txLen)
        u32("rxIndex", rxIndex)
        u32("txIndex", txIndex)
        var stalled: UInt8 = txStalled ? 1 : 0
        field("txStalled", HV_STATE_U8, &stalled, 1)
        return rc < 0 ? rc : HV_OK
    }

    /// Restores a saved state. Every value is validated like a guest write; a field the
    /// state lacks keeps its power-on value.
    func loadState(_ reader: OpaquePointer?, version: UInt32) -> Int32 {
        guard version <= Self.stateVersion else { return HV_ENOTSUP }
        guard let get = services.pointee.state_get else { return HV_ENOSYS }
        guard lockLive() else { return HV_EINVAL }
        defer { finish() }
        hardReset()
        var rc: Int32 = HV_OK
        func field(_ name: String, _ type: UInt32, _ data: UnsafeMutableRawPointer, _ len: Int) -> Bool {
            guard rc >= 0 else { return false }
            let r = name.withCString { get(reader, $0, type, data, len) }
            if r == HV_ENOENT { return false }
            if r < 0 { rc = r; return false }
            return true
        }
        func u32(_ name: String, _ value: inout UInt32) {
            var v: UInt32 = 0
            if field(name, HV_STATE_U32, &v, 4) { value = v }
        }
        var words = [UInt8](repeating: 0, count: 256)
        let gotCSR = words.withUnsafeMutableBytes { field("csr", HV_STATE_BYTES, $0.baseAddress!, 256) }
        if gotCSR { for i in 0..<128 { csr[i] = UInt16(words[2 * i]) | UInt16(words[2 * i + 1]) << 8 } }
        let gotBCR = words.withUnsafeMutableBytes { field("bcr", HV_STATE_BYTES, $0.baseAddress!, 2 * BCR.count) }
        if gotBCR { for i in 0..<BCR.count { bcr[i] = UInt16(words[2 * i]) | UInt16(words[2 * i + 1]) << 8 } }
        _ = field("aprom", HV_STATE_BYTES, prom, 16)
        var r: UInt16 = 0
        if field("rap", HV_STATE_U16, &r, 2) { rap = r & 0x7F }
        u32("rdra", &rdra)
        u32("tdra", &tdra)
        u32("rxLen", &rxLen)
        u32("txLen", &txLen)
        u32("rxIndex", &rxIndex)
        u32("txIndex", &txIndex)
        var stalled: UInt8 = 0
        if field("txStalled", HV_STATE_U8, &stalled, 1) { txStalled = stalled != 0 }
        guard rc >= 0 else { hardReset(); return rc }

        // Never trust a saved state more than a guest write.
        if !(1...0x1_0000).contains(rxLen) { rxLen = 1 }
        if !(1...0x1_0000).contains(txLen) { txLen = 1 }
        if rxIndex >= rxLen { rxIndex = 0 }
        if txIndex >= txLen { txIndex = 0 }
        var c0 = csr[0] & ~(CSR0.INTR | CSR0.ERR)
        if c0 & CSR0.STOP != 0 { c0 &= ~(CSR0.STRT | CSR0.TXON | CSR0.RXON | CSR0.TDMD) }
        csr[0] = c0
        let style = bcr[BCR.SWS] & 0xFF
        switch style {
        case 0: bcr[BCR.SWS] = BCR.CSRPCNET
        case 1: bcr[BCR.SWS] = style | BCR.SSIZE32
        case 2, 3: bcr[BCR.SWS] = style | BCR.SSIZE32 | BCR.CSRPCNET
        default: bcr[BCR.SWS] = BCR.CSRPCNET
        }
        if let port, let linkUpFn = services.pointee.net_link_up { linkUp = linkUpFn(port) != 0 }
        pollArmed = false
        txContinue = false
        forceIRQ()
        return HV_OK
    }
}
