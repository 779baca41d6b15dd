import PluginABI
import PluginKit

// Console command (ABI 1.2): `device VM scsiN state`. Taken under the device's mutex, as
// a register access is.

private let stateCommand: PluginDeclarations.TextCommand = { dev, buf, len in
    guard let d = InstanceHandle.object(dev, as: BusLogicDevice.self), d.lockLive() else { return }
    let mailboxes: String
    switch d.mailboxes {
    case .none: mailboxes = "none"
    case .legacy24(let base, let count): mailboxes = "24-bit \(count) at 0x\(String(base, radix: 16))"
    case .extended32(let base, let count): mailboxes = "32-bit \(count) at 0x\(String(base, radix: 16))"
    }
    let isa = d.isaPort == BusLogicDevice.isaDisabled ? "disabled" : "window \(d.isaPort)"
    let text = "status 0x\(String(d.statusRegister(), radix: 16)) interrupts 0x\(String(d.interrupts, radix: 16)) " +
        "\(d.interruptsEnabled ? "enabled" : "disabled") mailboxes \(mailboxes) out \(d.outgoingIndex) in \(d.incomingIndex) " +
        "inFlight \(BusLogicDevice.maxInFlight - d.freeSlots.count) isa \(isa) intx \(d.intxLevel ? 1 : 0) " +
        "guestErrors \(d.guestErrors)"
    d.finish()
    PluginDeclarations.write(text, to: buf, capacity: len)
}

let busLogicCommands = PluginDeclarations.table([
    PluginDeclarations.textCommand("state", "status, interrupts, mailbox area and positions, requests in flight, ISA window", stateCommand),
])
let busLogicCommandCount: UInt32 = 1
