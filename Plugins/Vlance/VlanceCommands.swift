import Glibc
import PluginABI
import PluginKit

// Declared keys and console commands (ABI 1.2): `hvhost plugins --keys vlance`,
// `device VM ethernetN regs|csr N|bcr N|rings|counters`. The model is thread-safe, so
// the host calls these without its device lock: each takes the device's own mutex.

/// The keys vlanceCreate reads (both are also the host's own NIC keys).
let vlanceKeys: UnsafePointer<hv_config_key> = {
    func key(_ name: StaticString, _ help: StaticString) -> hv_config_key {
        hv_config_key(struct_size: UInt32(MemoryLayout<hv_config_key>.size), type: HV_KEY_MAC, name: cString(name),
                      min: 0, max: -1, choices: nil, default_value: nil, help: cString(help))
    }
    let keys = UnsafeMutablePointer<hv_config_key>.allocate(capacity: 2)
    keys[0] = key("address", "static MAC address (00:50:56:00:00:00 to 00:50:56:3F:FF:FF)")
    keys[1] = key("generatedAddress", "the address the host generated (written by ESX and suspend files)")
    return UnsafePointer(keys)
}()
let vlanceKeyCount: UInt32 = 2

/// Runs `body` with the device's mutex held; nothing when the instance is gone.
private func locked(_ dev: OpaquePointer?, _ body: (VlanceDevice) -> Void) {
    guard let d = InstanceHandle.object(dev, as: VlanceDevice.self), d.lockLive() else { return }
    body(d)
    d.finish()
}

private func write(_ text: String, _ buf: UnsafeMutablePointer<CChar>?, _ len: Int) {
    guard let buf, len > 0 else { return }
    let bytes = Array(text.utf8.prefix(len - 1))
    bytes.withUnsafeBufferPointer { UnsafeMutableRawPointer(buf).copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
    buf[bytes.count] = 0
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

let vlanceCommands: UnsafePointer<hv_command> = {
    let text = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
    text[0] = HV_ARG_TEXT_OUT
    let index = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
    index[0] = HV_ARG_U32
    let indexName = UnsafeMutablePointer<UnsafePointer<CChar>?>.allocate(capacity: 1)
    indexName[0] = cString("index")
    func command(_ name: StaticString, _ help: StaticString, _ fn: UnsafeRawPointer, result: UInt32,
                 args: UnsafeMutablePointer<UInt32>, names: UnsafeMutablePointer<UnsafePointer<CChar>?>?) -> hv_command {
        hv_command(struct_size: UInt32(MemoryLayout<hv_command>.size), flags: 0, name: cString(name), help: cString(help),
                   fn: unsafeBitCast(fn, to: (@convention(c) () -> Void).self), result: result, arg_count: 1,
                   args: UnsafePointer(args), arg_names: names.map { UnsafePointer($0) })
    }
    func raw<T>(_ f: T) -> UnsafeRawPointer { unsafeBitCast(f, to: UnsafeRawPointer.self) }
    let table = UnsafeMutablePointer<hv_command>.allocate(capacity: 5)
    table[0] = command("regs", "the main CSRs and BCRs, the address PROM, link and INTx", raw(regsCommand),
                       result: HV_ARG_VOID, args: text, names: nil)
    table[1] = command("csr", "one control and status register (0..127)", raw(csrCommand), result: HV_ARG_U32,
                       args: index, names: indexName)
    table[2] = command("bcr", "one bus configuration register (0..31)", raw(bcrCommand), result: HV_ARG_U32,
                       args: index, names: indexName)
    table[3] = command("rings", "receive and transmit ring bases, lengths and positions", raw(ringsCommand),
                       result: HV_ARG_VOID, args: text, names: nil)
    table[4] = command("counters", "frames sent and received, send failures, guest errors", raw(countersCommand),
                       result: HV_ARG_VOID, args: text, names: nil)
    return UnsafePointer(table)
}()
let vlanceCommandCount: UInt32 = 5
