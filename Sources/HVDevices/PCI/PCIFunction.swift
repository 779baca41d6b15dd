/// A BAR as a device declares it.
package struct PCIBARDescription: Sendable, Equatable {
    package enum Kind: Sendable, Equatable { case io, memory32, memory64 }
    package let index: Int
    package let kind: Kind
    package let size: UInt64
    let prefetchable: Bool

    package init(index: Int, kind: Kind, size: UInt64, prefetchable: Bool = false) {
        self.index = index
        self.kind = kind
        self.size = size
        self.prefetchable = prefetchable
    }
}

package enum PCIError: Error, CustomStringConvertible, Equatable {
    case badBAR(function: String, index: Int, reason: String)
    case busFull(function: String)
    case resourcesExhausted(function: String, bar: Int)

    package var description: String {
        switch self {
        case let .badBAR(f, i, reason): return "\(f): BAR\(i): \(reason)"
        case let .busFull(f): return "\(f): no free PCI slot on bus 0"
        case let .resourcesExhausted(f, bar):
            return "\(f): \(bar == PCIFunction.romIndex ? "expansion ROM" : "BAR\(bar)") does not fit the remaining address window"
        }
    }
}

/// The identity a function presents in configuration space.
package struct PCIIdentity: Sendable, Equatable {
    var vendorID: UInt16
    var deviceID: UInt16
    var classCode: UInt32
    package var revision: UInt8 = 0
    var subsystemVendorID: UInt16 = 0
    var subsystemID: UInt16 = 0
    var interruptPin: UInt8 = 0
    var headerType: UInt8 = 0

    package init(vendorID: UInt16, deviceID: UInt16, classCode: UInt32, revision: UInt8 = 0,
                subsystemVendorID: UInt16 = 0, subsystemID: UInt16 = 0, interruptPin: UInt8 = 0,
                headerType: UInt8 = 0) {
        self.vendorID = vendorID
        self.deviceID = deviceID
        self.classCode = classCode
        self.revision = revision
        self.subsystemVendorID = subsystemVendorID
        self.subsystemID = subsystemID
        self.interruptPin = interruptPin
        self.headerType = headerType
    }
}

/// One PCI function: a 256-byte type-0 configuration space with BARs, INTx and an
/// optional MSI capability. Guest accesses arrive through `PCIHostBridge`, which holds
/// its lock around every call here.
package final class PCIFunction: @unchecked Sendable {
    package let name: String
    package internal(set) var slot: Int = -1
    let identity: PCIIdentity
    private(set) var bars: [PCIBARDescription] = []
    /// What decodes each BAR, registered on the bus at the BAR's address while mapped.
    private(set) package var barDevices: [Int: any BusDevice] = [:]
    /// What the bus decodes for each BAR: the host's windows, then the BAR's device.
    private(set) var barDecoders: [Int: PCIBARDecoder] = [:]
    /// Doorbell registers in the BARs, in the order declared.
    package var doorbells: [PCIDoorbell] = []

    var config = [UInt8](repeating: 0, count: 256)
    private var writeMask = [UInt8](repeating: 0, count: 256)
    /// Address each BAR currently decodes at on its bus, nil when not decoding.
    var mapped: [Int: UInt64] = [:]
    /// The device's own INTx output, before Interrupt Disable is applied.
    var intxAsserted = false
    var msi: MSICapability?
    /// The expansion ROM behind register 0x30; it decodes as `mapped[romIndex]`.
    private(set) package var rom: PCIExpansionROM?
    var msix: MSIXCapability?

    /// State the host keeps for this function outside configuration space that the
    /// suspend file does not carry yet (nil when there is none): suspend refuses such a
    /// VM rather than lose it. (The MSI-X table and PBA travel in the "pci" section.)
    package var unsavedHostState: String? {
        guard let bar = barDevices.keys.sorted().first(where: { barDevices[$0] is PCIRAMBAR }) else { return nil }
        return "the RAM-backed BAR\(bar)"
    }

    static let commandIO: UInt16 = 1 << 0
    static let commandMemory: UInt16 = 1 << 1
    static let commandBusMaster: UInt16 = 1 << 2
    static let commandInterruptDisable: UInt16 = 1 << 10
    static let romRegister = 0x30
    /// The key of the expansion ROM in `mapped` (Linux calls it resource 6 too).
    static let romIndex = 6

    package init(name: String, identity: PCIIdentity) {
        self.name = name
        self.identity = identity
        put16(0x00, identity.vendorID)
        put16(0x02, identity.deviceID)
        config[0x08] = identity.revision
        put32(0x08, UInt32(identity.revision) | identity.classCode << 8)
        config[0x0E] = identity.headerType
        put16(0x2C, identity.subsystemVendorID)
        put16(0x2E, identity.subsystemID)
        config[0x3D] = identity.interruptPin
        writeMask[0x04] = 0x07                      // IO, memory, bus master
        writeMask[0x05] = 0x04                      // interrupt disable
        writeMask[0x0C] = 0xFF                      // cache line size
        writeMask[0x0D] = 0xFF                      // latency timer
        writeMask[0x3C] = 0xFF                      // interrupt line
    }

    /// Declares a BAR decoded by `device` (offsets relative to the BAR's base).
    package func addBAR(_ bar: PCIBARDescription, device: any BusDevice) throws {
        func fail(_ why: String) -> PCIError { .badBAR(function: name, index: bar.index, reason: why) }
        guard (0..<6).contains(bar.index) else { throw fail("index must be 0...5") }
        guard bar.size > 0, bar.size & (bar.size - 1) == 0 else { throw fail("size \(bar.size) is not a power of two") }
        let used = Set(bars.flatMap { $0.kind == .memory64 ? [$0.index, $0.index + 1] : [$0.index] })
        let wanted = bar.kind == .memory64 ? [bar.index, bar.index + 1] : [bar.index]
        guard wanted.allSatisfy({ $0 < 6 && !used.contains($0) }) else { throw fail("index already used") }
        switch bar.kind {
        case .io: guard (4...256).contains(bar.size) else { throw fail("I/O BAR size must be 4...256 bytes") }
        case .memory32: guard bar.size >= 16, bar.size <= 0x1000_0000 else { throw fail("MMIO BAR size must be 16 B...256 MiB") }
        case .memory64: guard bar.size >= 16, bar.size <= 0x1_0000_0000 else { throw fail("MMIO BAR size must be 16 B...4 GiB") }
        }
        bars.append(bar)
        barDevices[bar.index] = device
        barDecoders[bar.index] = PCIBARDecoder(device: device)
        let offset = 0x10 + 4 * bar.index
        put32(offset, barFlags(bar))
        let mask = ~UInt32(truncatingIfNeeded: bar.size - 1) & (bar.kind == .io ? 0xFFFF_FFFC : 0xFFFF_FFF0)
        putMask32(offset, mask)
        if bar.kind == .memory64 { putMask32(offset + 4, ~UInt32(truncatingIfNeeded: (bar.size - 1) >> 32)) }
    }

    /// Adds an MSI capability (64-bit, per-vector masking) at 0x40.
    package func addMSI(vectors: Int) throws {
        guard [1, 2, 4, 8, 16, 32].contains(vectors), msi == nil else {
            throw PCIError.badBAR(function: name, index: -1, reason: "MSI vector count \(vectors) must be 1, 2, 4, 8, 16 or 32")
        }
        msi = MSICapability(offset: 0x40, vectors: vectors)
        config[0x06] |= 0x10                        // capability list
        msi!.install(into: &config, mask: &writeMask)
        linkCapabilities()
    }

    /// Adds an MSI-X capability at 0x60 whose table and PBA live in memory BAR `bar`.
    package func addMSIX(vectors: Int, bar: Int, tableOffset: UInt64, pbaOffset: UInt64) throws(PCIDeclarationError) {
        guard let b = bars.first(where: { $0.index == bar }), b.kind != .io, !(barDevices[bar] is PCIRAMBAR) else {
            throw PCIDeclarationError(.invalid, "\(name): MSI-X needs BAR\(bar) declared as a memory BAR with handlers")
        }
        if let why = MSIXCapability.problem(vectors: vectors, barSize: b.size, tableOffset: tableOffset, pbaOffset: pbaOffset) {
            throw PCIDeclarationError(.invalid, "\(name): \(why)")
        }
        let cap = MSIXCapability(offset: 0x60, vectors: vectors, bar: bar, tableOffset: tableOffset, pbaOffset: pbaOffset)
        if doorbells.contains(where: { $0.bar == bar && ($0.range.overlaps(cap.tableRange) || $0.range.overlaps(cap.pbaRange)) }) {
            throw PCIDeclarationError(.invalid, "\(name): the MSI-X table or PBA overlaps a doorbell")
        }
        guard msix == nil else { throw PCIDeclarationError(.duplicate, "\(name): MSI-X is already declared") }
        msix = cap
        config[0x06] |= 0x10                        // capability list
        cap.install(into: &config, mask: &writeMask)
        linkCapabilities()
    }

    /// Chains the capabilities present (MSI at 0x40, MSI-X at 0x60) from 0x34.
    private func linkCapabilities() {
        let offsets = [msi?.offset, msix?.offset].compactMap { $0 }
        config[0x34] = UInt8(offsets.first ?? 0)
        for (i, o) in offsets.enumerated() { config[o + 1] = i + 1 < offsets.count ? UInt8(offsets[i + 1]) : 0 }
    }

    /// MSI or MSI-X is enabled: the function must not use INTx.
    var messageSignalledInterruptsEnabled: Bool {
        msi?.enabled(config) == true || msix?.enabled(config) == true
    }

    /// Gives the function an expansion ROM: register 0x30 sizes like a BAR, bit 0 enables.
    package func addROM(_ rom: PCIExpansionROM) throws {
        guard self.rom == nil else {
            throw PCIError.badBAR(function: name, index: Self.romIndex, reason: "the expansion ROM is already set")
        }
        self.rom = rom
        putMask32(Self.romRegister, ~UInt32(rom.size - 1) | 1)
    }

    /// The ROM's programmed address, and whether the guest enabled it.
    var romSetting: (address: UInt64, enabled: Bool) {
        let v = get32(Self.romRegister)
        return (UInt64(v & 0xFFFF_F800), v & 1 != 0)
    }

    func barFlags(_ bar: PCIBARDescription) -> UInt32 {
        switch bar.kind {
        case .io: return 0x1
        case .memory32: return bar.prefetchable ? 0x8 : 0
        case .memory64: return 0x4 | (bar.prefetchable ? 0x8 : 0)
        }
    }

    package var command: UInt16 { get16(0x04) }

    /// The address the guest programmed for `bar` (flag bits stripped).
    func programmedAddress(_ bar: PCIBARDescription) -> UInt64 {
        let offset = 0x10 + 4 * bar.index
        switch bar.kind {
        case .io: return UInt64(get32(offset) & 0xFFFF_FFFC)
        case .memory32: return UInt64(get32(offset) & 0xFFFF_FFF0)
        case .memory64: return UInt64(get32(offset) & 0xFFFF_FFF0) | UInt64(get32(offset + 4)) << 32
        }
    }

    func setProgrammedAddress(_ bar: PCIBARDescription, _ address: UInt64) {
        let offset = 0x10 + 4 * bar.index
        put32(offset, UInt32(truncatingIfNeeded: address) | barFlags(bar))
        if bar.kind == .memory64 { put32(offset + 4, UInt32(truncatingIfNeeded: address >> 32)) }
    }

    // MARK: configuration space access

    func readConfig(offset: Int, size: Int) -> UInt32 {
        var v: UInt32 = 0
        for i in 0..<size where offset + i < 256 { v |= UInt32(config[offset + i]) << (8 * UInt32(i)) }
        return v
    }

    /// Applies a guest write. Returns true when decoding (command or a BAR) may have changed.
    func writeConfig(offset: Int, size: Int, value: UInt32) -> Bool {
        for i in 0..<size where offset + i < 256 {
            let o = offset + i
            let byte = UInt8(truncatingIfNeeded: value >> (8 * UInt32(i)))
            if o == 0x06 || o == 0x07 {
                // Status: error bits are write-1-to-clear.
                let w1c: UInt8 = o == 0x07 ? 0xF9 : 0x00
                config[o] &= ~(byte & w1c)
                continue
            }
            config[o] = (config[o] & ~writeMask[o]) | (byte & writeMask[o])
        }
        msi?.normalize(config: &config)
        let rom = offset < Self.romRegister + 4 && offset + size > Self.romRegister
        return (offset < 0x28 && offset + size > 0x04) || rom
    }

    // MARK: little-endian helpers

    func get16(_ o: Int) -> UInt16 { UInt16(config[o]) | UInt16(config[o + 1]) << 8 }
    func get32(_ o: Int) -> UInt32 { UInt32(get16(o)) | UInt32(get16(o + 2)) << 16 }
    func put16(_ o: Int, _ v: UInt16) { config[o] = UInt8(v & 0xFF); config[o + 1] = UInt8(v >> 8) }
    func put32(_ o: Int, _ v: UInt32) { put16(o, UInt16(v & 0xFFFF)); put16(o + 2, UInt16(v >> 16)) }
    private func putMask32(_ o: Int, _ v: UInt32) {
        for i in 0..<4 { writeMask[o + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(i))) }
    }
}
