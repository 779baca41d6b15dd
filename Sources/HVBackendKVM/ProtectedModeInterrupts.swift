import CKVM

/// Interrupt delivery and IRET in 32-bit protected mode without paging, done by the VMM.
///
/// Hardware virtualization runs both natively. A host whose KVM emulates all 16/32-bit
/// guest code (this repository's PVM host) gets both wrong: KVM's instruction emulator
/// completes IRET in real mode only (an emulation failure otherwise), and its event
/// delivery pushes the interrupt frame at ESP without SS's base, so a handler on a
/// segment with a base (iPXE's "virtual addressing") returns through garbage. Firmware-era
/// guests take timer interrupts in exactly this mode, so the VMM delivers those itself
/// and completes the IRET, as the SDM's pseudo-code does for a same-privilege interrupt
/// or trap gate and a same-privilege return.
///
/// Anything else (paging on, virtual-8086 or task returns, 16-bit or task gates, another
/// privilege level, LDT selectors, a descriptor the CPU would refuse, a frame beyond SS's
/// limit) is left to KVM as before: the VMM does not guess at faults it would inject.
/// NMI blocking is KVM's and is not touched.
struct ProtectedModeInterrupts {
    /// Guest-physical RAM (linear = physical with paging off).
    struct RAM {
        var read: (_ address: UInt64, _ count: Int) -> [UInt8]?
        var write: (_ address: UInt64, _ bytes: [UInt8]) -> Bool
    }

    /// EFLAGS bits IRET loads at CPL 0 (all but VM and the reserved ones).
    static let loadableFlags: UInt64 = 0x3D_7FD5
    static let trapFlag: UInt64 = 1 << 8
    static let interruptFlag: UInt64 = 1 << 9
    static let iopl: UInt64 = 3 << 12
    static let nestedTask: UInt64 = 1 << 14
    static let resumeFlag: UInt64 = 1 << 16
    static let virtual8086: UInt64 = 1 << 17
    static let virtualInterruptBits: UInt64 = 3 << 19

    /// Protected mode, paging off, not long mode, not virtual-8086.
    static func applies(regs: kvm_regs, sregs: kvm_sregs) -> Bool {
        sregs.cr0 & 1 != 0 && sregs.cr0 & (1 << 31) == 0 && sregs.efer & (1 << 10) == 0
            && regs.rflags & virtual8086 == 0
    }

    /// Delivers external interrupt `vector` through a 32-bit interrupt or trap gate of the
    /// same privilege; false, with nothing changed, when this is not such a case.
    static func deliver(vector: UInt8, regs: inout kvm_regs, sregs: inout kvm_sregs, ram: RAM) -> Bool {
        guard applies(regs: regs, sregs: sregs) else { return false }
        let entry = UInt64(vector) * 8
        guard entry + 7 <= UInt64(sregs.idt.limit), let gate = ram.read(sregs.idt.base &+ entry, 8), gate.count == 8 else {
            return false
        }
        let kind = gate[5] & 0x1F                           // S = 0 and the type
        guard gate[5] & 0x80 != 0, kind == 0x0E || kind == 0x0F else { return false }
        let selector = UInt16(gate[2]) | UInt16(gate[3]) << 8
        let offset = UInt64(gate[0]) | UInt64(gate[1]) << 8 | UInt64(gate[6]) << 16 | UInt64(gate[7]) << 24
        let cpl = UInt16(sregs.ss.dpl)
        guard selector & 3 == cpl, let code = codeSegment(selector, sregs: sregs, read: ram.read),
              code.dpl == sregs.cs.dpl, offset <= UInt64(code.limit) else { return false }
        let stackMask: UInt64 = sregs.ss.db != 0 ? 0xFFFF_FFFF : 0xFFFF
        let top = (regs.rsp & stackMask) &- 12 & stackMask
        guard top + 11 <= UInt64(sregs.ss.limit) else { return false }
        let frame = [regs.rip, UInt64(sregs.cs.selector), regs.rflags].flatMap { v in
            (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * UInt64($0))) }
        }
        guard ram.write(sregs.ss.base &+ top, frame) else { return false }
        regs.rsp = (regs.rsp & ~stackMask) | top
        regs.rip = offset
        regs.rflags &= ~(trapFlag | nestedTask | resumeFlag | (kind == 0x0E ? interruptFlag : 0))
        sregs.cs = code
        return true
    }

    /// Completes the IRET `instruction` starts with (0xCF, optionally after 0x66); false,
    /// with nothing changed, when this is not a case it handles.
    static func returnFromInterrupt(instruction: [UInt8], regs: inout kvm_regs, sregs: inout kvm_sregs, ram: RAM) -> Bool {
        let prefixed: Bool
        switch (instruction.first, instruction.dropFirst().first) {
        case (0xCF, _): prefixed = false
        case (0x66, 0xCF): prefixed = true
        default: return false
        }
        guard applies(regs: regs, sregs: sregs), regs.rflags & nestedTask == 0 else { return false }
        let wide = (sregs.cs.db != 0) != prefixed
        let size = wide ? 4 : 2
        let stackMask: UInt64 = sregs.ss.db != 0 ? 0xFFFF_FFFF : 0xFFFF
        let offset = regs.rsp & stackMask
        guard offset + UInt64(3 * size) - 1 <= UInt64(sregs.ss.limit),
              let frame = ram.read(sregs.ss.base &+ offset, 3 * size), frame.count == 3 * size else { return false }
        func pop(_ i: Int) -> UInt64 {
            (0..<size).reduce(UInt64(0)) { $0 | UInt64(frame[i * size + $1]) << (8 * UInt64($1)) }
        }
        let eip = pop(0), selector = UInt16(truncatingIfNeeded: pop(1)), flags = pop(2)
        let cpl = UInt16(sregs.ss.dpl)
        guard selector & 3 == cpl, let code = codeSegment(selector, sregs: sregs, read: ram.read),
              eip <= UInt64(code.limit), !(wide && flags & virtual8086 != 0) else { return false }
        var loadable = loadableFlags & (wide ? 0xFFFF_FFFF : 0xFFFF)
        if cpl > (regs.rflags & iopl) >> 12 { loadable &= ~interruptFlag }
        if cpl != 0 { loadable &= ~(iopl | virtualInterruptBits) }
        regs.rflags = (regs.rflags & ~loadable) | (flags & loadable) | 2
        regs.rip = eip
        regs.rsp = (regs.rsp & ~stackMask) | ((offset + UInt64(3 * size)) & stackMask)
        sregs.cs = code
        return true
    }

    /// The code-segment descriptor `selector` names in the GDT, as KVM holds a loaded
    /// segment; nil where loading it would fault (null, LDT, beyond the table, not a
    /// present code segment of the right privilege).
    static func codeSegment(_ selector: UInt16, sregs: kvm_sregs, read: (UInt64, Int) -> [UInt8]?) -> kvm_segment? {
        let index = UInt64(selector & ~7)
        guard index != 0, selector & 4 == 0, index + 7 <= UInt64(sregs.gdt.limit),
              let d = read(sregs.gdt.base &+ index, 8), d.count == 8 else { return nil }
        let access = d[5], flags = d[6]
        let type = access & 0xF, dpl = (access >> 5) & 3
        let conforming = type & 4 != 0
        guard access & 0x10 != 0, type & 8 != 0, access & 0x80 != 0,
              conforming ? UInt16(dpl) <= selector & 3 : UInt16(dpl) == selector & 3 else { return nil }
        var limit = UInt32(d[0]) | UInt32(d[1]) << 8 | UInt32(flags & 0xF) << 16
        if flags & 0x80 != 0 { limit = limit << 12 | 0xFFF }
        var s = kvm_segment()
        s.base = UInt64(d[2]) | UInt64(d[3]) << 8 | UInt64(d[4]) << 16 | UInt64(d[7]) << 24
        s.limit = limit
        s.selector = selector
        s.type = type | 1                                   // the CPU marks it accessed
        s.present = 1
        s.dpl = dpl
        s.db = (flags >> 6) & 1
        s.s = 1
        s.l = (flags >> 5) & 1
        s.g = flags >> 7
        s.avl = (flags >> 4) & 1
        return s
    }
}
