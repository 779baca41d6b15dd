import HVMemory

/// What a vCPU's exit loop asks of the devices while the backend runs guest code.
/// Port I/O and MMIO exits are answered inside `run`: `data` is the access's bytes
/// (1, 2, 4 or 8; one element of a string I/O instruction at a time), valid only
/// during the call, so the backend's exit records never outlive it.
package protocol VCPUExitHandler: AnyObject {
    func portRead(port: UInt16, data: UnsafeMutableRawBufferPointer)
    func portWrite(port: UInt16, data: UnsafeRawBufferPointer)
    func mmioRead(address: UInt64, data: UnsafeMutableRawBufferPointer)
    func mmioWrite(address: UInt64, data: UnsafeRawBufferPointer)
    /// A single 32-bit `IN` from the VMware backdoor port (0x5658) or the balloon's
    /// (0x5670, the port is in DX), which passes its
    /// arguments and answers in the general registers. Returns false when the access
    /// is not a backdoor call; the backend then treats it as a plain `portRead`. On
    /// true the backend loads `registers` back, EAX being the `IN`'s result.
    func backdoorCall(registers: inout VCPUGeneralRegisters) -> Bool
}

/// The general registers a port access can pass arguments in (see `backdoorCall`).
package struct VCPUGeneralRegisters: Equatable, Sendable {
    package var rax: UInt64
    package var rbx: UInt64
    package var rcx: UInt64
    package var rdx: UInt64
    package var rsi: UInt64
    package var rdi: UInt64

    package init(rax: UInt64 = 0, rbx: UInt64 = 0, rcx: UInt64 = 0, rdx: UInt64 = 0, rsi: UInt64 = 0, rdi: UInt64 = 0) {
        (self.rax, self.rbx, self.rcx, self.rdx, self.rsi, self.rdi) = (rax, rbx, rcx, rdx, rsi, rdi)
    }
}

/// Why `run` returned to the VMkernel.
package enum VCPUExit: Equatable, Sendable {
    /// The guest executed HLT with nothing to do.
    case halt
    /// `kick()` (or a signal) interrupted the run; check for work and run again.
    case interrupted
    /// The guest can take an interrupt now (requested with `requestInterruptWindow`).
    case interruptWindow
    /// Triple fault or another reason the CPU shut down.
    case shutdown
    /// The backend could not continue the guest (emulation failure, bad entry state).
    case failure(String)
}

/// A virtual CPU on an execution backend. Only `kick` may be called from a thread
/// other than the vCPU's own.
package protocol VirtualCPU: AnyObject {
    var index: Int { get }
    /// Loads the registers the vCPU starts from (boot entry, or the state a STARTUP IPI
    /// leaves an application processor in).
    func setRegisters(_ state: VCPURegisterState) throws
    /// Runs the guest until an exit the VMkernel must see.
    func run(handler: VCPUExitHandler) throws -> VCPUExit
    /// True when an external interrupt can be injected right now (IF=1, no shadow).
    var canInjectInterrupt: Bool { get }
    /// Exits from guest mode so far, including the port-I/O and MMIO exits `run`
    /// answers itself. Readable from any thread.
    var exitCount: UInt64 { get }
    func requestInterruptWindow(_ enabled: Bool)
    func injectInterrupt(vector: UInt8) throws
    func injectNMI() throws
    /// Makes a concurrent or upcoming `run` return `.interrupted` promptly.
    func kick()
    /// Prepares the calling thread to receive kicks (call once on the vCPU thread).
    func bindToCurrentThread()
    /// Undoes `bindToCurrentThread` (call on the vCPU thread before it ends).
    func unbindFromCurrentThread()
    /// Restricts the calling vCPU thread, for good, to the system calls its run loop
    /// and device calls need (on KVM a seccomp filter, ``VCPUConfinement``); any other
    /// call, its own or a plugin's, kills the process with a line naming it.
    func confineCurrentThread() throws
    /// General-purpose registers, for diagnostics.
    func registerSummary() -> String
    /// Everything the backend holds for this vCPU, for suspend. Only while it is not running.
    func saveState() throws -> VCPUState
    /// Loads a state `saveState` wrote, before the vCPU first runs.
    func restoreState(_ state: VCPUState) throws
}

/// A VM on an execution backend: guest memory mapped in, vCPUs created on demand.
package protocol VirtualMachineBackend: AnyObject {
    /// Maps every region of `memory` as guest RAM, logging guest writes.
    func map(memory: GuestMemory) throws
    /// Creates vCPU `index`; its IA32_APIC_BASE points at `lapicBase` (the platform's
    /// local-APIC page), enabled, with the BSP flag on vCPU 0.
    func makeVCPU(index: Int, cpuid: CPUIDPolicy, lapicBase: UInt64) throws -> VirtualCPU
}
