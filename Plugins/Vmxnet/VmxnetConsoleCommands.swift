import PluginABI
import PluginKit

// Console commands (ABI 1.2): `device VM ethernetN state|queues|stats`. The model is
// thread-safe, so the host calls these without its device lock: each takes the device's
// own mutex, as a register access does.

/// Runs `body` with the device's mutex held and writes what it returns.
private func report(_ dev: OpaquePointer?, _ buf: UnsafeMutablePointer<CChar>?, _ len: Int,
                    _ body: (VmxnetDevice) -> String) {
    guard let d = InstanceHandle.object(dev, as: VmxnetDevice.self), d.lockLive() else { return }
    let text = body(d)
    d.finish()
    PluginDeclarations.write(text, to: buf, capacity: len)
}

private func hex<T: BinaryInteger>(_ v: T) -> String { "0x" + String(v, radix: 16) }

private let stateCommand: PluginDeclarations.TextCommand = { dev, buf, len in
    report(dev, buf, len) { d in
        "revision \(d.revision) upt \(d.uptVersion) \(d.active ? "active" : "quiesced") link \(d.linkUp ? "up" : "down") " +
            "mtu \(d.mtu) features \(hex(d.features)) rxMode \(hex(d.rxMode)) multicast \(d.multicast.count) " +
            "rss \(d.rssEnabled ? "on" : "off") intrs \(d.numIntrs) imr \(hex(d.imr)) intx \(d.intxLevel ? 1 : 0) " +
            "guestErrors \(d.guestErrors)"
    }
}

private func ring(_ r: Ring) -> String { "\(r.index)/\(r.size) gen \(r.gen)" }

private let queuesCommand: PluginDeclarations.TextCommand = { dev, buf, len in
    report(dev, buf, len) { d in
        let tx = d.txQueues.map { q in
            "tx\(q.id) ring \(ring(q.ring)) comp \(ring(q.comp)) intr \(q.intrIdx)" + (q.stopped ? " stopped error \(hex(q.error))" : "")
        }
        let rx = d.rxQueues.map { q in
            "rx\(q.id) ring0 \(ring(q.rings[0])) ring1 \(ring(q.rings[1])) comp \(ring(q.comp)) intr \(q.intrIdx)" +
                (q.stopped ? " stopped error \(hex(q.error))" : "")
        }
        return (tx + rx).isEmpty ? "no queues (the driver has not activated the device)" : (tx + rx).joined(separator: "\n")
    }
}

private let statsCommand: PluginDeclarations.TextCommand = { dev, buf, len in
    report(dev, buf, len) { d in
        let tx = d.txQueues.map { q in
            let s = q.stats.v
            return "tx\(q.id) ucast \(s[TxStat.ucastPkts]) mcast \(s[TxStat.mcastPkts]) bcast \(s[TxStat.bcastPkts]) " +
                "tso \(s[TxStat.tsoPkts]) errors \(s[TxStat.errors]) discards \(s[TxStat.discards])"
        }
        let rx = d.rxQueues.map { q in
            let s = q.stats.v
            return "rx\(q.id) ucast \(s[RxStat.ucastPkts]) mcast \(s[RxStat.mcastPkts]) bcast \(s[RxStat.bcastPkts]) " +
                "outOfBuffers \(s[RxStat.outOfBuf]) errors \(s[RxStat.errors])"
        }
        return (tx + rx).isEmpty ? "no queues (the driver has not activated the device)" : (tx + rx).joined(separator: "\n")
    }
}

let vmxnetCommands = PluginDeclarations.table([
    PluginDeclarations.textCommand("state", "revision, activation, link, MTU, features, receive mode, interrupts", stateCommand),
    PluginDeclarations.textCommand("queues", "each queue's ring positions, sizes, generations and interrupt", queuesCommand),
    PluginDeclarations.textCommand("stats", "each queue's UPT1 counters", statsCommand),
])
let vmxnetCommandCount: UInt32 = 3
