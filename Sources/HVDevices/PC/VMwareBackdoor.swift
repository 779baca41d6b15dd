import HVSupport

/// The general registers a VMware backdoor call passes its command in and its answers
/// back in (the backdoor is an `IN` whose other registers are arguments).
package struct BackdoorRegisters: Equatable, Sendable {
    package var rax: UInt64
    package var rbx: UInt64
    package var rcx: UInt64
    package var rdx: UInt64
    package var rsi: UInt64
    package var rdi: UInt64

    package init(rax: UInt64 = 0, rbx: UInt64 = 0, rcx: UInt64 = 0, rdx: UInt64 = 0, rsi: UInt64 = 0, rdi: UInt64 = 0) {
        (self.rax, self.rbx, self.rcx, self.rdx, self.rsi, self.rdi) = (rax, rbx, rcx, rdx, rsi, rdi)
    }
}

/// VMware's backdoor, ports 0x5658-0x565B: a 32-bit `IN` at 0x5658 with EAX holding the
/// magic 'VMXh' is a call whose command number is CX. VMkernel services (the balloon,
/// the absolute pointer) claim command numbers; the call runs on the vCPU thread that
/// made it, with the guest's registers, and what the handler leaves in them is what
/// the guest sees after the `IN`. Command 10 (GETVERSION) is built in, as every
/// VMware-aware guest probes it first.
///
/// On the port bus the backdoor is also an ordinary device, so nothing else can claim
/// its ports: an access that is not a call (wrong width, no magic, an `OUT`) reads as
/// all ones and writes are ignored, as on VMware's platform with the backdoor closed.
package final class VMwareBackdoor: BusDevice, @unchecked Sendable {
    package typealias Command = (_ vcpu: Int, _ registers: inout BackdoorRegisters) -> Void

    package static let port: UInt16 = 0x5658
    package static let portCount: UInt16 = 4
    package static let magic: UInt32 = 0x564D_5868
    package static let getVersion: UInt16 = 10
    /// What GETVERSION answers in EAX (ESX 2.x's backdoor version 6); ECX gets the
    /// product type (2: ESX Server).
    package static let version: UInt32 = 6
    package static let productESX: UInt32 = 2

    package struct CommandClaimed: Error, CustomStringConvertible {
        package let command: UInt16
        package let owner: String
        package var description: String { "VMware backdoor command \(command) is already claimed by \(owner)" }
    }

    /// The balloon's own port and magic ('Elmo'), as Linux's `vmw_balloon` calls it: a
    /// 32-bit `IN` whose command number is ECX.
    package static let balloonPort: UInt16 = 0x5670
    package static let balloonMagic: UInt32 = 0x456C_6D6F

    private let lock = HostLock()
    private var balloonHandler: ((inout BackdoorRegisters) -> Void)?
    private var commands: [UInt16: (name: String, handler: Command)] = [:]

    package init() {
        commands[Self.getVersion] = ("getversion", { _, r in
            r.rax = UInt64(Self.version)
            r.rbx = UInt64(Self.magic)
            r.rcx = UInt64(Self.productESX)
        })
    }

    /// Claims command number `command` for `handler`; throws when another service has it.
    package func register(command: UInt16, name: String, _ handler: @escaping Command) throws {
        try lock.withLock {
            if let owner = commands[command] { throw CommandClaimed(command: command, owner: owner.name) }
            commands[command] = (name, handler)
        }
    }

    package func unregister(command: UInt16) {
        lock.withLock { _ = commands.removeValue(forKey: command) }
    }

    /// Routes balloon-port calls to `handler` (nil: calls there are not answered).
    package func setBalloon(_ handler: ((inout BackdoorRegisters) -> Void)?) {
        lock.withLock { balloonHandler = handler }
    }

    /// A backdoor call from vCPU `vcpu`. Returns false when the registers do not make a
    /// call (no magic in EAX): the `IN` then reads all ones and the other registers stay.
    /// An unclaimed command leaves every register as it was (EAX keeps the magic).
    @discardableResult
    package func call(vcpu: Int, registers: inout BackdoorRegisters) -> Bool {
        if UInt16(truncatingIfNeeded: registers.rdx) == Self.balloonPort {
            guard UInt32(truncatingIfNeeded: registers.rax) == Self.balloonMagic,
                  let handler = lock.withLock({ balloonHandler }) else { return false }
            handler(&registers)
            return true
        }
        guard UInt32(truncatingIfNeeded: registers.rax) == Self.magic else { return false }
        let command = UInt16(truncatingIfNeeded: registers.rcx)
        lock.withLock { commands[command]?.handler }?(vcpu, &registers)
        return true
    }

    // MARK: BusDevice (accesses that are not calls)

    package func read(offset: UInt64, data: UnsafeMutableRawBufferPointer) {
        for i in data.indices { data[i] = 0xFF }
    }

    package func write(offset: UInt64, data: UnsafeRawBufferPointer) {}
}
