import PluginABI

/// Saved state, section "vmxnet" version 1. Fields: mac (bytes 6), revision, uptVersion,
/// cmdResult, imr, pending, intxRaised, rssFields (u32), dsa (u64), active (u8), and
/// while active: txq / rxq (bytes, little-endian u64 per value): per tx queue the ring
/// and completion-ring positions and generations, stopped, error and the 10 counters; per
/// rx queue the same for both rings. On load an active device reads its configuration
/// from the guest's DriverShared area again (it is guest memory, saved with it) and
/// continues at the saved positions. Frames held in the port's queue are not saved.
extension VmxnetDevice {
    static let stateVersion: UInt32 = 1

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
        mac.withUnsafeBytes { field("mac", HV_STATE_BYTES, $0.baseAddress!, 6) }
        u32("revision", revision)
        u32("uptVersion", uptVersion)
        u32("cmdResult", cmdResult)
        u32("imr", imr)
        u32("pending", pending)
        u32("intxRaised", intxRaised)
        u32("rssFields", rssFields)
        withUnsafeBytes(of: dsa) { field("dsa", HV_STATE_U64, $0.baseAddress!, 8) }
        var a: UInt8 = active ? 1 : 0
        field("active", HV_STATE_U8, &a, 1)
        if active {
            var tx: [UInt64] = []
            for q in txQueues {
                tx += [UInt64(q.ring.index), UInt64(q.ring.gen), UInt64(q.comp.index), UInt64(q.comp.gen),
                       q.stopped ? 1 : 0, UInt64(q.error)] + q.stats.v
            }
            var rx: [UInt64] = []
            for q in rxQueues {
                rx += [UInt64(q.rings[0].index), UInt64(q.rings[0].gen), UInt64(q.rings[1].index), UInt64(q.rings[1].gen),
                       UInt64(q.comp.index), UInt64(q.comp.gen), q.stopped ? 1 : 0, UInt64(q.error)] + q.stats.v
            }
            tx.withUnsafeBytes { field("txq", HV_STATE_BYTES, $0.baseAddress!, $0.count) }
            rx.withUnsafeBytes { field("rxq", HV_STATE_BYTES, $0.baseAddress!, $0.count) }
        }
        return rc < 0 ? rc : HV_OK
    }

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
        func u32(_ name: String) -> UInt32? {
            var v: UInt32 = 0
            return field(name, HV_STATE_U32, &v, 4) ? v : nil
        }
        var m = [UInt8](repeating: 0, count: 6)
        if m.withUnsafeMutableBytes({ field("mac", HV_STATE_BYTES, $0.baseAddress!, 6) }) { mac = m }
        revision = (u32("revision") ?? 0) & 1
        uptVersion = (u32("uptVersion") ?? 0) & 1
        cmdResult = u32("cmdResult") ?? 0
        imr = u32("imr") ?? ~0
        let savedPending = (u32("pending") ?? 0) & ((1 << UInt32(Limits.maxIntrs)) - 1)
        intxRaised = (u32("intxRaised") ?? 0) & ((1 << UInt32(Limits.maxIntrs)) - 1)
        rssFields = (u32("rssFields") ?? RSSConf.fieldsTCPIP4) & (RSSConf.fieldsTCPIP4 | RSSConf.fieldsUDPIP4)
        var d: UInt64 = 0
        if field("dsa", HV_STATE_U64, &d, 8) { dsa = d }
        var a: UInt8 = 0
        _ = field("active", HV_STATE_U8, &a, 1)
        guard rc >= 0 else { hardReset(); return rc }
        if a != 0 {
            // The guest's configuration is in its (restored) memory: activate again,
            // validated as any activation, then continue where the device stood.
            guard activate() else {
                log(HV_LOG_ERROR, "saved state: the guest's DriverShared area no longer activates")
                hardReset()
                return HV_EINVAL
            }
            var tx = [UInt64](repeating: 0, count: 16 * txQueues.count)
            var rx = [UInt64](repeating: 0, count: 18 * rxQueues.count)
            let gotTx = tx.withUnsafeMutableBytes { field("txq", HV_STATE_BYTES, $0.baseAddress!, $0.count) }
            let gotRx = rx.withUnsafeMutableBytes { field("rxq", HV_STATE_BYTES, $0.baseAddress!, $0.count) }
            guard rc >= 0, gotTx, gotRx else { hardReset(); return rc < 0 ? rc : HV_EINVAL }
            func place(_ r: inout Ring, _ index: UInt64, _ gen: UInt64) {
                r.index = r.size > 0 ? UInt32(truncatingIfNeeded: index) % r.size : 0
                r.gen = UInt32(gen & 1)
            }
            for (i, q) in txQueues.enumerated() {
                let v = tx[16 * i..<16 * i + 16].map { $0 }
                place(&q.ring, v[0], v[1])
                place(&q.comp, v[2], v[3])
                q.stopped = v[4] != 0
                q.error = UInt32(truncatingIfNeeded: v[5])
                q.stats.v = Array(v[6..<16])
            }
            for (i, q) in rxQueues.enumerated() {
                let v = rx[18 * i..<18 * i + 18].map { $0 }
                place(&q.rings[0], v[0], v[1])
                place(&q.rings[1], v[2], v[3])
                place(&q.comp, v[4], v[5])
                q.stopped = v[6] != 0
                q.error = UInt32(truncatingIfNeeded: v[7])
                q.stats.v = Array(v[8..<18])
            }
        }
        pending = savedPending
        if let port { linkUp = netLinkUp(port) != 0 }
        // Re-drive the pin from the restored state (the host does not keep it).
        intxLevel = intxRaised == 0
        return HV_OK
    }
}
