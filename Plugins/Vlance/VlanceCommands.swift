import Glibc
import PluginABI
import PluginKit

// Declared keys and console commands (ABI 1.2): `hvhost plugins --keys vlance`,
// `device VM ethernetN regs|csr N|bcr N|rings|counters`. The model is thread-safe, so
// the host calls these without its device lock: each takes the device's own mutex.

/// The keys vlanceCreate reads (both are also the host's own NIC keys).
let vlanceKeys = PluginDeclarations.table([
    PluginDeclarations.key(HV_KEY_MAC, "address", "static MAC address (00:50:56:00:00:00 to 00:50:56:3F:FF:FF)"),
    PluginDeclarations.key(HV_KEY_MAC, "generatedAddress", "the address the host generated (written by ESX and suspend files)"),
])
let vlanceKeyCount: UInt32 = 2

/// Runs `body` with the device's mutex held; nothing when the instance is gone.
private func locked(_ dev: OpaquePointer?, _ body: (VlanceDevice) -> Void) {
    guard let d = InstanceHandle.object(dev, as: VlanceDevice.self), d.lockLive() else { return }
    body(d)
    d.finish()
}

private func write(_ text: String, _ buf: UnsafeMutablePointer<CChar>?, _ len: Int) {
    PluginDeclarations.write(text, to: buf, capacity: len)
}

private func hex(_ v: UInt16) -> String { "0x" + String(v, radix: 16) }

private let regsCommand: @convention(c) (OpaquePointer?, UnsafeMutablePointer<CChar>?, Int) -> Void = { dev, buf, len in
    locked(dev) { d in
        let mac = (0..<6).map { String(format2(d.prom[$0])) }.joined(separator: ":")
        write("csr0 \(hex(d.csr[0])) csr3 \(hex(d.csr[3])) csr4 \(hex(d.csr[4])) csr5 \(hex(d.csr[5])) " +
              "csr15 \(hex(d.csr[15])) csr58 \(hex(d.csr[58])) rap \(d.rap)\n" +
              "bcr2 \(hex(d.bcr[BCR.MC])) bcr9 \(hex(d.bcr[BCR.FDC])) bcr18 \(hex(d.bcr[BCR.BSBC])) " +
              "bcr20 \(hex(d.bcr[BCR.SWS])) aprom \(mac) link \(d.linkUp ? "up" : "down") intx \(d.intxLevel ? 1 : 0)",
              buf, len)
    }
}

private func format2(_ b: UInt8) -> String { b < 16 ? "0" + String(b, radix: 16) : String(b, radix: 16) }

private let csrCommand: @convention(c) (OpaquePointer?, UInt32) -> UInt32 = { dev, index in
    var v: UInt32 = 0xFFFF_FFFF
    if index < 128 { locked(dev) { v = UInt32($0.csr[Int(index)]) } }
    return v
}

private let bcrCommand: @convention(c) (OpaquePointer?, UInt32) -> UInt32 = { dev, index in
    var v: UInt32 = 0xFFFF_FFFF
    if index < UInt32(BCR.count) { locked(dev) { v = UInt32($0.bcr[Int(index)]) } }
    return v
}

private let ringsCommand: @convention(c) (OpaquePointer?, UnsafeMutablePointer<CChar>?, Int) -> Void = { dev, buf, len in
    locked(dev) { d in
        write("rx ring 0x\(String(d.rdra, radix: 16)) len \(d.rxLen) next \(d.rxIndex) waiting \(d.rxWaiting)\n" +
              "tx ring 0x\(String(d.tdra, radix: 16)) len \(d.txLen) next \(d.txIndex) stalled \(d.txStalled)", buf, len)
    }
}

private let countersCommand: @convention(c) (OpaquePointer?, UnsafeMutablePointer<CChar>?, Int) -> Void = { dev, buf, len in
    locked(dev) { d in
        write("framesSent \(d.framesSent) framesReceived \(d.framesReceived) sendFailures \(d.sendFailures) " +
              "guestErrors \(d.guestErrors)", buf, len)
    }
}

let vlanceCommands = PluginDeclarations.table([
    PluginDeclarations.textCommand("regs", "the main CSRs and BCRs, the address PROM, link and INTx", regsCommand),
    PluginDeclarations.u32Command("csr", "one control and status register (0..127)", argument: "index", csrCommand),
    PluginDeclarations.u32Command("bcr", "one bus configuration register (0..31)", argument: "index", bcrCommand),
    PluginDeclarations.textCommand("rings", "receive and transmit ring bases, lengths and positions", ringsCommand),
    PluginDeclarations.textCommand("counters", "frames sent and received, send failures, guest errors", countersCommand),
])
let vlanceCommandCount: UInt32 = 5
