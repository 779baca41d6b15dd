import HVSupport

/// Where one vCPU's port and MMIO accesses go: its own local APIC page first (the page is
/// per vCPU, so it is not on the shared bus), then the VM's buses. The VM assembly hands
/// it to the backend as the vCPU's exit handler.
package final class VCPUAccessRouter {
    private let index: Int
    private let ports: AddressBus
    private let mmio: AddressBus
    private unowned let chipset: Chipset

    package init(vcpu index: Int, ports: AddressBus, mmio: AddressBus, chipset: Chipset) {
        self.index = index
        self.ports = ports
        self.mmio = mmio
        self.chipset = chipset
    }

    package func portRead(port: UInt16, data: UnsafeMutableRawBufferPointer) {
        ports.read(UInt64(port), data: data)
    }

    package func portWrite(port: UInt16, data: UnsafeRawBufferPointer) {
        ports.write(UInt64(port), data: data)
    }

    /// A VMware backdoor call from this vCPU (see ``VMwareBackdoor``).
    package func backdoorCall(_ registers: inout BackdoorRegisters) -> Bool {
        chipset.backdoor.call(vcpu: index, registers: &registers)
    }

    package func mmioRead(address: UInt64, data: UnsafeMutableRawBufferPointer) {
        if address & ~0xFFF == Chipset.lapicBase {
            data.storeLittleEndian(chipset.lapicRead(vcpu: index, offset: address & 0xFFF, size: data.count))
            return
        }
        mmio.read(address, data: data)
    }

    package func mmioWrite(address: UInt64, data: UnsafeRawBufferPointer) {
        if address & ~0xFFF == Chipset.lapicBase {
            chipset.lapicWrite(vcpu: index, offset: address & 0xFFF, size: data.count, value: data.littleEndianValue)
            return
        }
        mmio.write(address, data: data)
    }
}
