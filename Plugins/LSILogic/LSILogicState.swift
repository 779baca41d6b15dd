import PluginABI

/// Saved state, section "lsilogic" version 1. Fields:
///   iocState, whoInit, doorbellInterrupt, writeSequenceIndex, maxDevices,
///   eventsOn (u8); faultCode (u16); intMask, diagnostic, replyFrameSize, eventContext
///   (u32); hostMFAHigh, senseBufferHigh (u64);
///   handshake (bytes: kind 0 idle / 1 receiving / 2 replying, u16 expected-or-index,
///   then the dwords received or the reply's 16-bit words, LE);
///   freeFrames, postFIFO (bytes: u32 LE each, oldest first);
///   pendingReplies (bytes: per reply kind 0 context + u32, or kind 1 address + u16
///   length + the reply);
///   pageOverrides (bytes: per page u64 key + u16 length + the page).
/// Each bytes field X has its length in the u32 field XLength (state_get reads exact
/// lengths); an empty one is written as its length alone.
/// Nothing is in flight: the host waits for every SCSI completion before it pauses the
/// VM, so requests never need saving (save_state refuses with HV_EBUSY otherwise).
extension LSILogicDevice {
    static let stateVersion: UInt32 = 1

    func saveState(_ writer: OpaquePointer?) -> Int32 {
        guard let put = services.pointee.state_put else { return HV_ENOSYS }
        lock()
        defer { finish() }
        guard freeSlots.count == slots.count else { return HV_EBUSY }
        var rc: Int32 = HV_OK
        func field(_ name: String, _ type: UInt32, _ bytes: [UInt8]) {
            guard rc >= 0 else { return }
            rc = name.withCString { n in bytes.withUnsafeBytes { put(writer, n, type, $0.baseAddress, bytes.count) } }
        }
        func le(_ v: UInt64, _ size: Int) -> [UInt8] { (0..<size).map { UInt8(truncatingIfNeeded: v >> (8 * UInt64($0))) } }
        func u8(_ name: String, _ v: UInt8) { field(name, HV_STATE_U8, [v]) }
        func u32(_ name: String, _ v: UInt32) { field(name, HV_STATE_U32, le(UInt64(v), 4)) }
        func blob(_ name: String, _ b: [UInt8]) {
            u32(name + "Length", UInt32(b.count))
            if !b.isEmpty { field(name, HV_STATE_BYTES, b) }
        }
        func u64(_ name: String, _ v: UInt64) { field(name, HV_STATE_U64, le(v, 8)) }

        u8("iocState", UInt8(state.rawValue))
        u8("whoInit", whoInit)
        u8("doorbellInterrupt", doorbellInterrupt ? 1 : 0)
        u8("writeSequenceIndex", UInt8(writeSequenceIndex))
        u8("maxDevices", maxDevices)
        u8("eventsOn", eventsOn ? 1 : 0)
        field("faultCode", HV_STATE_U16, le(UInt64(faultCode), 2))
        u32("intMask", intMask)
        u32("diagnostic", diagnostic)
        u32("replyFrameSize", UInt32(replyFrameSize))
        u32("eventContext", eventContext)
        u64("hostMFAHigh", hostMFAHigh)
        u64("senseBufferHigh", senseBufferHigh)

        var hs: [UInt8]
        switch handshake {
        case .idle: hs = [0, 0, 0]
        case .receiving(let expected, let dwords):
            hs = [1] + le(UInt64(expected), 2)
            for d in dwords { hs += le(UInt64(d), 4) }
        case .replying(let words, let index):
            hs = [2] + le(UInt64(index), 2)
            for w in words { hs += le(UInt64(w), 2) }
        }
        blob("handshake", hs)
        blob("freeFrames", freeFrames.contents.flatMap { le(UInt64($0), 4) })
        blob("postFIFO", postFIFO.contents.flatMap { le(UInt64($0), 4) })
        var pending: [UInt8] = []
        for r in pendingReplies[pendingHead...] {
            switch r {
            case .context(let ctx): pending += [0] + le(UInt64(ctx), 4)
            case .address(let bytes): pending += [1] + le(UInt64(bytes.count), 2) + bytes
            }
        }
        blob("pendingReplies", pending)
        var pages: [UInt8] = []
        for (key, bytes) in pageOverrides.sorted(by: { $0.key < $1.key }) {
            pages += le(key, 8) + le(UInt64(bytes.count), 2) + bytes
        }
        blob("pageOverrides", pages)
        return rc < 0 ? rc : HV_OK
    }

    /// Restores a saved state on a fresh instance. Every value is checked like guest
    /// input: a state this adapter could not have reached fails with HV_EINVAL and leaves
    /// the power-on state.
    func loadState(_ reader: OpaquePointer?, version: UInt32) -> Int32 {
        guard version <= Self.stateVersion else { return HV_ENOTSUP }
        guard let get = services.pointee.state_get else { return HV_ENOSYS }
        lock()
        defer { finish() }
        hardReset()
        var rc: Int32 = HV_OK
        /// The field's bytes; nil when absent (the power-on value stays).
        func field(_ name: String, _ type: UInt32, size: Int) -> [UInt8]? {
            guard rc >= 0 else { return nil }
            var buf = [UInt8](repeating: 0, count: size)
            let r = name.withCString { n in buf.withUnsafeMutableBytes { get(reader, n, type, $0.baseAddress, size) } }
            if r == HV_ENOENT { return nil }
            if r < 0 { rc = r; return nil }
            return buf
        }
        func value(_ b: [UInt8]) -> UInt64 { b.enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) } }
        func u8(_ name: String) -> UInt8? { field(name, HV_STATE_U8, size: 1).map { $0[0] } }
        func u32(_ name: String) -> UInt32? { field(name, HV_STATE_U32, size: 4).map { UInt32(value($0)) } }
        func u64(_ name: String) -> UInt64? { field(name, HV_STATE_U64, size: 8).map { value($0) } }
        /// A bytes field of at most `max` bytes (its length from XLength).
        func bytes(_ name: String, max: Int) -> [UInt8]? {
            guard let n = u32(name + "Length") else { return nil }
            guard n <= max else { rc = HV_EINVAL; return nil }
            return n == 0 ? [] : field(name, HV_STATE_BYTES, size: Int(n))
        }
        var valid = true
        func check(_ ok: Bool) { if !ok { valid = false } }

        if let v = u8("iocState") {
            if let s = MPI.IOCState(rawValue: UInt32(v)) { state = s } else { check(false) }
        }
        if let v = u8("whoInit") { whoInit = v & 7 }
        if let v = u8("doorbellInterrupt") { doorbellInterrupt = v != 0 }
        if let v = u8("writeSequenceIndex") { check(Int(v) < MPI.Diag.writeSequenceKeys.count); writeSequenceIndex = Int(v) % 5 }
        if let v = u8("maxDevices") { check((1...Self.maxTargets).contains(Int(v))); maxDevices = v }
        if let v = u8("eventsOn") { eventsOn = v != 0 }
        if let b = field("faultCode", HV_STATE_U16, size: 2) { faultCode = UInt16(value(b)) }
        if let v = u32("intMask") { intMask = v & (MPI.IntStatus.doorbell | MPI.IntStatus.reply) }
        if let v = u32("diagnostic") { diagnostic = v & (MPI.Diag.writable | MPI.Diag.drwe | MPI.Diag.resetHistory) }
        if let v = u32("replyFrameSize") { check(v <= 0xFFFF && v % 4 == 0); replyFrameSize = Int(v & 0xFFFC) }
        if let v = u32("eventContext") { eventContext = v }
        if let v = u64("hostMFAHigh") { check(v & 0xFFFF_FFFF == 0); hostMFAHigh = v & ~0xFFFF_FFFF }
        if let v = u64("senseBufferHigh") { check(v & 0xFFFF_FFFF == 0); senseBufferHigh = v & ~0xFFFF_FFFF }

        if let hs = bytes("handshake", max: 3 + Self.handshakeMaxDwords * 4) {
            check(hs.count >= 3)
            if hs.count >= 3 {
                let a = Int(hs[1]) | Int(hs[2]) << 8
                let payload = Array(hs[3...])
                switch hs[0] {
                case 0: check(payload.isEmpty)
                case 1:
                    let dwords = stride(from: 0, to: payload.count - payload.count % 4, by: 4).map { UInt32(value(Array(payload[$0..<$0 + 4]))) }
                    check(payload.count % 4 == 0 && (3...Self.handshakeMaxDwords).contains(a) && dwords.count < a)
                    handshake = .receiving(expected: a, dwords: dwords)
                case 2:
                    let words = stride(from: 0, to: payload.count - payload.count % 2, by: 2).map { UInt16(value(Array(payload[$0..<$0 + 2]))) }
                    check(payload.count % 2 == 0 && a <= words.count)
                    handshake = .replying(words: words, index: min(a, words.count))
                default: check(false)
                }
            }
        }
        for (name, _) in [("freeFrames", 0), ("postFIFO", 1)] {
            guard let b = bytes(name, max: Self.fifoDepth * 4) else { continue }
            check(b.count % 4 == 0)
            var ring = Ring(capacity: Self.fifoDepth)
            for i in stride(from: 0, to: b.count - b.count % 4, by: 4) { ring.push(UInt32(value(Array(b[i..<i + 4])))) }
            if name == "freeFrames" { freeFrames = ring } else { postFIFO = ring }
        }
        if let b = bytes("pendingReplies", max: Self.pendingReplyLimit * (3 + 255 * 4)) {
            var i = 0
            while i < b.count && valid {
                if b[i] == 0, i + 5 <= b.count {
                    pendingReplies.append(.context(UInt32(value(Array(b[i + 1..<i + 5])))))
                    i += 5
                } else if b[i] == 1, i + 3 <= b.count {
                    let n = Int(b[i + 1]) | Int(b[i + 2]) << 8
                    check(n >= MPI.Header.size && n <= 255 * 4 && i + 3 + n <= b.count)
                    if valid { pendingReplies.append(.address(Array(b[i + 3..<i + 3 + n]))) }
                    i += 3 + n
                } else {
                    check(false)
                }
            }
            check(pendingReplies.count <= Self.pendingReplyLimit)
        }
        if let b = bytes("pageOverrides", max: 64 * 1024) {
            var i = 0
            while i < b.count && valid {
                check(i + 10 <= b.count)
                guard valid else { break }
                let key = value(Array(b[i..<i + 8]))
                let n = Int(b[i + 8]) | Int(b[i + 9]) << 8
                let type = UInt8(key >> 40), number = UInt8((key >> 32) & 0xFF), address = UInt32(key & 0xFFFF_FFFF)
                let page = defaultPage(type: type, number: number, address: address)
                check(page?.changeable == true && page?.bytes.count == n && i + 10 + n <= b.count)
                if valid { pageOverrides[key] = Array(b[i + 10..<i + 10 + n]) }
                i += 10 + n
            }
        }
        guard rc >= 0, valid else {
            hardReset()
            if rc >= 0 { log(HV_LOG_ERROR, "saved state is not one this adapter can be in") }
            return rc < 0 ? rc : HV_EINVAL
        }
        // The interrupt line follows the restored registers (driven even when unchanged).
        updateIRQ()
        irqSetLevel(host, intxLevel ? 1 : 0)
        return HV_OK
    }
}
