import Glibc
import HVMemory
import HVSupport

/// Where PCI interrupts go: the chipset's GSIs (PIC + I/O APIC) and the local APICs.
package protocol PCIInterruptSink: AnyObject {
    func setGSI(_ gsi: Int, level: Bool)
    func deliverMSI(address: UInt64, data: UInt32)
}

/// The i440BX host bridge with its PIIX4 ISA bridge: configuration mechanism #1 at
/// 0xCF8/0xCFC, bus 0 with up to 32 single-function slots, firmware-style BAR and IRQ
/// assignment, BAR decoding onto the port and MMIO buses (and, through `mapper`, BARs the
/// backend maps itself: RAM, doorbells), shared level-triggered INTx through the PIIX4
/// PIRQ routing, MSI and MSI-X. One lock serialises all of it.
package final class PCIHostBridge: BusDevice, @unchecked Sendable {
    /// PIRQA..D as the firmware routes them (SeaBIOS does the same on PIIX).
    static let pirqToGSI = [10, 10, 11, 11]
    static let ioWindow: ClosedRange<UInt64> = 0xC000...0xFFFF
    static let mmioWindow: ClosedRange<UInt64> = 0xE000_0000...0xFEBF_FFFF

    private let lock = HostLock()
    private var address: UInt32 = 0
    private var slots = [PCIFunction?](repeating: nil, count: 32)
    private let portBus: AddressBus
    private let mmioBus: AddressBus
    weak var interrupts: PCIInterruptSink?
    private let mapper: GuestPhysicalMapper?
    private var gsiLevels: [Int: Bool] = [:]
    /// PIIX4 reset control register (byte port 0xCF9 inside the mechanism #1 range):
    /// bit 1 hard reset, bit 2 starts the reset, bit 3 full reset.
    private var resetControl: UInt8 = 0
    /// The guest started a reset through 0xCF9. Called after the bridge's lock is released.
    package var resetRequest: @Sendable () -> Void = {}
    /// Conflicts seen while mapping guest-programmed BARs (for diagnostics).
    private(set) var mappingConflicts: [String] = []

    package init(portBus: AddressBus, mmioBus: AddressBus, interrupts: PCIInterruptSink,
                mapper: GuestPhysicalMapper? = nil) throws {
        self.mapper = mapper
        self.portBus = portBus
        self.mmioBus = mmioBus
        self.interrupts = interrupts
        let host = PCIFunction(name: "i440BX host bridge",
                               identity: PCIIdentity(vendorID: 0x8086, deviceID: 0x7190, classCode: 0x06_00_00, revision: 0x03))
        let isa = PCIFunction(name: "PIIX4 ISA bridge",
                              identity: PCIIdentity(vendorID: 0x8086, deviceID: 0x7110, classCode: 0x06_01_00,
                                                    revision: 0x02, headerType: 0x80))
        for (i, gsi) in PCIHostBridge.pirqToGSI.enumerated() { isa.config[0x60 + i] = UInt8(gsi) }
        try attach(host, slot: 0)
        try attach(isa, slot: 1)
        try portBus.register(base: 0xCF8, size: 8, name: "PCI configuration mechanism #1",
                             device: ConfigurationPorts(bridge: self))
    }

    /// The 0xCF8 ports on the bus. The bridge holds its buses, so the bus holds it only
    /// weakly: a strong cycle would keep every VM's chipset alive after power-off.
    private final class ConfigurationPorts: BusDevice {
        weak var bridge: PCIHostBridge?
        init(bridge: PCIHostBridge) { self.bridge = bridge }
        func read(offset: UInt64, data: UnsafeMutableRawBufferPointer) {
            if let bridge { bridge.read(offset: offset, data: data) }
            else { data.initializeMemory(as: UInt8.self, repeating: 0xFF) }
        }
        func write(offset: UInt64, data: UnsafeRawBufferPointer) { bridge?.write(offset: offset, data: data) }
    }

    func locked<T>(_ body: () throws -> T) rethrows -> T { try lock.withLock(body) }

    /// Plugs `function` into `slot`, or the first free slot from 2.
    package func attach(_ function: PCIFunction, slot: Int? = nil) throws {
        try locked {
            guard let s = slot ?? (2..<32).first(where: { slots[$0] == nil }), slots[s] == nil else {
                throw PCIError.busFull(function: function.name)
            }
            function.slot = s
            slots[s] = function
            if let x = function.msix {
                function.barDecoders[x.bar]?.add(window: MSIXWindow(bridge: self, function: function, capability: x))
            }
        }
    }

    var functions: [PCIFunction] { locked { slots.compactMap { $0 } } }

    /// The firmware's job: assign BAR addresses (largest first, naturally aligned),
    /// route INTx to a GSI in INTERRUPT_LINE, and enable decoding.
    package func assignResources() throws {
        try locked {
            var nextIO = PCIHostBridge.ioWindow.lowerBound
            var nextMMIO = PCIHostBridge.mmioWindow.lowerBound
            for case let f? in slots {
                var command = f.command
                for bar in f.bars.sorted(by: { $0.size > $1.size }) {
                    let window = bar.kind == .io ? PCIHostBridge.ioWindow : PCIHostBridge.mmioWindow
                    let start = bar.kind == .io ? nextIO : nextMMIO
                    let aligned = (start + bar.size - 1) & ~(bar.size - 1)
                    guard aligned + bar.size - 1 <= window.upperBound else {
                        throw PCIError.resourcesExhausted(function: f.name, bar: bar.index)
                    }
                    f.setProgrammedAddress(bar, aligned)
                    if bar.kind == .io { nextIO = aligned + bar.size; command |= PCIFunction.commandIO }
                    else { nextMMIO = aligned + bar.size; command |= PCIFunction.commandMemory }
                }
                if let rom = f.rom {
                    // Placed but left disabled: firmware enables a ROM only while it copies it.
                    let aligned = (nextMMIO + rom.size - 1) & ~(rom.size - 1)
                    guard aligned + rom.size - 1 <= PCIHostBridge.mmioWindow.upperBound else {
                        throw PCIError.resourcesExhausted(function: f.name, bar: PCIFunction.romIndex)
                    }
                    f.put32(PCIFunction.romRegister, UInt32(aligned))
                    nextMMIO = aligned + rom.size
                }
                if f.identity.interruptPin != 0 {
                    f.config[0x3C] = UInt8(gsi(for: f))
                }
                f.put16(0x04, command)
                remap(f)
            }
        }
    }

    private func gsi(for f: PCIFunction) -> Int {
        let pin = Int(f.identity.interruptPin)
        return PCIHostBridge.pirqToGSI[(pin - 1 + f.slot - 1) & 3]
    }

    // MARK: configuration mechanism #1

    package func read(offset: UInt64, data: UnsafeMutableRawBufferPointer) {
        let size = data.count
        let value: UInt32 = locked {
            if offset < 4 {
                if offset == 1 && size == 1 { return UInt32(resetControl) }
                // Only a dword access at 0xCF8 reads the address register.
                return offset == 0 && size == 4 ? address : 0xFFFF_FFFF
            }
            guard let (f, reg) = selected(offset: UInt16(offset)) else { return 0xFFFF_FFFF }
            return f.readConfig(offset: reg, size: size)
        }
        data.storeLittleEndian(UInt64(value))
    }

    package func write(offset: UInt64, data: UnsafeRawBufferPointer) {
        let size = data.count, value = UInt32(truncatingIfNeeded: data.littleEndianValue)
        let reset: Bool = locked {
            if offset < 4 {
                if offset == 0 && size == 4 { address = value & 0x80FF_FFFC }
                if offset == 1 && size == 1 {
                    // The reset starts on a 0 -> 1 transition of bit 2.
                    let start = value & 0x04 != 0 && resetControl & 0x04 == 0
                    resetControl = UInt8(value & 0x0E)
                    return start
                }
                return false
            }
            guard let (f, reg) = selected(offset: UInt16(offset)) else { return false }
            let before = f.command, messagesBefore = f.messageSignalledInterruptsEnabled
            if f.writeConfig(offset: reg, size: size, value: value) { remap(f) }
            if (before ^ f.command) & PCIFunction.commandInterruptDisable != 0
                || messagesBefore != f.messageSignalledInterruptsEnabled { updateINTx() }
            if let msi = f.msi, reg + size > msi.offset + 16, reg < msi.offset + 20 { flushPendingMSI(f) }
            if let x = f.msix, reg + size > x.offset + 2, reg < x.offset + 4 { flushPendingMSIX(f) }
            return false
        }
        if reset { resetRequest() }
    }

    private func selected(offset: UInt16) -> (PCIFunction, Int)? {
        guard address & 0x8000_0000 != 0 else { return nil }
        let bus = (address >> 16) & 0xFF, device = Int((address >> 11) & 0x1F), function = (address >> 8) & 0x7
        guard bus == 0, function == 0, let f = slots[device] else { return nil }
        return (f, Int(address & 0xFC) + Int(offset - 4))
    }

    // MARK: BAR decoding

    /// Brings the buses in line with the function's command register and BARs.
    private func remap(_ f: PCIFunction) {
        for bar in f.bars {
            guard let device = f.barDecoders[bar.index] else { continue }
            let decode = bar.kind == .io ? f.command & PCIFunction.commandIO != 0 : f.command & PCIFunction.commandMemory != 0
            let programmed = f.programmedAddress(bar)
            let limit: UInt64 = bar.kind == .io ? 0x1_0000 : UInt64.max
            let valid = decode && programmed != 0 && programmed <= limit - bar.size
            let want: UInt64? = valid ? programmed : nil
            if f.mapped[bar.index] == want { continue }
            if let old = f.mapped[bar.index] {
                (bar.kind == .io ? portBus : mmioBus).unregister(base: old, device: device)
                f.mapped[bar.index] = nil
                if let mapper { device.unbind(mapper: mapper) }
            }
            guard let base = want else { continue }
            do {
                let name = "\(f.name) BAR\(bar.index)"
                try (bar.kind == .io ? portBus : mmioBus).register(base: base, size: bar.size, name: name, device: device)
                f.mapped[bar.index] = base
                if let mapper { device.bind(at: base, space: bar.kind == .io ? .port : .memory, mapper: mapper) }
            } catch {
                // Real hardware would decode both and collide; we leave this BAR dark.
                mappingConflicts.append("\(error)")
            }
        }
        if let rom = f.rom { remapROM(f, rom) }
    }

    /// The expansion ROM decodes while enabled and memory decoding is on.
    private func remapROM(_ f: PCIFunction, _ rom: PCIExpansionROM) {
        let (address, enabled) = f.romSetting
        let decode = enabled && f.command & PCIFunction.commandMemory != 0 && address != 0
        let want: UInt64? = decode ? address : nil
        guard f.mapped[PCIFunction.romIndex] != want else { return }
        if let old = f.mapped[PCIFunction.romIndex] {
            mmioBus.unregister(base: old, device: rom)
            f.mapped[PCIFunction.romIndex] = nil
        }
        guard let base = want else { return }
        do {
            try mmioBus.register(base: base, size: rom.size, name: "\(f.name) ROM", device: rom)
            f.mapped[PCIFunction.romIndex] = base
        } catch {
            mappingConflicts.append("\(error)")
        }
    }

    /// The guest's command register of `f`.
    package func command(of f: PCIFunction) -> UInt16 { locked { f.command } }

    /// The address a BAR decodes at now (0 when not decoding).
    package func mappedAddress(of f: PCIFunction, bar: Int) -> UInt64 { locked { f.mapped[bar] ?? 0 } }

    // MARK: interrupts

    /// Sets the function's INTx output. Lines are shared: a GSI is asserted while any
    /// function routed to it asserts, has not set Interrupt Disable and has neither MSI
    /// nor MSI-X enabled.
    package func setINTx(_ f: PCIFunction, asserted: Bool) {
        locked {
            guard f.intxAsserted != asserted else { return }
            f.intxAsserted = asserted
            updateINTx()
        }
    }

    private func updateINTx() {
        var levels: [Int: Bool] = [:]
        for case let f? in slots where f.identity.interruptPin != 0 {
            let active = f.intxAsserted && f.command & PCIFunction.commandInterruptDisable == 0
                && !f.messageSignalledInterruptsEnabled
            if active { f.config[0x06] |= 0x08 } else { f.config[0x06] &= ~0x08 }
            levels[gsi(for: f), default: false] = levels[gsi(for: f), default: false] || active
            if f.intxAsserted && !active { f.config[0x06] |= 0x08 }   // status shows the pending INTx
        }
        for (gsi, level) in levels where gsiLevels[gsi] != level {
            gsiLevels[gsi] = level
            interrupts?.setGSI(gsi, level: level)
        }
    }

    package enum MSIResult: Equatable { case sent, notEnabled, masked, outOfRange }

    /// Sends MSI `vector` of `f` (the message data's low bits carry the vector number).
    /// With MSI-X enabled too, MSI-X wins: MSI is not enabled then.
    package func sendMSI(_ f: PCIFunction, vector: Int) -> MSIResult {
        locked {
            guard let msi = f.msi, msi.enabled(f.config), f.msix?.enabled(f.config) != true else { return .notEnabled }
            guard vector >= 0, vector < msi.enabledVectors(f.config) else { return .outOfRange }
            if msi.masked(f.config, vector: vector) {
                f.msi!.pending |= 1 << UInt32(vector)
                f.msi!.normalize(config: &f.config)
                return .masked
            }
            deliver(f, msi, vector: vector)
            return .sent
        }
    }

    private func deliver(_ f: PCIFunction, _ msi: MSICapability, vector: Int) {
        guard f.command & PCIFunction.commandBusMaster != 0 else { return }
        let n = UInt32(msi.enabledVectors(f.config))
        let data = (msi.data(f.config) & ~(n - 1)) | UInt32(vector)
        interrupts?.deliverMSI(address: msi.address(f.config), data: data)
    }

    private func flushPendingMSI(_ f: PCIFunction) {
        guard var msi = f.msi, msi.enabled(f.config) else { return }
        for v in 0..<msi.vectors where msi.pending & (1 << UInt32(v)) != 0 && !msi.masked(f.config, vector: v) {
            msi.pending &= ~(1 << UInt32(v))
            deliver(f, msi, vector: v)
        }
        f.msi = msi
        f.msi!.normalize(config: &f.config)
    }
}

// MARK: Saved state (the "pci" section of a suspend file)

extension PCIHostBridge {
    /// 2: the MSI-X table and PBA follow each function's MSI pending bits.
    package static let stateVersion: UInt32 = 2

    /// The 0xCF8 latch, then per function: slot, vendor and device ID, the 256-byte
    /// configuration space, the INTx output, the MSI pending bits, and (version 2) whether
    /// it has MSI-X, then its table and PBA (u64 words).
    package func saveState() -> [UInt8] {
        locked {
            var e = StateEncoder()
            e.u32(address)
            let present = slots.compactMap { $0 }
            e.u32(UInt32(present.count))
            for f in present {
                e.u8(UInt8(f.slot))
                e.u16(f.identity.vendorID)
                e.u16(f.identity.deviceID)
                e.data(f.config)
                e.bool(f.intxAsserted)
                e.u32(f.msi?.pending ?? 0)
                e.bool(f.msix != nil)
                if let msix = f.msix {
                    e.data(msix.savedTable)
                    e.u32(UInt32(msix.savedPending.count))
                    for w in msix.savedPending { e.u64(w) }
                }
            }
            return e.bytes
        }
    }

    /// Restores a saved state into the same functions (same slots and IDs). Every
    /// configuration dword goes through the guest's write path, so read-only bits stay
    /// this host's; then BARs decode and INTx lines are driven as the registers say.
    /// Version 1 files carry no MSI-X table (every vector stays masked, none pending).
    package func loadState(_ bytes: [UInt8], version: UInt32 = PCIHostBridge.stateVersion) throws {
        var d = StateDecoder(bytes, context: "section 'pci'")
        let latch = try d.u32()
        let count = Int(try d.u32())
        let present = functions
        guard count == present.count else {
            throw StateDecodingError("section 'pci': \(count) PCI functions saved, this VM has \(present.count)")
        }
        var saved: [(PCIFunction, config: [UInt8], intx: Bool, pending: UInt32, msix: (table: [UInt8], pba: [UInt64])?)] = []
        for f in present {
            let slot = Int(try d.u8()), vendor = try d.u16(), device = try d.u16()
            guard slot == f.slot, vendor == f.identity.vendorID, device == f.identity.deviceID else {
                func id(_ v: UInt16, _ d: UInt16) -> String {
                    [v, d].map { n in
                        let hex = String(n, radix: 16)
                        return String(repeating: "0", count: 4 - hex.count) + hex
                    }.joined(separator: ":")
                }
                throw StateDecodingError("section 'pci': slot \(slot) held \(id(vendor, device)), this VM has \(f.name) (\(id(f.identity.vendorID, f.identity.deviceID))) in slot \(f.slot)")
            }
            let config = try d.data(count: 256), intx = try d.bool(), pending = try d.u32()
            var msix: (table: [UInt8], pba: [UInt64])?
            if version >= 2, try d.bool() {
                let table = try d.data(limit: MSIXCapability.maxVectors * MSIXCapability.entrySize)
                let words = Int(try d.u32())
                guard words <= MSIXCapability.maxVectors / 64 else {
                    throw StateDecodingError("section 'pci': \(f.name): an MSI-X PBA of \(words) words")
                }
                var pba: [UInt64] = []
                for _ in 0..<words { pba.append(try d.u64()) }
                guard let cap = f.msix, cap.savedTable.count == table.count, cap.savedPending.count == pba.count else {
                    throw StateDecodingError("section 'pci': \(f.name): the saved MSI-X table (\(table.count / MSIXCapability.entrySize) vectors) does not fit this function's")
                }
                msix = (table, pba)
            }
            saved.append((f, config, intx, pending, msix))
        }
        try d.finish()
        locked {
            address = latch & 0x80FF_FFFC
            for (f, config, intx, pending, msix) in saved {
                if let msix { _ = f.msix!.restore(table: msix.table, pending: msix.pba) }
                for offset in stride(from: 0x04, to: 0x100, by: 4) {
                    let dword = UInt32(config[offset]) | UInt32(config[offset + 1]) << 8
                        | UInt32(config[offset + 2]) << 16 | UInt32(config[offset + 3]) << 24
                    _ = f.writeConfig(offset: offset, size: 4, value: dword)
                }
                f.intxAsserted = intx
                if let msi = f.msi {
                    f.msi!.pending = msi.vectors == 32 ? pending : pending & ((1 << UInt32(msi.vectors)) - 1)
                    f.msi!.normalize(config: &f.config)
                }
                remap(f)
            }
            updateINTx()
        }
    }
}
