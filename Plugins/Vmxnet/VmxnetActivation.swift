import PluginABI

/// ACTIVATE_DEV and the configuration commands: everything the driver describes in its
/// DriverShared area and queue descriptor table is read once, validated and mapped here.
/// A guest that describes something impossible gets a nonzero CMD result and an
/// inactive device (the driver's activation fails), never a host fault.
extension VmxnetDevice {
    func activate() -> Bool {
        deactivate()
        guard pciCommand(host) & 0x4 != 0 else {
            guestError("ACTIVATE_DEV with bus mastering disabled")
            return false
        }
        guard let ds = memMap(host, dsa, Shared.size, 1) else {
            guestError("ACTIVATE_DEV: DriverShared at 0x\(String(dsa, radix: 16)) is not guest RAM")
            return false
        }
        guard ds.loadUnaligned(fromByteOffset: Shared.magic, as: UInt32.self) == Shared.magicValue else {
            guestError("ACTIVATE_DEV: DriverShared magic is not 0xBABEFEE1")
            return false
        }
        let numTx = Int(ds.load(fromByteOffset: Shared.numTxQueues, as: UInt8.self))
        let numRx = Int(ds.load(fromByteOffset: Shared.numRxQueues, as: UInt8.self))
        let qdPA = ds.loadUnaligned(fromByteOffset: Shared.queueDescPA, as: UInt64.self)
        let qdLen = Int(ds.loadUnaligned(fromByteOffset: Shared.queueDescLen, as: UInt32.self))
        let need = (numTx + numRx) * QueueDesc.size
        guard (1...Limits.maxTxQueues).contains(numTx), (1...Limits.maxRxQueues).contains(numRx) else {
            guestError("ACTIVATE_DEV: \(numTx) tx / \(numRx) rx queues (1-8 / 1-16 allowed)")
            return false
        }
        guard qdPA % 128 == 0, qdLen >= need, let qd = memMap(host, qdPA, need, 1) else {
            guestError("ACTIVATE_DEV: queue descriptor table at 0x\(String(qdPA, radix: 16)) (\(qdLen) bytes) is misaligned, short or not guest RAM")
            return false
        }
        var m = ds.loadUnaligned(fromByteOffset: Shared.mtu, as: UInt32.self)
        if m == 0 { m = 1500 }
        guard (Limits.minMTU...Limits.maxMTU).contains(m) else {
            guestError("ACTIVATE_DEV: MTU \(m) outside 60-9000")
            return false
        }
        let intrs = Int(ds.load(fromByteOffset: Shared.numIntrs, as: UInt8.self))
        let eventIdx = Int(ds.load(fromByteOffset: Shared.eventIntrIdx, as: UInt8.self))
        guard intrs <= Limits.maxIntrs, eventIdx < max(intrs, 1) else {
            guestError("ACTIVATE_DEV: \(intrs) interrupts, event interrupt \(eventIdx)")
            return false
        }

        var tx: [TxQueue] = []
        for i in 0..<numTx {
            let d = qd + i * QueueDesc.size
            let q = TxQueue(id: i)
            q.desc = d
            guard let ring = mapRing(d, QueueDesc.txRingBasePA, QueueDesc.txRingSize, max: Limits.ringMax, multipleOf32: true, what: "tx queue \(i) ring"),
                  let comp = mapRing(d, QueueDesc.txCompRingBasePA, QueueDesc.txCompRingSize, max: Limits.ringMax, multipleOf32: true, what: "tx queue \(i) completion ring")
            else { return false }
            q.ring = ring
            q.comp = comp
            q.intrIdx = Int(d.load(fromByteOffset: QueueDesc.intrIdx, as: UInt8.self))
            guard q.intrIdx < max(intrs, 1) else {
                guestError("ACTIVATE_DEV: tx queue \(i) interrupt \(q.intrIdx) of \(intrs)")
                return false
            }
            tx.append(q)
        }
        var rx: [RxQueue] = []
        for i in 0..<numRx {
            let d = qd + (numTx + i) * QueueDesc.size
            let q = RxQueue(id: i)
            q.desc = d
            guard let r1 = mapRing(d, QueueDesc.rxRingBasePA, QueueDesc.rxRingSize, max: Limits.ringMax, multipleOf32: true, what: "rx queue \(i) ring 1"),
                  let r2 = mapRing(d, QueueDesc.rxRingBasePA + 8, QueueDesc.rxRingSize + 4, max: Limits.ringMax, multipleOf32: true, what: "rx queue \(i) ring 2", optional: true),
                  let comp = mapRing(d, QueueDesc.rxCompRingBasePA, QueueDesc.rxCompRingSize, max: Limits.compRingMax, multipleOf32: false, what: "rx queue \(i) completion ring")
            else { return false }
            q.rings = [r1, r2]
            q.comp = comp
            q.intrIdx = Int(d.load(fromByteOffset: QueueDesc.intrIdx, as: UInt8.self))
            guard q.intrIdx < max(intrs, 1) else {
                guestError("ACTIVATE_DEV: rx queue \(i) interrupt \(q.intrIdx) of \(intrs)")
                return false
            }
            rx.append(q)
        }

        shared = ds
        mtu = m
        numIntrs = max(intrs, 1)
        eventIntrIdx = eventIdx
        autoMask = ds.load(fromByteOffset: Shared.autoMask, as: UInt8.self) != 0
        txQueues = tx
        rxQueues = rx
        for q in tx {
            // The device asks for a TXPROD write after every frame (txThreshold 1).
            q.desc!.storeBytes(of: UInt32(0), toByteOffset: QueueDesc.txNumDeferred, as: UInt32.self)
            q.desc!.storeBytes(of: UInt32(1), toByteOffset: QueueDesc.txThreshold, as: UInt32.self)
        }
        for q in rx { q.desc!.storeBytes(of: UInt8(0), toByteOffset: QueueDesc.updateRxProd, as: UInt8.self) }
        readFilters()
        readFeatures()
        active = true
        return true
    }

    /// Maps a ring described at `baseOffset`/`sizeOffset` in a queue descriptor. Sizes
    /// must be multiples of 32 (completion rings: any size) up to `max`; `optional`
    /// allows size 0 (an rx queue without ring 2). nil after logging when invalid.
    private func mapRing(_ d: UnsafeMutableRawPointer, _ baseOffset: Int, _ sizeOffset: Int, max: UInt32,
                         multipleOf32: Bool, what: String, optional: Bool = false) -> Ring? {
        let pa = d.loadUnaligned(fromByteOffset: baseOffset, as: UInt64.self)
        let size = d.loadUnaligned(fromByteOffset: sizeOffset, as: UInt32.self)
        if optional && size == 0 { return Ring() }
        guard size > 0, size <= max, !multipleOf32 || size % Limits.ringAlign == 0, pa % 16 == 0 else {
            guestError("ACTIVATE_DEV: \(what): \(size) descriptors at 0x\(String(pa, radix: 16)) (1-\(max), multiple of 32, 16-byte aligned)")
            return nil
        }
        guard let p = memMap(host, pa, Int(size) * 16, 1) else {
            guestError("ACTIVATE_DEV: \(what) at 0x\(String(pa, radix: 16)) is not guest RAM")
            return nil
        }
        return Ring(base: p, gpa: pa, size: size, index: 0, gen: 1)
    }

    func deactivate() {
        active = false
        shared = nil
        txQueues = []
        rxQueues = []
        if features & Feature.lro != 0 { _ = setRxLarge(port, 0) }
        features = 0
        rssEnabled = false
        rxMode = 0
        multicast = []
        numIntrs = 1
        eventIntrIdx = 0
        autoMask = false
        pending = 0
        if rxWaiting {
            // Frames the switch holds are dropped now (no receiver), not kept forever.
            rxWaiting = false
            rxReady(port)
        }
    }

    /// UPDATE_RX_MODE / _MAC_FILTERS / _VLAN_FILTERS: the rx filter configuration.
    func readFilters() {
        guard let ds = shared else { return }
        rxMode = ds.loadUnaligned(fromByteOffset: Shared.rxMode, as: UInt32.self)
        let len = Int(ds.loadUnaligned(fromByteOffset: Shared.mfTableLen, as: UInt16.self))
        let pa = ds.loadUnaligned(fromByteOffset: Shared.mfTablePA, as: UInt64.self)
        multicast = []
        if len >= 6 {
            var table = [UInt8](repeating: 0, count: len - len % 6)
            if table.withUnsafeMutableBytes({ memRead(host, pa, $0.baseAddress, $0.count) }) == HV_OK {
                for i in stride(from: 0, to: table.count, by: 6) { multicast.append(Array(table[i..<i + 6])) }
            } else {
                guestError("multicast filter table at 0x\(String(pa, radix: 16)) is not guest RAM")
            }
        }
        for i in 0..<128 { vlanFilter[i] = ds.loadUnaligned(fromByteOffset: Shared.vfTable + 4 * i, as: UInt32.self) }
    }

    /// UPDATE_FEATURE / UPDATE_RSSIDT: features and the RSS configuration.
    func readFeatures() {
        guard let ds = shared else { return }
        features = ds.loadUnaligned(fromByteOffset: Shared.uptFeatures, as: UInt64.self)
        // With LRO the driver takes TCP frames above its MTU: offloaded sends from other
        // NICs reach this one whole instead of segmented.
        _ = setRxLarge(port, features & Feature.lro != 0 ? 1 : 0)
        rssEnabled = false
        guard features & Feature.rss != 0, rxQueues.count > 1 else { return }
        let pa = ds.loadUnaligned(fromByteOffset: Shared.rssConfPA, as: UInt64.self)
        var conf = [UInt8](repeating: 0, count: RSSConf.size)
        guard conf.withUnsafeMutableBytes({ memRead(host, pa, $0.baseAddress, $0.count) }) == HV_OK else {
            guestError("RSS configuration at 0x\(String(pa, radix: 16)) is not guest RAM")
            return
        }
        func u16(_ o: Int) -> UInt16 { UInt16(conf[o]) | UInt16(conf[o + 1]) << 8 }
        let hashType = u16(0), hashFunc = u16(2), keySize = Int(u16(4)), tableSize = Int(u16(6))
        guard hashFunc == RSSConf.toeplitz, (1...RSSConf.maxKey).contains(keySize),
              (1...RSSConf.maxTable).contains(tableSize) else {
            guestError("RSS configuration: function \(hashFunc), key \(keySize) bytes, table \(tableSize) entries")
            return
        }
        rssHashType = hashType
        rssKey = Array(conf[8..<8 + RSSConf.maxKey])
        for i in keySize..<RSSConf.maxKey { rssKey[i] = 0 }
        rssTableSize = tableSize
        for i in 0..<tableSize {
            let q = conf[48 + i]
            rssTable[i] = Int(q) < rxQueues.count ? q : 0
        }
        rssEnabled = true
    }

    func writeQueueStatus() {
        for q in txQueues { writeStatus(q.desc, q.stopped, q.error) }
        for q in rxQueues { writeStatus(q.desc, q.stopped, q.error) }
    }

    private func writeStatus(_ d: UnsafeMutableRawPointer?, _ stopped: Bool, _ error: UInt32) {
        guard let d else { return }
        d.storeBytes(of: UInt8(stopped ? 1 : 0), toByteOffset: QueueDesc.stopped, as: UInt8.self)
        d.storeBytes(of: error, toByteOffset: QueueDesc.error, as: UInt32.self)
    }

    func writeStats() {
        for q in txQueues { writeCounters(q.desc, q.stats) }
        for q in rxQueues { writeCounters(q.desc, q.stats) }
    }

    private func writeCounters(_ d: UnsafeMutableRawPointer?, _ s: QueueStats) {
        guard let d else { return }
        for i in 0..<10 { d.storeBytes(of: s.v[i], toByteOffset: QueueDesc.stats + 8 * i, as: UInt64.self) }
    }

    /// A queue stops on a malformed descriptor, as the device reports it: the queue's
    /// status says why, and the event interrupt carries TQERR / RQERR.
    func stopTx(_ q: TxQueue, _ error: UInt32, _ why: String) {
        guestError("tx queue \(q.id): \(why); queue stopped")
        q.stopped = true
        q.error = error
        postEvent(Event.tqErr)
    }

    func stopRx(_ q: RxQueue, _ error: UInt32, _ why: String) {
        guestError("rx queue \(q.id): \(why); queue stopped")
        q.stopped = true
        q.error = error
        postEvent(Event.rqErr)
    }
}
