import CKVM
import Testing
@testable import HVBackendKVM

/// Interrupt delivery and IRET done by the VMM in protected mode without paging, on a
/// segment with a base (iPXE's "virtual addressing"): the frame goes to SS.base + ESP.
@Suite struct ProtectedModeInterruptsTests {
    /// 1 MiB of guest RAM with a GDT at 0x1000 (null, 0x08 code and 0x10 data, both based
    /// at 0x40000 and 4 GiB) and an IDT at 0x2000 (vector 0x20 a 32-bit interrupt gate to
    /// 0x08:0x500, 0x21 a trap gate, 0x22 a 16-bit interrupt gate, 0x23 not present).
    final class Machine {
        var bytes = [UInt8](repeating: 0, count: 1 << 20)
        var regs = kvm_regs()
        var sregs = kvm_sregs()
        static let base: UInt64 = 0x40000

        init() {
            descriptor(0x1008, access: 0x9B)
            descriptor(0x1010, access: 0x93)
            gate(0x20, type: 0x8E)
            gate(0x21, type: 0x8F)
            gate(0x22, type: 0x86)
            gate(0x23, type: 0x0E)
            regs.rip = 0x1234
            regs.rsp = 0x8000
            regs.rflags = 0x202
            sregs.cr0 = 0x11
            sregs.gdt.base = 0x1000
            sregs.gdt.limit = 0x17
            sregs.idt.base = 0x2000
            sregs.idt.limit = 0x23 * 8 + 7
            sregs.cs = ProtectedModeInterrupts.codeSegment(0x08, sregs: sregs, read: read)!
            sregs.ss = sregs.cs
            sregs.ss.selector = 0x10
            sregs.ss.type = 3
        }

        private func descriptor(_ at: Int, access: UInt8) {
            bytes.replaceSubrange(at..<(at + 8), with: [0xFF, 0xFF, 0x00, 0x00, 0x04, access, 0xCF, 0x00])
        }

        private func gate(_ vector: Int, type: UInt8) {
            let at = 0x2000 + vector * 8
            bytes.replaceSubrange(at..<(at + 8), with: [0x00, 0x05, 0x08, 0x00, 0x00, type, 0x00, 0x00])
        }

        func read(_ address: UInt64, _ count: Int) -> [UInt8]? {
            guard address + UInt64(count) <= UInt64(bytes.count) else { return nil }
            return Array(bytes[Int(address)..<(Int(address) + count)])
        }

        var ram: ProtectedModeInterrupts.RAM {
            .init(read: read, write: { address, data in
                guard address + UInt64(data.count) <= UInt64(self.bytes.count) else { return false }
                self.bytes.replaceSubrange(Int(address)..<(Int(address) + data.count), with: data)
                return true
            })
        }

        func dword(_ at: UInt64) -> UInt32 {
            (0..<4).reduce(UInt32(0)) { $0 | UInt32(bytes[Int(at) + $1]) << (8 * UInt32($1)) }
        }

        func deliver(_ vector: UInt8) -> Bool {
            ProtectedModeInterrupts.deliver(vector: vector, regs: &regs, sregs: &sregs, ram: ram)
        }

        func iret(_ instruction: [UInt8] = [0xCF]) -> Bool {
            ProtectedModeInterrupts.returnFromInterrupt(instruction: instruction, regs: &regs, sregs: &sregs, ram: ram)
        }
    }

    @Test func interruptGoesThroughTheGateWithItsFrameAtSSBaseAndIRETComesBack() {
        let m = Machine()
        #expect(m.deliver(0x20))
        #expect(m.regs.rip == 0x500)
        #expect(m.regs.rsp == 0x7FF4)
        #expect(m.regs.rflags == 0x2)                       // an interrupt gate clears IF
        #expect(m.sregs.cs.selector == 0x08 && m.sregs.cs.base == Machine.base && m.sregs.cs.db == 1)
        let frame = Machine.base + 0x7FF4
        #expect([m.dword(frame), m.dword(frame + 4), m.dword(frame + 8)] == [0x1234, 0x08, 0x202])

        m.regs.rflags = 0x2 | 0x1                           // the handler left CF set
        #expect(m.iret())
        #expect(m.regs.rip == 0x1234)
        #expect(m.regs.rsp == 0x8000)
        #expect(m.regs.rflags == 0x202)                     // EFLAGS from the frame
        #expect(m.sregs.cs.selector == 0x08)
    }

    @Test func trapGateKeepsInterruptsEnabled() {
        let m = Machine()
        #expect(m.deliver(0x21))
        #expect(m.regs.rflags == 0x202)
    }

    @Test func operandSizePrefixPopsA16BitFrame() {
        let m = Machine()
        m.bytes.replaceSubrange(Int(Machine.base) + 0x8000..<Int(Machine.base) + 0x8006, with: [0x78, 0x56, 0x08, 0x00, 0x46, 0x02])
        #expect(m.iret([0x66, 0xCF]))
        #expect(m.regs.rip == 0x5678)
        #expect(m.regs.rsp == 0x8006)
        #expect(m.regs.rflags == 0x246)
    }

    /// Cases the VMM leaves to KVM (or to fail as before): nothing may change.
    @Test(arguments: ["paging", "16-bit gate", "absent gate", "beyond the IDT", "v8086", "lower privilege"])
    func deliveryRefusals(_ name: String) {
        let m = Machine()
        var vector: UInt8 = 0x20
        switch name {
        case "paging": m.sregs.cr0 |= 1 << 31
        case "16-bit gate": vector = 0x22
        case "absent gate": vector = 0x23
        case "beyond the IDT": vector = 0x24
        case "v8086": m.regs.rflags |= 1 << 17
        default: m.sregs.ss.dpl = 3; m.sregs.cs.dpl = 3
        }
        let (regs, sregs, bytes) = (m.regs, m.sregs, m.bytes)
        #expect(!m.deliver(vector))
        #expect(m.regs.rip == regs.rip && m.regs.rsp == regs.rsp && m.regs.rflags == regs.rflags)
        #expect(m.sregs.cs.selector == sregs.cs.selector && m.bytes == bytes)
    }

    @Test(arguments: ["not IRET", "LDT selector", "data segment", "null selector", "beyond SS", "nested task", "EIP beyond CS"])
    func returnRefusals(_ name: String) {
        let m = Machine()
        let frame = Int(Machine.base) + 0x8000
        func put(_ eip: UInt32, _ cs: UInt32, _ flags: UInt32) {
            let words = [eip, cs, flags].flatMap { v in (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * UInt32($0))) } }
            m.bytes.replaceSubrange(frame..<(frame + 12), with: words)
        }
        put(0x1234, 0x08, 0x202)
        var instruction: [UInt8] = [0xCF]
        switch name {
        case "not IRET": instruction = [0x90, 0xCF]
        case "LDT selector": put(0x1234, 0x0C, 0x202)
        case "data segment": put(0x1234, 0x10, 0x202)
        case "null selector": put(0x1234, 0x00, 0x202)
        case "beyond SS": m.sregs.ss.limit = 0x8004
        case "nested task": m.regs.rflags |= 1 << 14
        default: m.sregs.gdt.limit = 0x17; m.bytes[0x1008] = 0x00; m.bytes[0x1009] = 0x10; m.bytes[0x100E] = 0x40   // 4 KiB, byte-granular
                 put(0x2000, 0x08, 0x202)
        }
        let regs = m.regs
        #expect(!m.iret(instruction))
        #expect(m.regs.rip == regs.rip && m.regs.rsp == regs.rsp && m.regs.rflags == regs.rflags)
    }
}
