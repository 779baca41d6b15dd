import HVSupport

/// One VM's PC chipset: dual 8259 PIC, 8254 PIT (+ port 0x61), MC146818 RTC/CMOS,
/// 16550 UART (COM1), 8042 keyboard controller, isa-debug-exit port, 82093AA I/O APIC
/// and one xAPIC local APIC per vCPU.
///
/// **Locking.** One mutex serialises every entry into these models: port and MMIO bus
/// handlers, the local-APIC page accessors, timer callbacks, ``setGSI(_:level:)``,
/// ``deliverMSI(address:data:)``, the interrupt-injection queries and serial input.
/// Callbacks (``onInterruptPending``, ``onDebugExit``, ``onResetRequest``, ``onINIT``,
/// ``onSIPI``) run after the mutex is released, on whichever thread caused them; they may
/// call back into the chipset. The serial sink's `transmit` is the one call made with
/// the mutex held.
///
/// **Interrupt routing.** ISA IRQs go to both the PIC and the I/O APIC (IRQ 0 to pin 2),
/// as on QEMU's PC. The PIC's INTR reaches a vCPU whose LINT0 is ExtINT and unmasked,
/// the BSP while its local APIC is software-disabled, and any vCPU the I/O APIC sent an
/// ExtINT message to. Local-APIC vectors take precedence over the PIC.
///
/// **vCPU loop contract.** Before entering the guest, a vCPU thread checks
/// ``takeNMI(vcpu:)`` and ``nextInterrupt(vcpu:)``; when the guest can take an interrupt
/// it calls ``acknowledgeInterrupt(vcpu:)`` and injects the vector it returns (nil: the
/// request went away; inject nothing). Accesses to 0xFEE00000-0xFEE00FFF go to
/// ``lapicRead(vcpu:offset:size:)`` / ``lapicWrite(vcpu:offset:size:value:)``. With
/// KVM's user-space irqchip, mirror `kvm_run.cr8` into ``setTaskPriority(vcpu:_:)``
/// after each exit and back from ``taskPriority(vcpu:)`` before each entry.
package final class Chipset: @unchecked Sendable {
    package static let lapicBase: UInt64 = LocalAPIC.defaultBase
    static let lapicSize: UInt64 = 0x1000
    static let ioapicBase: UInt64 = IOAPIC.defaultBase

    package let configuration: ChipsetConfiguration
    package let clock: VMClock

    // The models. Touch them only inside `locked`.
    let pic: PIC8259
    let pit: PIT8254
    let rtc: RTCCMOS
    let com1: UART16550?
    let keyboard: I8042
    let vmmouse: VMMouse
    package let debugExit: DebugExit
    /// VMware's backdoor; VMkernel services claim its commands.
    package let backdoor = VMwareBackdoor()
    let controlPortA: SystemControlPortA
    let firmwareDebug: FirmwareDebugPort?
    let ioapic: IOAPIC
    let lapics: [LocalAPIC]

    private enum Deferred: Sendable {
        case kick(Int), debugExit(UInt8), reset, initIPI(Int), startup(Int, UInt8)
    }

    private struct Callbacks: Sendable {
        var onInterruptPending: @Sendable (Int) -> Void = { _ in }
        var onDebugExit: @Sendable (UInt8) -> Void = { _ in }
        var onResetRequest: @Sendable () -> Void = {}
        var onINIT: @Sendable (Int) -> Void = { _ in }
        var onSIPI: @Sendable (Int, UInt8) -> Void = { _, _ in }
    }

    private let mutex = HostLock()
    private let callbacks = HostLocked(Callbacks())
    private var deferred: [Deferred] = []
    private var kickQueued: [Bool]
    private var timers: [DeviceTimer] = []
    private var armed: [UInt64?] = []

    /// Builds the chipset in its reset state. Timers are created on `timers`, which the
    /// caller starts and stops and which must outlive every use of the chipset; COM1's
    /// sink starts delivering input at once.
    package init(configuration: ChipsetConfiguration, clock: VMClock, timers queue: TimerQueue) throws {
        let n = configuration.vcpuCount
        guard (1...254).contains(n) else { throw ChipsetError.invalidVCPUCount(n) }
        if configuration.com1Enabled {
            let irq = configuration.com1IRQ
            guard (0..<16).contains(irq), irq != 2 else { throw ChipsetError.invalidIRQ(name: "COM1", irq: irq) }
        }
        self.configuration = configuration
        self.clock = clock
        let now: () -> UInt64 = { clock.now() }
        pic = PIC8259()
        pit = PIT8254(now: now)
        rtc = RTCCMOS(now: now)
        com1 = configuration.com1Enabled
            ? UART16550(base: configuration.com1Base, irq: configuration.com1IRQ, now: now) : nil
        keyboard = I8042()
        vmmouse = VMMouse()
        debugExit = DebugExit()
        controlPortA = SystemControlPortA()
        firmwareDebug = configuration.firmwareLog.map { FirmwareDebugPort(sink: $0) }
        ioapic = IOAPIC()
        lapics = (0..<n).map { LocalAPIC(index: $0, now: now) }
        kickQueued = [Bool](repeating: false, count: n)

        wireModels()
        try claimVMMouseCommands()
        for slot in 0..<(3 + n) {
            timers.append(queue.makeTimer { [weak self] in self?.timerFired(slot) })
            armed.append(nil)
        }
        rtc.setMemoryLayout(belowFourGiB: configuration.memoryBelow4GiB,
                            aboveFourGiB: configuration.memoryAbove4GiB, processors: n)
        if !configuration.bootOrder.isEmpty { rtc.setBootOrder(configuration.bootOrder) }
        locked { resetModels() }
        configuration.serial?.startInput { [weak self] bytes in
            self?.serialInput(bytes) ?? bytes.count
        }
    }

    // No deinit work: armed timers may still fire once; their callbacks hold the chipset
    // weakly and do nothing once it is gone. (Cancelling here would touch the TimerQueue,
    // which DeviceTimer references unowned and which may already be gone.)

    private func wireModels() {
        pic.onOutputChange = { [unowned self] level in
            guard level else { return }
            for v in lapics.indices where picRouted(to: v) { kick(v) }
        }
        pit.irq0 = { [unowned self] in setISAIRQ(0, level: $0) }
        rtc.irq8 = { [unowned self] in setISAIRQ(8, level: $0) }
        if let com1 {
            let irq = com1.irq
            com1.irqLine = { [unowned self] in setISAIRQ(irq, level: $0) }
            if let sink = configuration.serial {
                com1.transmit = { sink.transmit($0) }
            }
        }
        keyboard.irqLine = { [unowned self] irq, level in setISAIRQ(irq, level: level) }
        keyboard.resetRequest = { [unowned self] in deferred.append(.reset) }
        controlPortA.resetRequest = { [unowned self] in deferred.append(.reset) }
        debugExit.exit = { [unowned self] in deferred.append(.debugExit($0)) }
        ioapic.deliver = { [unowned self] in route($0, shorthand: 0, source: nil) }
        for l in lapics {
            let i = l.index
            l.signal = { [unowned self] in kick(i) }
            l.eoiBroadcast = { [unowned self] in ioapic.endOfInterrupt(vector: $0) }
            l.sendIPI = { [unowned self] message, shorthand in _ = route(message, shorthand: shorthand, source: i) }
        }
    }

    // MARK: Callbacks

    /// Something may have become injectable for vCPU `index`: wake or kick it.
    package var onInterruptPending: @Sendable (Int) -> Void {
        get { callbacks.withLock { $0.onInterruptPending } }
        set { callbacks.withLock { $0.onInterruptPending = newValue } }
    }

    /// The guest wrote `value` to the debug-exit port: stop with status `(value << 1) | 1`.
    package var onDebugExit: @Sendable (UInt8) -> Void {
        get { callbacks.withLock { $0.onDebugExit } }
        set { callbacks.withLock { $0.onDebugExit = newValue } }
    }

    /// The guest pulsed the reset line (8042 command 0xFE or output-port bit 0, port 0x92
    /// bit 0, or the PCI host bridge's reset control register at 0xCF9).
    package var onResetRequest: @Sendable () -> Void {
        get { callbacks.withLock { $0.onResetRequest } }
        set { callbacks.withLock { $0.onResetRequest = newValue } }
    }

    /// An INIT IPI reached vCPU `index` (its local APIC is already reset).
    package var onINIT: @Sendable (Int) -> Void {
        get { callbacks.withLock { $0.onINIT } }
        set { callbacks.withLock { $0.onINIT = newValue } }
    }

    /// A STARTUP IPI with `vector` (start at physical `vector << 12`) reached vCPU `index`.
    package var onSIPI: @Sendable (Int, UInt8) -> Void {
        get { callbacks.withLock { $0.onSIPI } }
        set { callbacks.withLock { $0.onSIPI = newValue } }
    }

    // MARK: Locking

    @discardableResult
    func locked<R>(_ body: () -> R) -> R {
        let (result, work) = mutex.withLock { () -> (R, [Deferred]) in
            let r = body()
            syncTimers()
            let w = deferred
            if !w.isEmpty {
                deferred = []
                for case .kick(let v) in w { kickQueued[v] = false }
            }
            return (r, w)
        }
        if !work.isEmpty { perform(work) }
        return result
    }

    private func perform(_ work: [Deferred]) {
        let cb = callbacks.withLock { $0 }
        for w in work {
            switch w {
            case .kick(let v): cb.onInterruptPending(v)
            case .debugExit(let v): cb.onDebugExit(v)
            case .reset: cb.onResetRequest()
            case .initIPI(let v): cb.onINIT(v)
            case let .startup(v, vector): cb.onSIPI(v, vector)
            }
        }
    }

    private func kick(_ v: Int) {
        guard kickQueued.indices.contains(v), !kickQueued[v] else { return }
        kickQueued[v] = true
        deferred.append(.kick(v))
    }

    // MARK: Timers

    private func deadline(ofSlot slot: Int) -> UInt64? {
        switch slot {
        case 0: return pit.nextDeadline
        case 1: return rtc.nextDeadline
        case 2: return com1?.nextDeadline
        default: return lapics[slot - 3].nextDeadline
        }
    }

    private func syncTimers() {
        for slot in timers.indices {
            let d = deadline(ofSlot: slot)
            if d != armed[slot] {
                if let d { timers[slot].arm(at: d) }
                armed[slot] = d
            }
        }
    }

    private func timerFired(_ slot: Int) {
        locked {
            armed[slot] = nil
            let t = clock.now()
            let before = deadline(ofSlot: slot)
            switch slot {
            case 0: pit.timerExpired(now: t)
            case 1: rtc.timerExpired(now: t)
            case 2: com1?.timerExpired(now: t)
            default: lapics[slot - 3].timerExpired(now: t)
            }
            // A model that made no progress must not make the timer spin.
            if let after = deadline(ofSlot: slot), after == before, after <= t { armed[slot] = after }
        }
    }

    // MARK: Saved state (PlatformState.swift)

    /// Runs `body` on the models under the chipset lock. With `restoring`, every timer is
    /// then re-armed from the models' deadlines, whatever was armed before.
    func withModels<R>(restoring: Bool = false, _ body: () throws -> R) throws -> R {
        var result: Result<R, Error>!
        locked {
            result = Result { try body() }
            if restoring { for i in armed.indices { armed[i] = nil } }
        }
        return try result.get()
    }

    // MARK: Reset

    /// Puts every model in its reset state (a VM reset: CMOS RAM and the RTC's time
    /// survive, the BSP's local APIC is left as firmware leaves it).
    package func reset() {
        locked { resetModels() }
    }

    func resetModels() {
        pic.reset()
        for irq in configuration.levelTriggeredIRQs {
            switch irq {
            case 0..<8: pic.master.elcr |= (1 << UInt8(irq)) & pic.master.elcrMask
            case 8..<16: pic.slave.elcr |= (1 << UInt8(irq - 8)) & pic.slave.elcrMask
            default: break
            }
        }
        ioapic.reset()
        pit.reset()
        rtc.reset()
        com1?.reset()
        keyboard.reset()
        vmmouse.reset()
        controlPortA.reset()
        for l in lapics { l.firmwareReset(isBSP: l.index == 0) }
        // Re-drive lines that stayed high through the reset.
        if keyboard.irq1Level { setISAIRQ(1, level: true) }
        if keyboard.irq12Level { setISAIRQ(12, level: true) }
        if rtc.irqLevel { setISAIRQ(8, level: true) }
        if let com1, com1.irqLevel { setISAIRQ(com1.irq, level: true) }
    }

    // MARK: Interrupt lines

    private func setISAIRQ(_ irq: Int, level: Bool) {
        pic.setIRQ(irq, level: level)
        ioapic.setIRQ(irq == 0 ? 2 : irq, level: level)
    }

    /// Drives global system interrupt `gsi`: 0-15 are ISA IRQs (PIC and I/O APIC; GSI 0
    /// is I/O APIC pin 2), 16-23 I/O APIC only. For a shared level-triggered line (PCI
    /// INTx on GSI 10/11) pass the OR of all its sources. The chipset's own devices use
    /// IRQ 0, 1, 4 (COM1), 8 and 12.
    package func setGSI(_ gsi: Int, level: Bool) {
        locked {
            switch gsi {
            case 0..<16: setISAIRQ(gsi, level: level)
            case 16..<IOAPIC.pinCount: ioapic.setIRQ(gsi, level: level)
            default: break
            }
        }
    }

    /// An MSI write (address 0xFEExxxxx, data per the Intel SDM). Others are ignored.
    package func deliverMSI(address: UInt64, data: UInt32) {
        locked {
            if let m = APICMessage(msiAddress: address, data: data) { _ = route(m, shorthand: 0, source: nil) }
        }
    }

    /// The NMI button: a pulse on vCPU `vcpu`'s LINT1 (an NMI when LINT1 is programmed so).
    func pulseLINT1(vcpu: Int) {
        locked { if lapics.indices.contains(vcpu) { lapics[vcpu].deliverLocal(.lint1) } }
    }

    /// Delivers `message` to the APICs it addresses; returns whether any accepted it.
    private func route(_ message: APICMessage, shorthand: UInt8, source: Int?) -> Bool {
        var targets: [Int]
        switch shorthand {
        case 1: targets = source.map { [$0] } ?? []
        case 2: targets = Array(lapics.indices)
        case 3: targets = lapics.indices.filter { $0 != source }
        default:
            targets = lapics.indices.filter {
                lapics[$0].matches(destination: message.destination, logical: message.logical)
            }
        }
        if message.deliveryMode == .lowestPriority && targets.count > 1 {
            // Arbitrate among enabled APICs: the lowest task priority wins, ties go to the
            // lowest index.
            let enabled = targets.filter { lapics[$0].softwareEnabled }
            let pool = enabled.isEmpty ? targets : enabled
            let winner = pool.min { lapics[$0].taskPriority < lapics[$1].taskPriority }!
            targets = [winner]
        }
        var accepted = false
        for t in targets {
            let l = lapics[t]
            switch message.deliveryMode {
            case .fixed, .lowestPriority:
                if l.accept(vector: message.vector, levelTriggered: message.levelTriggered) { accepted = true }
                continue
            case .nmi:
                l.acceptNMI()
            case .initialize:
                l.initReset()
                deferred.append(.initIPI(t))
            case .startup:
                deferred.append(.startup(t, message.vector))
            case .extINT:
                l.extINTPending = true
                kick(t)
            case .smi, .remoteRead:
                continue
            }
            accepted = true
        }
        return accepted
    }

    private func picRouted(to v: Int) -> Bool {
        let l = lapics[v]
        return l.acceptsExtINT || l.extINTPending || (v == 0 && !l.softwareEnabled)
    }

    // MARK: vCPU interface

    /// The vector that would be injected into `vcpu` now (local APIC IRR above PPR, else
    /// the PIC's when it reaches this vCPU), without acknowledging it.
    package func nextInterrupt(vcpu: Int) -> UInt8? {
        locked {
            guard lapics.indices.contains(vcpu) else { return nil }
            if let v = lapics[vcpu].pendingVector { return v }
            if picRouted(to: vcpu) && pic.hasInterrupt { return pic.pendingVector }
            return nil
        }
    }

    /// The INTA cycle for `vcpu`: moves the local APIC's vector from IRR to ISR or
    /// acknowledges the PIC, and returns the vector to inject (`KVM_INTERRUPT`).
    package func acknowledgeInterrupt(vcpu: Int) -> UInt8? {
        locked {
            guard lapics.indices.contains(vcpu) else { return nil }
            let l = lapics[vcpu]
            if let v = l.acknowledge() { return v }
            let routed = picRouted(to: vcpu)
            l.extINTPending = false
            if routed && pic.hasInterrupt { return pic.acknowledge() }
            return nil
        }
    }

    /// Consumes a pending NMI for `vcpu` (from LINT1, an IPI, an MSI or the I/O APIC).
    package func takeNMI(vcpu: Int) -> Bool {
        locked {
            guard lapics.indices.contains(vcpu), lapics[vcpu].nmiPending else { return false }
            lapics[vcpu].nmiPending = false
            return true
        }
    }

    /// Whether an NMI is pending for `vcpu` (without consuming it).
    func hasPendingNMI(vcpu: Int) -> Bool {
        locked { lapics.indices.contains(vcpu) && lapics[vcpu].nmiPending }
    }

    /// Reads the local APIC page of `vcpu` (`offset` from 0xFEE00000, `size` 1/2/4).
    package func lapicRead(vcpu: Int, offset: UInt64, size: Int) -> UInt64 {
        locked {
            guard lapics.indices.contains(vcpu) else { return 0 }
            return UInt64(lapics[vcpu].read(offset: offset, size: size))
        }
    }

    /// Writes the local APIC page of `vcpu` (only 4-byte, 16-byte-aligned writes act).
    package func lapicWrite(vcpu: Int, offset: UInt64, size: Int, value: UInt64) {
        locked {
            guard lapics.indices.contains(vcpu) else { return }
            lapics[vcpu].write(offset: offset, size: size, value: UInt32(truncatingIfNeeded: value))
        }
    }

    /// The local APIC's TPR (CR8 = TPR >> 4).
    func taskPriority(vcpu: Int) -> UInt8 {
        locked { lapics.indices.contains(vcpu) ? lapics[vcpu].taskPriority : 0 }
    }

    func setTaskPriority(vcpu: Int, _ value: UInt8) {
        locked { if lapics.indices.contains(vcpu) { lapics[vcpu].taskPriority = value } }
    }

    /// IA32_APIC_BASE (MSR 0x1B) for `vcpu`: 0xFEE00000, enabled, BSP flag on vCPU 0.
    func apicBaseMSR(vcpu: Int) -> UInt64 {
        Self.lapicBase | 0x800 | (vcpu == 0 ? 0x100 : 0)
    }

    // MARK: Keyboard and pointer

    /// A key for the PS/2 keyboard as a set-1 make code (0x01-0x7F, 0xE001-0xE07F,
    /// 0xE11D Pause); false while the guest has the keyboard not scanning.
    package func keyboardKey(_ code: UInt32, pressed: Bool) -> Bool {
        locked { keyboard.key(code, pressed: pressed) }
    }

    /// Relative motion for the PS/2 mouse (`dy` positive downwards, `wheel` positive
    /// away from the user, buttons left 1 / right 2 / middle 4); false while the guest
    /// has not enabled the mouse.
    package func pointerMotion(dx: Int, dy: Int, wheel: Int, buttons: UInt8) -> Bool {
        locked { keyboard.mouseMotion(dx: dx, dy: dy, wheel: wheel, buttons: buttons) }
    }

    /// An absolute position (0...0xFFFF per axis) for the VMware absolute pointer; false
    /// while the guest has not enabled it in absolute mode.
    package func pointerAbsolute(x: UInt32, y: UInt32, wheel: Int, buttons: UInt8) -> Bool {
        locked {
            guard vmmouse.pointer(x: x, y: y, wheel: wheel, buttons: buttons) else { return false }
            keyboard.mouseNudge()
            return true
        }
    }

    /// The absolute pointer's backdoor commands; they run on the calling vCPU's thread.
    private func claimVMMouseCommands() throws {
        try backdoor.register(command: VMMouse.Command.status, name: "vmmouse") { [unowned self] _, r in
            r.rax = UInt64(locked { vmmouse.readStatus() })
        }
        try backdoor.register(command: VMMouse.Command.data, name: "vmmouse") { [unowned self] _, r in
            let count = UInt32(truncatingIfNeeded: r.rbx)
            guard let words = locked({ vmmouse.read(count: count) }) else { return }
            let w = words.map(UInt64.init) + [UInt64](repeating: 0, count: VMMouse.maxRead - words.count)
            (r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi) = (w[0], w[1], w[2], w[3], w[4], w[5])
        }
        try backdoor.register(command: VMMouse.Command.command, name: "vmmouse") { [unowned self] _, r in
            let request = UInt32(truncatingIfNeeded: r.rbx)
            locked { vmmouse.command(request) }
        }
    }

    // MARK: Serial input

    /// Host bytes for COM1's receiver; returns how many were accepted (all of them when
    /// COM1 is absent).
    @discardableResult
    func serialInput(_ bytes: [UInt8]) -> Int {
        locked { com1?.receive(bytes) ?? bytes.count }
    }

    // MARK: Bus regions

    /// Each model's port range, registered on the port bus as its own device; the
    /// models decode their own registers.
    var portRegions: [(base: UInt16, size: UInt16, name: String, device: ChipsetRegion)] {
        var regions: [(UInt16, UInt16, String, ChipsetRegion)] = [
            (0x20, 2, "pic-master", .bytes(self, base: 0x20, pic)),
            (0xA0, 2, "pic-slave", .bytes(self, base: 0xA0, pic)),
            (0x4D0, 2, "pic-elcr", .bytes(self, base: 0x4D0, pic)),
            (0x40, 4, "pit", .bytes(self, base: 0x40, pit)),
            (0x61, 1, "system-control-b", .bytes(self, base: 0x61, pit)),
            (0x60, 1, "i8042-data", .bytes(self, base: 0x60, keyboard)),
            (0x64, 1, "i8042-command", .bytes(self, base: 0x64, keyboard)),
            (0x70, 2, "rtc-cmos", .bytes(self, base: 0x70, rtc)),
        ]
        if let com1 { regions.append((com1.base, 8, "com1", .bytes(self, base: com1.base, com1))) }
        regions.append((SystemControlPortA.port, 1, "system-control-a", ChipsetRegion(
            chipset: self, read: { [unowned self] _, data in data.storeLittleEndian(UInt64(controlPortA.read())) },
            write: { [unowned self] _, data in controlPortA.write(data.first ?? 0) })))
        if let port = firmwareDebug {
            regions.append((FirmwareDebugPort.defaultBase, 1, "firmware-debug", ChipsetRegion(
                chipset: self, read: { _, data in for i in data.indices { data[i] = port.read() } },
                write: { _, data in for b in data { port.write(b) } })))
        }
        if let p = configuration.debugExitPort {
            // One write is one exit status, whatever its width.
            let device = ChipsetRegion(chipset: self, read: { _, data in data.storeLittleEndian(0) },
                                       write: { [unowned self] _, data in debugExit.write(data.first ?? 0) })
            regions.append((p, DebugExit.size, "debug-exit", device))
        }
        return regions.map { (base: $0.0, size: $0.1, name: $0.2, device: $0.3) }
    }

    /// The I/O APIC's MMIO window.
    var ioapicRegion: ChipsetRegion {
        ChipsetRegion(chipset: self,
                      read: { [unowned self] offset, data in data.storeLittleEndian(ioapic.mmioRead(offset: offset, size: data.count)) },
                      write: { [unowned self] offset, data in ioapic.mmioWrite(offset: offset, size: data.count, value: data.littleEndianValue) })
    }

    /// Registers every model's port range on `ports` and the I/O APIC on `mmio`. The
    /// local APIC page is per vCPU and is not registered.
    package func register(portBus ports: AddressBus, mmioBus mmio: AddressBus) throws {
        for r in portRegions {
            try ports.register(base: UInt64(r.base), size: UInt64(r.size), name: r.name, device: r.device)
        }
        try ports.register(base: UInt64(VMwareBackdoor.port), size: UInt64(VMwareBackdoor.portCount),
                           name: "vmware-backdoor", device: backdoor)
        try ports.register(base: UInt64(VMwareBackdoor.balloonPort), size: 4, name: "vmware-balloon", device: backdoor)
        try mmio.register(base: Self.ioapicBase, size: IOAPIC.mmioSize, name: "ioapic", device: ioapicRegion)
    }

    /// Runs a bus access under the chipset lock (for ``ChipsetRegion``).
    func access(_ body: () -> Void) { locked(body) }
}

// The seam the PCI host bridge programs against (the vCPU runner's is declared with it).
extension Chipset: PCIInterruptSink {}
