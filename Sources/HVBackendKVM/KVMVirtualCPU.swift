import CKVM
import Glibc
import Synchronization

/// One KVM vCPU: its fd and the shared `kvm_run` page. All calls except `kick` are made
/// on the vCPU's own thread.
final class KVMVirtualCPU: VirtualCPU, @unchecked Sendable {
    let fd: Int32
    let index: Int
    private let run: UnsafeMutablePointer<kvm_run>
    private let runMapSize: Int
    private let thread = Mutex<pthread_t?>(nil)
    private let exits = Atomic<UInt64>(0)
    /// IA32_APIC_BASE loaded with the registers: the local-APIC page, enable, BSP flag.
    private let apicBase: UInt64
    /// Guest RAM, for interrupts the vCPU delivers and returns from itself.
    private let ram: ProtectedModeInterrupts.RAM
    /// Until the guest turns paging on, each interrupt checks whether the vCPU must
    /// deliver it itself (two register reads); loading registers starts over. vCPU thread.
    var beforePaging = true

    var exitCount: UInt64 { exits.load(ordering: .relaxed) }

    init(fd: Int32, index: Int, runMapSize: Int, apicBase: UInt64, ram: ProtectedModeInterrupts.RAM) throws {
        let p = mmap(nil, runMapSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        guard let p, p != MAP_FAILED else {
            let e = errno; close(fd)
            throw KVMError(call: "mmap(kvm_run)", errno: e)
        }
        self.fd = fd
        self.index = index
        self.runMapSize = runMapSize
        self.apicBase = apicBase
        self.ram = ram
        self.run = p.bindMemory(to: kvm_run.self, capacity: 1)
        KVMVirtualCPU.installKickHandler()
    }

    deinit {
        munmap(run, runMapSize)
        close(fd)
    }

    /// SIGUSR1 with a no-op handler and no SA_RESTART: delivering it to a thread inside
    /// KVM_RUN makes the ioctl return EINTR.
    private static let kickHandlerInstalled: Bool = {
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in }
        sigemptyset(&action.sa_mask)
        action.sa_flags = 0
        sigaction(SIGUSR1, &action, nil)
        return true
    }()

    private static func installKickHandler() { _ = kickHandlerInstalled }

    func bindToCurrentThread() {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGUSR1)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
        thread.withLock { $0 = pthread_self() }
    }

    /// Called by the vCPU thread before it ends: a kick must never signal a thread that
    /// is gone (pthread_kill on a joined thread's id is undefined; here it crashed).
    func unbindFromCurrentThread() {
        thread.withLock { $0 = nil }
    }

    func confineCurrentThread() throws {
        let rc = ckvm_confine_vcpu_thread()
        guard rc == 0 else { throw KVMError(call: "seccomp (vCPU thread filter)", errno: -rc) }
    }

    func kick() {
        run.pointee.immediate_exit = 1
        // Signal under the lock, so the thread cannot unbind and exit in between.
        thread.withLock { if let t = $0 { pthread_kill(t, SIGUSR1) } }
    }

    func setCPUID(_ entries: [kvm_cpuid_entry2]) throws {
        var cpuid = ckvm_cpuid()
        let count = min(entries.count, Int(CKVM_MAX_CPUID_ENTRIES))
        cpuid.header.nent = UInt32(count)
        withUnsafeMutableBytes(of: &cpuid.entries) { raw in
            let dst = raw.bindMemory(to: kvm_cpuid_entry2.self)
            for i in 0..<count { dst[i] = entries[i] }
        }
        guard ioctl(fd, CKVM_SET_CPUID2, &cpuid) == 0 else {
            throw KVMError(call: "KVM_SET_CPUID2", errno: errno)
        }
    }

    func setRegisters(_ state: VCPURegisterState) throws {
        beforePaging = true
        var sregs = kvm_sregs()
        guard ioctl(fd, CKVM_GET_SREGS, &sregs) == 0 else { throw KVMError(call: "KVM_GET_SREGS", errno: errno) }
        sregs.cs = Self.segment(state.cs)
        sregs.ds = Self.segment(state.ds)
        sregs.es = Self.segment(state.es)
        sregs.fs = Self.segment(state.fs)
        sregs.gs = Self.segment(state.gs)
        sregs.ss = Self.segment(state.ss)
        sregs.tr = Self.segment(state.tr)
        sregs.ldt = Self.segment(state.ldtr)
        sregs.gdt.base = state.gdt.base
        sregs.gdt.limit = state.gdt.limit
        sregs.idt.base = state.idt.base
        sregs.idt.limit = state.idt.limit
        sregs.cr0 = state.cr0
        sregs.cr3 = state.cr3
        sregs.cr4 = state.cr4
        sregs.efer = state.efer
        sregs.apic_base = apicBase
        guard ioctl(fd, CKVM_SET_SREGS, &sregs) == 0 else { throw KVMError(call: "KVM_SET_SREGS", errno: errno) }
        var regs = kvm_regs()
        regs.rip = state.rip
        regs.rsp = state.rsp
        regs.rbx = state.rbx
        regs.rsi = state.rsi
        regs.rax = state.rax
        regs.rflags = state.rflags | 0x2
        guard ioctl(fd, CKVM_SET_REGS, &regs) == 0 else { throw KVMError(call: "KVM_SET_REGS", errno: errno) }
    }

    private static func segment(_ s: VCPURegisterState.Segment) -> kvm_segment {
        kvm_segment(base: s.base, limit: s.limit, selector: s.selector, type: s.type,
                    present: s.present ? 1 : 0, dpl: s.dpl, db: s.db ? 1 : 0, s: s.s ? 1 : 0,
                    l: s.l ? 1 : 0, g: s.g ? 1 : 0, avl: s.avl ? 1 : 0,
                    unusable: s.unusable ? 1 : 0, padding: 0)
    }

    var canInjectInterrupt: Bool {
        run.pointee.ready_for_interrupt_injection != 0 && run.pointee.if_flag != 0
    }

    func requestInterruptWindow(_ enabled: Bool) {
        run.pointee.request_interrupt_window = enabled ? 1 : 0
    }

    /// KVM_INTERRUPT (userspace interrupt controller mode); in protected mode without
    /// paging the vCPU delivers it itself (see `ProtectedModeInterrupts`).
    func injectInterrupt(vector: UInt8) throws {
        if beforePaging, try inGuestsPlace({ regs, sregs in
            if sregs.cr0 & (1 << 31) != 0 { beforePaging = false }
            return ProtectedModeInterrupts.deliver(vector: vector, regs: &regs, sregs: &sregs, ram: ram)
        }) { return }
        var irq = kvm_interrupt(irq: UInt32(vector))
        guard ioctl(fd, CKVM_INTERRUPT, &irq) == 0 else { throw KVMError(call: "KVM_INTERRUPT", errno: errno) }
    }

    /// KVM_NMI.
    func injectNMI() throws {
        guard ioctl(fd, CKVM_NMI) == 0 else { throw KVMError(call: "KVM_NMI", errno: errno) }
    }

    /// KVM_RUN until an exit the VMkernel must handle; port I/O and MMIO are answered here.
    func run(handler: VCPUExitHandler) throws -> VCPUExit {
        while true {
            let rc = ioctl(fd, CKVM_RUN)
            exits.add(1, ordering: .relaxed)
            if rc != 0 {
                let e = errno
                if e == EINTR || e == EAGAIN {
                    run.pointee.immediate_exit = 0
                    return .interrupted
                }
                throw KVMError(call: "KVM_RUN", errno: e)
            }
            switch Int32(run.pointee.exit_reason) {
            case KVM_EXIT_IO:
                handlePortIO(handler)
            case KVM_EXIT_MMIO:
                handleMMIO(handler)
            case KVM_EXIT_HLT:
                return .halt
            case KVM_EXIT_IRQ_WINDOW_OPEN:
                return .interruptWindow
            case KVM_EXIT_INTR:
                return .interrupted
            case KVM_EXIT_SHUTDOWN, KVM_EXIT_SYSTEM_EVENT:
                return .shutdown
            case KVM_EXIT_FAIL_ENTRY:
                let reason = run.pointee.fail_entry.hardware_entry_failure_reason
                return .failure("VM entry failed (hardware reason 0x\(String(reason, radix: 16)))")
            case KVM_EXIT_INTERNAL_ERROR:
                let instruction = failedInstruction()
                if let instruction, try inGuestsPlace({
                    ProtectedModeInterrupts.returnFromInterrupt(instruction: instruction, regs: &$0, sregs: &$1, ram: ram)
                }) { continue }
                let sub = run.pointee.internal.suberror
                let what = sub == 1 ? "emulation failure: the host's instruction emulator cannot run the guest's instruction"
                    : "internal error"
                let bytes = instruction.map { ", instruction bytes " + $0.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined(separator: " ") }
                return .failure("KVM \(what) (suberror \(sub))\(bytes ?? ""); \(registerSummary())")
            default:
                return .failure("unexpected KVM exit reason \(run.pointee.exit_reason); \(registerSummary())")
            }
        }
    }

    /// The bytes KVM fetched for the instruction its emulator refused (Linux 5.17+).
    private func failedInstruction() -> [UInt8]? {
        let failure = run.pointee.emulation_failure
        guard failure.suberror == UInt32(KVM_INTERNAL_ERROR_EMULATION), failure.ndata >= 3,
              failure.flags & UInt64(KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES) != 0 else { return nil }
        return withUnsafeBytes(of: failure.insn_bytes) { Array($0.prefix(min(Int(failure.insn_size), 15))) }
    }

    /// Runs `step` on the vCPU's registers and loads them back when it returns true.
    private func inGuestsPlace(_ step: (inout kvm_regs, inout kvm_sregs) -> Bool) throws -> Bool {
        var regs = kvm_regs()
        var sregs = kvm_sregs()
        guard ioctl(fd, CKVM_GET_REGS, &regs) == 0 else { throw KVMError(call: "KVM_GET_REGS", errno: errno) }
        guard ioctl(fd, CKVM_GET_SREGS, &sregs) == 0 else { throw KVMError(call: "KVM_GET_SREGS", errno: errno) }
        guard step(&regs, &sregs) else { return false }
        guard ioctl(fd, CKVM_SET_SREGS, &sregs) == 0 else { throw KVMError(call: "KVM_SET_SREGS", errno: errno) }
        guard ioctl(fd, CKVM_SET_REGS, &regs) == 0 else { throw KVMError(call: "KVM_SET_REGS", errno: errno) }
        return true
    }

    /// VMware's backdoor and its balloon port, which pass arguments in registers too.
    private static let backdoorPorts: [UInt16] = [0x5658, 0x5670]

    private func handlePortIO(_ handler: VCPUExitHandler) {
        let io = run.pointee.io
        let size = Int(io.size)
        let data = UnsafeMutableRawPointer(run) + Int(io.data_offset)
        if Self.backdoorPorts.contains(io.port), size == 4, io.count == 1, io.direction == UInt8(KVM_EXIT_IO_IN),
           backdoorCall(handler, result: data) {
            return
        }
        for i in 0..<Int(io.count) {
            let element = UnsafeMutableRawBufferPointer(start: data + i * size, count: size)
            if io.direction == UInt8(KVM_EXIT_IO_OUT) {
                handler.portWrite(port: io.port, data: UnsafeRawBufferPointer(element))
            } else {
                handler.portRead(port: io.port, data: element)
            }
        }
    }

    /// Runs a backdoor call with the vCPU's registers: the handler's EAX becomes the
    /// `IN`'s data and the registers are set before the next entry, as QEMU's vmport
    /// does. EAX is set in both places: when KVM emulates the `IN` (real-mode and
    /// emulated code here), KVM_SET_REGS supersedes the completion's data.
    private func backdoorCall(_ handler: VCPUExitHandler, result: UnsafeMutableRawPointer) -> Bool {
        var regs = kvm_regs()
        guard ioctl(fd, CKVM_GET_REGS, &regs) == 0 else { return false }
        var call = VCPUGeneralRegisters(rax: regs.rax, rbx: regs.rbx, rcx: regs.rcx, rdx: regs.rdx,
                                        rsi: regs.rsi, rdi: regs.rdi)
        guard handler.backdoorCall(registers: &call) else { return false }
        regs.rax = UInt64(UInt32(truncatingIfNeeded: call.rax))
        (regs.rbx, regs.rcx, regs.rdx, regs.rsi, regs.rdi) = (call.rbx, call.rcx, call.rdx, call.rsi, call.rdi)
        guard ioctl(fd, CKVM_SET_REGS, &regs) == 0 else { return false }
        result.storeBytes(of: UInt32(truncatingIfNeeded: call.rax).littleEndian, as: UInt32.self)
        return true
    }

    private func handleMMIO(_ handler: VCPUExitHandler) {
        let address = run.pointee.mmio.phys_addr
        let length = Int(min(run.pointee.mmio.len, 8))
        withUnsafeMutableBytes(of: &run.pointee.mmio.data) { bytes in
            let access = UnsafeMutableRawBufferPointer(rebasing: bytes[..<length])
            if run.pointee.mmio.is_write != 0 {
                handler.mmioWrite(address: address, data: UnsafeRawBufferPointer(access))
            } else {
                handler.mmioRead(address: address, data: access)
            }
        }
    }

    func registerSummary() -> String {
        var regs = kvm_regs()
        var sregs = kvm_sregs()
        guard ioctl(fd, CKVM_GET_REGS, &regs) == 0, ioctl(fd, CKVM_GET_SREGS, &sregs) == 0 else {
            return "registers unavailable"
        }
        func h(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }
        return "rip=\(h(regs.rip)) rsp=\(h(regs.rsp)) rflags=\(h(regs.rflags)) rax=\(h(regs.rax)) " +
            "cr0=\(h(sregs.cr0)) cr3=\(h(sregs.cr3)) cr4=\(h(sregs.cr4)) efer=\(h(sregs.efer)) cs=\(h(UInt64(sregs.cs.selector)))"
    }
}
