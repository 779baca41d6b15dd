@testable import HVDevices
@testable import HVHostIO
@testable import HVSupport


/// Value-style accesses for tests, through the same byte-buffer interface a vCPU uses.
extension BusDevice {
    func ioRead(offset: UInt16, size: Int) -> UInt32 { UInt32(truncatingIfNeeded: mmioRead(offset: UInt64(offset), size: size)) }
    func ioWrite(offset: UInt16, size: Int, value: UInt32) { mmioWrite(offset: UInt64(offset), size: size, value: UInt64(value)) }

    func mmioRead(offset: UInt64, size: Int) -> UInt64 {
        var v: UInt64 = 0
        withUnsafeMutableBytes(of: &v) { read(offset: offset, data: UnsafeMutableRawBufferPointer(rebasing: $0[..<size])) }
        return v
    }

    func mmioWrite(offset: UInt64, size: Int, value: UInt64) {
        var v = value
        withUnsafeBytes(of: &v) { write(offset: offset, data: UnsafeRawBufferPointer(rebasing: $0[..<size])) }
    }
}

extension AddressBus {
    func lookup(_ address: UInt64) -> (device: any BusDevice, offset: UInt64)? {
        region(at: address).map { ($0.device, address - $0.base) }
    }
}

extension Chipset {
    /// A port access as a vCPU makes it: through the chipset's regions on a bus.
    func portRead(_ port: UInt16, size: Int) -> UInt32 {
        UInt32(truncatingIfNeeded: buses().ports.read(UInt64(port), size: min(size, 8)))
    }

    func portWrite(_ port: UInt16, size: Int, value: UInt32) {
        buses().ports.write(UInt64(port), size: min(size, 8), value: UInt64(value))
    }

    func ioapicRead(offset: UInt64, size: Int) -> UInt64 {
        buses().mmio.read(Chipset.ioapicBase + offset, size: min(size, 8))
    }

    func ioapicWrite(offset: UInt64, size: Int, value: UInt64) {
        buses().mmio.write(Chipset.ioapicBase + offset, size: min(size, 8), value: value)
    }

    private func buses() -> (ports: AddressBus, mmio: AddressBus) {
        let ports = AddressBus(), mmio = AddressBus()
        try! register(portBus: ports, mmioBus: mmio)
        return (ports, mmio)
    }
}

/// A BAR whose registers read as zero and ignore writes, for tests about PCI plumbing.
final class InertBAR: BusDevice {
    func read(offset: UInt64, data: UnsafeMutableRawBufferPointer) { data.storeLittleEndian(0) }
    func write(offset: UInt64, data: UnsafeRawBufferPointer) {}
}
