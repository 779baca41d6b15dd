import CKVM
import Glibc

/// Suspend and restore of a KVM vCPU: the `kvm_*` structs of <linux/kvm.h> (x86-64)
/// byte for byte, and the MSRs a 64-bit guest programs that `kvm_sregs` lacks.
/// With the user-space irqchip there is no in-kernel LAPIC or MP state to save: the
/// VMkernel's chipset holds them. An interrupt injected but not yet delivered travels in
/// `sregs.interrupt_bitmap` and `events`.
extension KVMVirtualCPU {
    static let stateBackend = "kvm-x86_64"

    /// SYSENTER_CS/ESP/EIP, PAT, MISC_ENABLE, STAR, LSTAR, CSTAR, SFMASK, KERNEL_GS_BASE,
    /// TSC_AUX, and the TSC last (KVM adjusts the offset when it is written).
    static let savedMSRs: [UInt32] = [0x174, 0x175, 0x176, 0x277, 0x1A0, 0xC000_0081, 0xC000_0082,
                                      0xC000_0083, 0xC000_0084, 0xC000_0102, 0xC000_0103, 0x10]

    /// One vCPU ioctl that reads or writes a struct of type T.
    private func transfer<T>(_ request: UInt, _ name: String, into value: inout T) throws {
        guard ioctl(fd, request, &value) == 0 else { throw KVMError(call: name, errno: errno) }
    }

    private static func bytes<T>(of value: T) -> [UInt8] {
        withUnsafeBytes(of: value) { Array($0) }
    }

    private static func value<T>(_ key: String, from state: VCPUState, empty: T) throws -> T {
        guard let b = state.registers[key] else { throw VCPUStateError("vCPU state lacks its '\(key)' register file") }
        guard b.count == MemoryLayout<T>.size else {
            throw VCPUStateError("vCPU register file '\(key)' has \(b.count) bytes, this host's \(T.self) has \(MemoryLayout<T>.size)")
        }
        var v = empty
        withUnsafeMutableBytes(of: &v) { $0.copyBytes(from: b) }
        return v
    }

    func saveState() throws -> VCPUState {
        var state = VCPUState(backend: Self.stateBackend)
        var regs = kvm_regs()
        try transfer(CKVM_GET_REGS, "KVM_GET_REGS", into: &regs)
        state.registers["regs"] = Self.bytes(of: regs)
        var sregs = kvm_sregs()
        try transfer(CKVM_GET_SREGS, "KVM_GET_SREGS", into: &sregs)
        state.registers["sregs"] = Self.bytes(of: sregs)
        var fpu = kvm_fpu()
        try transfer(CKVM_GET_FPU, "KVM_GET_FPU", into: &fpu)
        state.registers["fpu"] = Self.bytes(of: fpu)
        var events = kvm_vcpu_events()
        try transfer(CKVM_GET_VCPU_EVENTS, "KVM_GET_VCPU_EVENTS", into: &events)
        state.registers["events"] = Self.bytes(of: events)
        var debug = kvm_debugregs()
        try transfer(CKVM_GET_DEBUGREGS, "KVM_GET_DEBUGREGS", into: &debug)
        state.registers["debugregs"] = Self.bytes(of: debug)
        // One MSR per call: KVM_GET_MSRS stops at the first index it does not know, and
        // an MSR this KVM lacks is one the guest cannot have programmed.
        for index in Self.savedMSRs {
            var msrs = ckvm_msrs()
            msrs.header.nmsrs = 1
            msrs.entries.0.index = index
            if ioctl(fd, CKVM_GET_MSRS, &msrs) == 1 {
                state.msrs.append(.init(index: index, value: msrs.entries.0.data))
            }
        }
        return state
    }

    /// Loads a saved state, in the order KVM expects (registers, FPU, special registers,
    /// MSRs, events, debug registers).
    func restoreState(_ state: VCPUState) throws {
        beforePaging = true
        guard state.backend == Self.stateBackend else {
            throw VCPUStateError("vCPU state was saved by backend '\(state.backend)', this host runs '\(Self.stateBackend)'")
        }
        guard state.msrs.count <= Int(CKVM_MAX_MSRS) else {
            throw VCPUStateError("vCPU state holds \(state.msrs.count) MSRs, more than the \(CKVM_MAX_MSRS) this host saves")
        }
        var regs = try Self.value("regs", from: state, empty: kvm_regs())
        var fpu = try Self.value("fpu", from: state, empty: kvm_fpu())
        var sregs = try Self.value("sregs", from: state, empty: kvm_sregs())
        var events = try Self.value("events", from: state, empty: kvm_vcpu_events())
        var debug = try Self.value("debugregs", from: state, empty: kvm_debugregs())
        try transfer(CKVM_SET_REGS, "KVM_SET_REGS", into: &regs)
        try transfer(CKVM_SET_FPU, "KVM_SET_FPU", into: &fpu)
        try transfer(CKVM_SET_SREGS, "KVM_SET_SREGS", into: &sregs)
        if !state.msrs.isEmpty {
            var msrs = ckvm_msrs()
            msrs.header.nmsrs = UInt32(state.msrs.count)
            withUnsafeMutableBytes(of: &msrs.entries) { raw in
                let entries = raw.bindMemory(to: kvm_msr_entry.self)
                for (i, m) in state.msrs.enumerated() { entries[i] = kvm_msr_entry(index: m.index, reserved: 0, data: m.value) }
            }
            let set = ioctl(fd, CKVM_SET_MSRS, &msrs)
            guard set == Int32(state.msrs.count) else {
                let refused = set >= 0 ? " (refused MSR 0x\(String(state.msrs[Int(set)].index, radix: 16)))" : ""
                throw VCPUStateError("KVM_SET_MSRS took \(max(set, 0)) of \(state.msrs.count) MSRs\(refused)")
            }
        }
        events.flags = CKVM_VCPUEVENT_VALID_NMI_PENDING | (events.flags & CKVM_VCPUEVENT_VALID_SHADOW)
        try transfer(CKVM_SET_VCPU_EVENTS, "KVM_SET_VCPU_EVENTS", into: &events)
        debug.flags = 0
        try transfer(CKVM_SET_DEBUGREGS, "KVM_SET_DEBUGREGS", into: &debug)
    }
}
