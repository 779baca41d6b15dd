import PluginABI
import PluginKit

// Console command (ABI 1.2): `device VM scsiN state`. Taken under the device's mutex, as
// a register access is.

private let stateCommand: PluginDeclarations.TextCommand = { dev, buf, len in
    guard let d = InstanceHandle.object(dev, as: LSILogicDevice.self) else { return }
    d.lock()
    let handshake: String
    switch d.handshake {
    case .idle: handshake = "idle"
    case .receiving(let expected, let dwords): handshake = "receiving \(dwords.count)/\(expected) dwords"
    case .replying(let words, let index): handshake = "replying \(index)/\(words.count) words"
    }
    let text = "ioc \(d.state) whoInit \(d.whoInit) handshake \(handshake) intMask 0x\(String(d.intMask, radix: 16)) " +
        "doorbellInterrupt \(d.doorbellInterrupt ? 1 : 0) replyFrameSize \(d.replyFrameSize) " +
        "freeReplyFrames \(d.freeFrames.count) postedReplies \(d.postFIFO.count) " +
        "inFlight \(LSILogicDevice.globalCredits - d.freeSlots.count) events \(d.eventsOn ? "on" : "off") " +
        "intx \(d.intxLevel ? 1 : 0) guestErrors \(d.guestErrors)"
    d.finish()
    PluginDeclarations.write(text, to: buf, capacity: len)
}

let lsiCommands = PluginDeclarations.table([
    PluginDeclarations.textCommand("state", "IOC state, doorbell handshake, reply FIFOs, requests in flight, interrupts", stateCommand),
])
let lsiCommandCount: UInt32 = 1
