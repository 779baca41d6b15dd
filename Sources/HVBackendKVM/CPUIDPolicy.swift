import CKVM

/// The CPUID a vCPU advertises: what KVM supports, minus what this VMkernel does not
/// emulate (x2APIC, TSC deadline) and what KVM's instruction emulator cannot run on
/// shadow-paging hosts (CMPXCHG16B, XSAVE/AVX, PCID/INVPCID).
package struct CPUIDPolicy: Sendable {
    /// Advertise VMware's hypervisor signature ("VMwareVMware") instead of KVM's.
    var vmwareSignature: Bool
    package var vcpuCount: Int

    package init(vmwareSignature: Bool = false, vcpuCount: Int = 1) {
        self.vmwareSignature = vmwareSignature
        self.vcpuCount = vcpuCount
    }

    /// Edits KVM's supported entries for vCPU `index`.
    func apply(to entries: inout [kvm_cpuid_entry2], index: Int) {
        entries.removeAll { $0.function == 0xD }            // XSAVE state enumeration
        if vmwareSignature { entries.removeAll { $0.function >= 0x4000_0000 && $0.function < 0x4000_0100 } }
        for i in entries.indices {
            var e = entries[i]
            switch e.function {
            case 1:
                e.ecx &= ~(UInt32(1) << 3)                   // MONITOR/MWAIT
                e.ecx &= ~(UInt32(1) << 12)                  // FMA
                e.ecx &= ~(UInt32(1) << 13)                  // CMPXCHG16B
                e.ecx &= ~(UInt32(1) << 17)                  // PCID
                e.ecx &= ~(UInt32(1) << 21)                  // x2APIC (xAPIC MMIO only)
                e.ecx &= ~(UInt32(1) << 24)                  // TSC-deadline timer
                e.ecx &= ~(UInt32(0xF) << 26)                // XSAVE, OSXSAVE, AVX, F16C
                e.ecx |= UInt32(1) << 31                     // running under a hypervisor
                e.ebx = (e.ebx & 0x0000_FFFF) | UInt32(index) << 24 | UInt32(vcpuCount) << 16
                if vcpuCount > 1 { e.edx |= UInt32(1) << 28 } // HTT: several logical CPUs
            case 7 where e.index == 0:
                // Keep only BMI1/BMI2/ERMS/SMEP/SMAP-class bits that need no extended state.
                e.ebx &= (1 << 3) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 20)
                e.ecx = 0
                e.edx = 0
            case 7:
                e.eax = 0; e.ebx = 0; e.ecx = 0; e.edx = 0
            case 0xB, 0x1F:
                e.edx = UInt32(index)                        // x2APIC id = APIC id
            case 0x4000_0001 where !vmwareSignature:
                e.eax &= (1 << 0) | (1 << 3)                 // kvmclock only; no PV EOI/IPI
            default:
                break
            }
            entries[i] = e
        }
        if vmwareSignature {
            var sig = kvm_cpuid_entry2()
            sig.function = 0x4000_0000
            sig.eax = 0x4000_0010
            sig.ebx = 0x6177_4D56                            // "VMwa"
            sig.ecx = 0x4D56_6572                            // "reVM"
            sig.edx = 0x6572_6177                            // "ware"
            var timing = kvm_cpuid_entry2()
            timing.function = 0x4000_0010
            timing.eax = 1_000_000                           // TSC kHz (nominal)
            timing.ebx = 1_000_000                           // APIC bus kHz: 1 GHz
            entries.append(sig)
            entries.append(timing)
        }
    }
}
