import Glibc
import Testing
@testable import HVBackendKVM
@testable import HVMemory

/// The KVM backend on its own: a VM with guest RAM mapped and a vCPU loaded with a
/// register state. Needs /dev/kvm; skipped (visibly) without it.
@Suite struct BackendKVMTests {
    static let hasKVM = access("/dev/kvm", R_OK | W_OK) == 0

    @Test func missingDeviceIsExplained() {
        let e = #expect(throws: KVMError.self) { try KVMSystem(path: "/nonexistent/kvm") }
        #expect(e?.description.contains("does not exist") == true)
    }

    @Test(.enabled(if: hasKVM, "needs /dev/kvm"))
    func vcpuTakesARegisterStateOnAMappedVM() throws {
        let kvm = try KVMSystem()
        let vm = try kvm.makeVirtualMachine()
        let memory = try GuestMemory(size: 2 << 20)
        try vm.map(memory: memory)
        let vcpu = try vm.makeVCPU(index: 0, cpuid: CPUIDPolicy(), lapicBase: 0xFEE0_0000)
        typealias Segment = VCPURegisterState.Segment
        let code = Segment(selector: 0x10, base: 0, limit: 0xFFFF_FFFF, type: 0xB, present: true, dpl: 0,
                           db: true, s: true, l: false, g: true, avl: false, unusable: false)
        let data = Segment(selector: 0x18, base: 0, limit: 0xFFFF_FFFF, type: 0x3, present: true, dpl: 0,
                           db: true, s: true, l: false, g: true, avl: false, unusable: false)
        let tss = Segment(selector: 0x20, base: 0, limit: 0x67, type: 0xB, present: true, dpl: 0,
                          db: false, s: false, l: false, g: false, avl: false, unusable: false)
        let noLDT = Segment(selector: 0, base: 0, limit: 0, type: 0x2, present: false, dpl: 0,
                            db: false, s: false, l: false, g: false, avl: false, unusable: true)
        // 32-bit protected mode, paging off (the PVH entry shape), built without Boot.
        try vcpu.setRegisters(VCPURegisterState(
            rip: 0x10_0000, rsp: 0x10000, rbx: 0x7000, rsi: 0, rflags: 0x2, cr0: 0x11, cr3: 0, cr4: 0, efer: 0,
            gdt: .init(base: 0x6000, limit: 0x2F), idt: .init(base: 0, limit: 0),
            cs: code, ds: data, es: data, fs: data, gs: data, ss: data, tr: tss, ldtr: noLDT))
        #expect(vcpu.index == 0)
        #expect(vcpu.exitCount == 0)
        #expect(vcpu.registerSummary().contains("rip=0x100000"))
    }
}
