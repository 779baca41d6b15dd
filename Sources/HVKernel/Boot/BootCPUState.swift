/// The boot processor's registers at the kernel's first instruction, independent of
/// any execution backend (a KVM backend copies it into `kvm_regs`/`kvm_sregs`).
/// Registers not listed are zero.
public struct BootCPUState: Equatable, Sendable {
    /// A segment register with its hidden descriptor cache, as `kvm_segment` holds it.
    public struct SegmentState: Equatable, Sendable {
        public var selector: UInt16
        public var base: UInt64
        /// Byte-granular limit as held in the descriptor cache: 0xFFFFFFFF for a flat
        /// 4 GiB segment with `g` set (the descriptor holds `limit >> 12` then).
        public var limit: UInt32
        /// The 4-bit type field (code 0xB = execute/read, accessed; data 0x3 =
        /// read/write, accessed; system 0xB = busy TSS, 0x2 = LDT).
        public var type: UInt8
        public var present: Bool
        public var dpl: UInt8
        /// D/B: 32-bit default operand size (must be clear for a 64-bit code segment).
        public var db: Bool
        /// S: code/data (true) or system (false) descriptor.
        public var s: Bool
        /// L: 64-bit code segment.
        public var l: Bool
        /// G: limit in 4 KiB units.
        public var g: Bool
        public var avl: Bool
        /// The register holds no usable segment (KVM's `unusable`, VMX's access-rights bit 16).
        public var unusable: Bool

        public init(selector: UInt16, base: UInt64, limit: UInt32, type: UInt8, present: Bool, dpl: UInt8,
                    db: Bool, s: Bool, l: Bool, g: Bool, avl: Bool, unusable: Bool) {
            self.selector = selector
            self.base = base
            self.limit = limit
            self.type = type
            self.present = present
            self.dpl = dpl
            self.db = db
            self.s = s
            self.l = l
            self.g = g
            self.avl = avl
            self.unusable = unusable
        }

        /// Flat 4 GiB code segment: 32-bit (PVH) or 64-bit (`long`).
        public static func flatCode(selector: UInt16, long: Bool) -> SegmentState {
            SegmentState(selector: selector, base: 0, limit: 0xFFFF_FFFF, type: 0xB, present: true, dpl: 0,
                         db: !long, s: true, l: long, g: true, avl: false, unusable: false)
        }

        /// Flat 4 GiB read/write data segment.
        public static func flatData(selector: UInt16) -> SegmentState {
            SegmentState(selector: selector, base: 0, limit: 0xFFFF_FFFF, type: 0x3, present: true, dpl: 0,
                         db: true, s: true, l: false, g: true, avl: false, unusable: false)
        }

        /// Busy TSS at base 0, limit 0x67 (KVM requires a usable TR even in protected mode).
        public static func busyTSS(selector: UInt16) -> SegmentState {
            SegmentState(selector: selector, base: 0, limit: 0x67, type: 0xB, present: true, dpl: 0,
                         db: false, s: false, l: false, g: false, avl: false, unusable: false)
        }

        /// No LDT.
        public static let unusableLDT = SegmentState(selector: 0, base: 0, limit: 0, type: 0x2, present: false,
                                                     dpl: 0, db: false, s: false, l: false, g: false,
                                                     avl: false, unusable: true)

        /// The 8-byte GDT descriptor for this segment (low 32 bits of `base`; a 64-bit
        /// system descriptor's upper half is the base's high 32 bits, written separately).
        public var descriptor: UInt64 {
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

    /// GDTR / IDTR.
    public struct DescriptorTable: Equatable, Sendable {
        public var base: UInt64
        public var limit: UInt16
        public init(base: UInt64, limit: UInt16) {
            self.base = base
            self.limit = limit
        }
    }

    public var rip: UInt64
    public var rsp: UInt64
    public var rbx: UInt64
    public var rsi: UInt64
    /// Bit 1 is always set; interrupts are off.
    public var rflags: UInt64
    public var cr0: UInt64
    public var cr3: UInt64
    public var cr4: UInt64
    public var efer: UInt64
    public var gdt: DescriptorTable
    public var idt: DescriptorTable
    public var cs: SegmentState
    public var ds: SegmentState
    public var es: SegmentState
    public var fs: SegmentState
    public var gs: SegmentState
    public var ss: SegmentState
    public var tr: SegmentState
    public var ldtr: SegmentState

    public init(rip: UInt64, rsp: UInt64, rbx: UInt64, rsi: UInt64, rflags: UInt64, cr0: UInt64, cr3: UInt64,
                cr4: UInt64, efer: UInt64, gdt: DescriptorTable, idt: DescriptorTable, cs: SegmentState,
                ds: SegmentState, es: SegmentState, fs: SegmentState, gs: SegmentState, ss: SegmentState,
                tr: SegmentState, ldtr: SegmentState) {
        self.rip = rip
        self.rsp = rsp
        self.rbx = rbx
        self.rsi = rsi
        self.rflags = rflags
        self.cr0 = cr0
        self.cr3 = cr3
        self.cr4 = cr4
        self.efer = efer
        self.gdt = gdt
        self.idt = idt
        self.cs = cs
        self.ds = ds
        self.es = es
        self.fs = fs
        self.gs = gs
        self.ss = ss
        self.tr = tr
        self.ldtr = ldtr
    }

    public static let cr0PE: UInt64 = 1 << 0
    public static let cr0ET: UInt64 = 1 << 4
    public static let cr0PG: UInt64 = 1 << 31
    public static let cr4PAE: UInt64 = 1 << 5
    public static let eferLME: UInt64 = 1 << 8
    public static let eferLMA: UInt64 = 1 << 10
    public static let rflagsReserved: UInt64 = 1 << 1

    /// Xen PVH entry: 32-bit protected mode, paging off, flat CS 0x10 / data 0x18,
    /// EBX = start-info address.
    public static func pvh(entry: UInt32, startInfo: UInt64) -> BootCPUState {
        let data = SegmentState.flatData(selector: BootLayout.dataSelector)
        return BootCPUState(
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
    public static func longMode(entry: UInt64, startInfo: UInt64, pml4: UInt64) -> BootCPUState {
        let data = SegmentState.flatData(selector: BootLayout.dataSelector)
        return BootCPUState(
            rip: entry, rsp: BootLayout.stackTop, rbx: startInfo, rsi: startInfo, rflags: rflagsReserved,
            cr0: cr0PG | cr0ET | cr0PE, cr3: pml4, cr4: cr4PAE, efer: eferLME | eferLMA,
            gdt: DescriptorTable(base: BootLayout.gdtAddress, limit: BootLayout.gdtLimit),
            idt: DescriptorTable(base: 0, limit: 0),
            cs: .flatCode(selector: BootLayout.codeSelector, long: true),
            ds: data, es: data, fs: data, gs: data, ss: data,
            tr: .busyTSS(selector: BootLayout.tssSelector), ldtr: .unusableLDT)
    }
}
