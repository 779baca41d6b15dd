import HVMemory

/// A range of a BAR the host decodes itself instead of the device: the MSI-X table and
/// PBA, a doorbell on the exit path.
package protocol PCIBARWindow: AnyObject {
    /// Handles an access at `offset` from the BAR's base; false hands it to the device.
    func read(offset: UInt64, data: UnsafeMutableRawBufferPointer) -> Bool
    func write(offset: UInt64, data: UnsafeRawBufferPointer) -> Bool
}

/// What a BAR maps into the backend beside its bus region (RAM, write notifiers), kept
/// at the address the BAR decodes at. Called with the host bridge's lock held; a
/// binding the backend refuses leaves the BAR working through exits.
package protocol PCIBARBinding: AnyObject {
    func bind(at base: UInt64, space: GuestWriteNotifier.Space, mapper: GuestPhysicalMapper)
    func unbind(mapper: GuestPhysicalMapper)
}

/// What the bus decodes for one BAR: the host's windows first, then the device. The
/// windows and bindings are added while the device is created, before the BAR is ever
/// mapped, and do not change afterwards.
final class PCIBARDecoder: BusDevice {
    let device: any BusDevice
    private(set) var windows: [PCIBARWindow] = []
    private(set) var bindings: [PCIBARBinding] = []

    init(device: any BusDevice) { self.device = device }

    func add(window: PCIBARWindow) { windows.append(window) }
    func add(binding: PCIBARBinding) { bindings.append(binding) }

    func read(offset: UInt64, data: UnsafeMutableRawBufferPointer) {
        for w in windows where w.read(offset: offset, data: data) { return }
        device.read(offset: offset, data: data)
    }

    func write(offset: UInt64, data: UnsafeRawBufferPointer) {
        for w in windows where w.write(offset: offset, data: data) { return }
        device.write(offset: offset, data: data)
    }

    func bind(at base: UInt64, space: GuestWriteNotifier.Space, mapper: GuestPhysicalMapper) {
        for b in bindings { b.bind(at: base, space: space, mapper: mapper) }
    }

    func unbind(mapper: GuestPhysicalMapper) {
        for b in bindings { b.unbind(mapper: mapper) }
    }
}

extension PCIFunction {
    static let maxDoorbells = 64

    /// Declares a memory BAR that is host RAM (`ram` decodes it and binds it).
    package func addRAMBAR(_ bar: PCIBARDescription, ram: PCIRAMBAR) throws {
        guard bar.kind != .io, bar.size == ram.memory.size, bar.size >= GuestMemory.pageSize else {
            throw PCIDeclarationError(.invalid, "\(name): BAR\(bar.index): a RAM BAR is a memory BAR of at least \(GuestMemory.pageSize) bytes")
        }
        try addBAR(bar, device: ram)
        barDecoders[bar.index]?.add(binding: ram)
    }

    /// Declares a doorbell register in one of the function's BARs.
    package func addDoorbell(_ d: PCIDoorbell) throws(PCIDeclarationError) {
        func invalid(_ why: String) -> PCIDeclarationError { PCIDeclarationError(.invalid, "\(name): BAR\(d.bar) doorbell at 0x\(String(d.offset, radix: 16)): \(why)") }
        guard let bar = bars.first(where: { $0.index == d.bar }), let decoder = barDecoders[d.bar] else {
            throw invalid("the BAR is not declared")
        }
        guard !(barDevices[d.bar] is PCIRAMBAR) else { throw invalid("a RAM BAR has no registers") }
        guard [1, 2, 4, 8].contains(d.size), !(bar.kind == .io && d.size == 8) else {
            throw invalid("size \(d.size) must be 1, 2, 4 or 8 (at most 4 in an I/O BAR)")
        }
        guard d.offset % UInt64(d.size) == 0, d.offset < bar.size, UInt64(d.size) <= bar.size - d.offset else {
            throw invalid("must be aligned to its size and inside the BAR (\(bar.size) bytes)")
        }
        if let x = msix, x.bar == d.bar, d.range.overlaps(x.tableRange) || d.range.overlaps(x.pbaRange) {
            throw invalid("overlaps the MSI-X table or PBA")
        }
        guard doorbells.count < Self.maxDoorbells else {
            throw PCIDeclarationError(.full, "\(name): more than \(Self.maxDoorbells) doorbells")
        }
        guard !doorbells.contains(where: { $0.collides(with: d) }) else {
            throw PCIDeclarationError(.duplicate, "\(name): BAR\(d.bar) already has a doorbell at 0x\(String(d.offset, radix: 16)) for that value")
        }
        doorbells.append(d)
        decoder.add(window: d)
        decoder.add(binding: d)
    }
}
