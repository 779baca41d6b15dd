import HVBackendKVM

/// The boot processor's state at the kernel's first instruction is a `VCPURegisterState`
/// (the backend's value type); the boot loader adds the x86 constants, the two entry
/// states (PVH, 64-bit) and the flat segments whose GDT descriptors it writes.
extension VCPURegisterState.Segment {
    /// Flat 4 GiB code segment: 32-bit (PVH) or 64-bit (`long`).
    static func flatCode(selector: UInt16, long: Bool) -> Self {
        Self(selector: selector, base: 0, limit: 0xFFFF_FFFF, type: 0xB, present: true, dpl: 0,
             db: !long, s: true, l: long, g: true, avl: false, unusable: false)
    }

    /// Flat 4 GiB read/write data segment.
    static func flatData(selector: UInt16) -> Self {
        Self(selector: selector, base: 0, limit: 0xFFFF_FFFF, type: 0x3, present: true, dpl: 0,
             db: true, s: true, l: false, g: true, avl: false, unusable: false)
    }

    /// Busy TSS at base 0, limit 0x67 (KVM requires a usable TR even in protected mode).
    static func busyTSS(selector: UInt16) -> Self {
        Self(selector: selector, base: 0, limit: 0x67, type: 0xB, present: true, dpl: 0,
             db: false, s: false, l: false, g: false, avl: false, unusable: false)
    }

    /// No LDT.
    static let unusableLDT = Self(selector: 0, base: 0, limit: 0, type: 0x2, present: false,
                                         dpl: 0, db: false, s: false, l: false, g: false,
                                         avl: false, unusable: true)

    /// The 8-byte GDT descriptor for this segment (low 32 bits of `base`; a 64-bit
    /// system descriptor's upper half is the base's high 32 bits, written separately).
    var descriptor: UInt64 {
        let rawLimit = UInt64(g ? limit >> 12 : limit) & 0xF_FFFF
        let b = base & 0xFFFF_FFFF
        var d = rawLimit & 0xFFFF
        d |= (b & 0xFF_FFFF) << 16
        d |= UInt64(type & 0xF) << 40
        if s { d |= 1 << 44 }
        d |= UInt64(dpl & 3) << 45
        if present { d |= 1 << 47 }
        d |= (rawLimit >> 16) << 48
        if avl { d |= 1 << 52 }
        if l { d |= 1 << 53 }
        if db { d |= 1 << 54 }
        if g { d |= 1 << 55 }
        d |= (b >> 24) << 56
        return d
    }
}

extension VCPURegisterState {
    static let cr0PE: UInt64 = 1 << 0
    static let cr0ET: UInt64 = 1 << 4
    static let cr0PG: UInt64 = 1 << 31
    static let cr4PAE: UInt64 = 1 << 5
    static let eferLME: UInt64 = 1 << 8
    static let eferLMA: UInt64 = 1 << 10
    static let rflagsReserved: UInt64 = 1 << 1

    /// Xen PVH entry: 32-bit protected mode, paging off, flat CS 0x10 / data 0x18,
    /// EBX = start-info address.
    static func pvh(entry: UInt32, startInfo: UInt64) -> VCPURegisterState {
        let data = Segment.flatData(selector: BootLayout.dataSelector)
        return VCPURegisterState(
            rip: UInt64(entry), rsp: BootLayout.stackTop, rbx: startInfo, rsi: 0, rflags: rflagsReserved,
            cr0: cr0PE | cr0ET, cr3: 0, cr4: 0, efer: 0,
            gdt: DescriptorTable(base: BootLayout.gdtAddress, limit: BootLayout.gdtLimit),
            idt: DescriptorTable(base: 0, limit: 0),
            cs: .flatCode(selector: BootLayout.codeSelector, long: false),
            ds: data, es: data, fs: data, gs: data, ss: data,
            tr: .busyTSS(selector: BootLayout.tssSelector), ldtr: .unusableLDT)
    }

    /// 64-bit entry: long mode, paging on with the boot identity map (CR3 = PML4),
    /// 64-bit CS 0x10, data 0x18, RBX = RSI = start-info address.
    static func longMode(entry: UInt64, startInfo: UInt64, pml4: UInt64) -> VCPURegisterState {
        let data = Segment.flatData(selector: BootLayout.dataSelector)
        return VCPURegisterState(
            rip: entry, rsp: BootLayout.stackTop, rbx: startInfo, rsi: startInfo, rflags: rflagsReserved,
            cr0: cr0PG | cr0ET | cr0PE, cr3: pml4, cr4: cr4PAE, efer: eferLME | eferLMA,
            gdt: DescriptorTable(base: BootLayout.gdtAddress, limit: BootLayout.gdtLimit),
            idt: DescriptorTable(base: 0, limit: 0),
            cs: .flatCode(selector: BootLayout.codeSelector, long: true),
            ds: data, es: data, fs: data, gs: data, ss: data,
            tr: .busyTSS(selector: BootLayout.tssSelector), ldtr: .unusableLDT)
    }
}

extension VCPURegisterState {
    static let cr0CD: UInt64 = 1 << 30
    static let cr0NW: UInt64 = 1 << 29

    /// The processor after RESET: real mode, CS selector 0xF000 with base 0xFFFF0000,
    /// IP 0xFFF0, so the first fetch is at 0xFFFFFFF0 (the firmware's reset vector);
    /// 64 KiB segments, caches disabled (CR0 = 0x60000010), interrupts off.
    static let resetVector: VCPURegisterState = {
        let data = Segment(selector: 0, base: 0, limit: 0xFFFF, type: 0x3, present: true, dpl: 0,
                           db: false, s: true, l: false, g: false, avl: false, unusable: false)
        let code = Segment(selector: 0xF000, base: 0xFFFF_0000, limit: 0xFFFF, type: 0xB, present: true, dpl: 0,
                           db: false, s: true, l: false, g: false, avl: false, unusable: false)
        let tr = Segment(selector: 0, base: 0, limit: 0xFFFF, type: 0xB, present: true, dpl: 0,
                         db: false, s: false, l: false, g: false, avl: false, unusable: false)
        let ldt = Segment(selector: 0, base: 0, limit: 0xFFFF, type: 0x2, present: true, dpl: 0,
                          db: false, s: false, l: false, g: false, avl: false, unusable: false)
        return VCPURegisterState(
            rip: 0xFFF0, rsp: 0, rbx: 0, rsi: 0, rflags: rflagsReserved,
            cr0: cr0CD | cr0NW | cr0ET, cr3: 0, cr4: 0, efer: 0,
            gdt: .init(base: 0, limit: 0xFFFF), idt: .init(base: 0, limit: 0xFFFF),
            cs: code, ds: data, es: data, fs: data, gs: data, ss: data, tr: tr, ldtr: ldt)
    }()
}
