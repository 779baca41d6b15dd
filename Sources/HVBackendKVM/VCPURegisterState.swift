/// The registers a backend loads into a vCPU before it runs (`VirtualCPU.setRegisters`):
/// what the boot loader computes for the boot processor, or what a STARTUP IPI leaves an
/// application processor in. Plain values, independent of how they were computed; the KVM
/// backend copies them into `kvm_regs`/`kvm_sregs`. Registers not listed are zero.
package struct VCPURegisterState: Equatable, Sendable {
    /// A segment register with its hidden descriptor cache, as `kvm_segment` holds it.
    package struct Segment: Equatable, Sendable {
        package var selector: UInt16
        package var base: UInt64
        /// Byte-granular limit as held in the descriptor cache: 0xFFFFFFFF for a flat
        /// 4 GiB segment with `g` set (the descriptor holds `limit >> 12` then).
        package var limit: UInt32
        /// The 4-bit type field (code 0xB = execute/read, accessed; data 0x3 =
        /// read/write, accessed; system 0xB = busy TSS, 0x2 = LDT).
        package var type: UInt8
        package var present: Bool
        package var dpl: UInt8
        /// D/B: 32-bit default operand size (must be clear for a 64-bit code segment).
        package var db: Bool
        /// S: code/data (true) or system (false) descriptor.
        package var s: Bool
        /// L: 64-bit code segment.
        package var l: Bool
        /// G: limit in 4 KiB units.
        package var g: Bool
        package var avl: Bool
        /// The register holds no usable segment (KVM's `unusable`, VMX's access-rights bit 16).
        package var unusable: Bool

        package init(selector: UInt16, base: UInt64, limit: UInt32, type: UInt8, present: Bool, dpl: UInt8,
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
    }

    /// GDTR / IDTR.
    package struct DescriptorTable: Equatable, Sendable {
        var base: UInt64
        var limit: UInt16
        package init(base: UInt64, limit: UInt16) {
            self.base = base
            self.limit = limit
        }
    }

    package var rip: UInt64
    package var rsp: UInt64
    package var rbx: UInt64
    package var rsi: UInt64
    /// The multiboot entry's magic; 0 for every other entry.
    package var rax: UInt64 = 0
    /// Bit 1 is always set; interrupts are off.
    package var rflags: UInt64
    package var cr0: UInt64
    package var cr3: UInt64
    package var cr4: UInt64
    package var efer: UInt64
    package var gdt: DescriptorTable
    package var idt: DescriptorTable
    package var cs: Segment
    package var ds: Segment
    package var es: Segment
    package var fs: Segment
    package var gs: Segment
    package var ss: Segment
    package var tr: Segment
    package var ldtr: Segment

    package init(rip: UInt64, rsp: UInt64, rbx: UInt64, rsi: UInt64, rflags: UInt64, cr0: UInt64, cr3: UInt64,
                cr4: UInt64, efer: UInt64, gdt: DescriptorTable, idt: DescriptorTable, cs: Segment,
                ds: Segment, es: Segment, fs: Segment, gs: Segment, ss: Segment,
                tr: Segment, ldtr: Segment) {
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
}
