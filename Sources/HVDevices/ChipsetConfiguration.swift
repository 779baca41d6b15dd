import HVMemory
import HVSupport

/// What one VM's PC chipset is built from.
package struct ChipsetConfiguration: Sendable {
    /// Guest RAM in bytes (drives the CMOS memory-size bytes).
    var memorySize: UInt64
    /// Number of vCPUs, 1...254 (one local APIC each; APIC ID = vCPU index).
    package var vcpuCount: Int
    /// Where COM1's output goes and its input comes from; nil discards output.
    package var serial: (any SerialSink)?
    /// Whether COM1 exists at all.
    var com1Enabled: Bool
    var com1Base: UInt16 = 0x3F8
    var com1IRQ: Int = 4
    /// Top of RAM below 4 GiB (where the PCI hole starts). nil follows `GuestMemory`'s
    /// split: RAM above `GuestMemory.lowMemoryLimit` (3 GiB) is relocated to 4 GiB.
    var lowMemoryTop: UInt64?
    /// ISA IRQs whose ELCR bit is preset level-triggered at reset (the PCI INTx lines).
    var levelTriggeredIRQs: [Int] = [10, 11]
    /// Base port of the isa-debug-exit result port; nil leaves it out.
    var debugExitPort: UInt16? = DebugExit.defaultBase
    /// Where the firmware's debug console (port 0x402) goes; nil leaves the port out, so
    /// the firmware does not log (it probes the port before writing).
    package var firmwareLog: (any SerialSink)?
    /// The firmware boot order written to CMOS (at most three devices are kept).
    package var bootOrder: [CMOSBootDevice] = []

    package init(memorySize: UInt64, vcpuCount: Int, serial: (any SerialSink)? = nil,
                com1Enabled: Bool = true) {
        self.memorySize = memorySize
        self.vcpuCount = vcpuCount
        self.serial = serial
        self.com1Enabled = com1Enabled
    }

    /// RAM below 4 GiB.
    var memoryBelow4GiB: UInt64 {
        let top = lowMemoryTop ?? GuestMemory.lowMemoryLimit
        return min(memorySize, top)
    }

    /// RAM relocated above 4 GiB.
    var memoryAbove4GiB: UInt64 { memorySize - memoryBelow4GiB }
}

/// Errors from building a chipset.
enum ChipsetError: Error, CustomStringConvertible, Equatable {
    case invalidVCPUCount(Int)
    case invalidIRQ(name: String, irq: Int)

    var description: String {
        switch self {
        case .invalidVCPUCount(let n):
            return "numvcpus = \(n): the chipset supports 1 to 254 vCPUs (xAPIC IDs)"
        case let .invalidIRQ(name, irq):
            return "\(name) IRQ \(irq) is not an ISA IRQ (0-15, not 2)"
        }
    }
}
