import Glibc
import HVBackendKVM
import HVDevices
import HVSched
import HVSupport
import Synchronization

/// The interrupt side of the chipset as one vCPU sees it.
protocol VCPUInterruptController: AnyObject {
    func nextInterrupt(vcpu: Int) -> UInt8?
    func acknowledgeInterrupt(vcpu: Int) -> UInt8?
    func takeNMI(vcpu: Int) -> Bool
    func lapicRead(vcpu: Int, offset: UInt64, size: Int) -> UInt64
    func lapicWrite(vcpu: Int, offset: UInt64, size: Int, value: UInt64)
}

extension Chipset: VCPUInterruptController {}

/// One vCPU's host thread: joins its scheduler pool, runs the guest only while it holds a
/// pCPU slot, injects interrupts, dispatches its port and MMIO exits to the VM's buses,
/// and blocks on HLT (giving the slot back) until an interrupt is pending.
///
/// The BSP starts at the boot state at power-on. An application processor's thread
/// waits in wait-for-SIPI state (outside the pool) until a STARTUP IPI gives it a
/// vector; it then starts in real mode at `vector << 12` and joins the pool. An INIT
/// sends it back to wait-for-SIPI. A restored vCPU starts in the activity it was saved in.
/// While the VM is paused (``VCPUGate``) the thread gives its slot back and parks.
final class VCPURunner: @unchecked Sendable {
    let vcpu: VirtualCPU
    private unowned let vm: VirtualMachine
    private let interrupts: VCPUInterruptController
    /// The vCPU's port and MMIO exits: its local APIC page, then the VM's buses.
    private let access: VCPUAccessRouter
    private let scheduler: Scheduler
    private let schedVM: SchedulerVM
    private var pool: SchedulerPool { schedVM.pool }
    private let vcpuID: Int32
    private let wake = HostLock()
    // [wake]
    private var wakeSequence: UInt64 = 0
    private var member: PoolMember?
    /// AP: waiting for a STARTUP IPI (true from power-on and after INIT).
    private var waitingForSIPI: Bool
    private var sipiVector: UInt8?
    /// In HLT, waiting for an interrupt (or restored so: it halts before running).
    private var halted = false
    /// AP: an INIT arrived while it ran; it must leave the guest.
    private let initPending = Atomic<Bool>(false)
    private var thread: pthread_t?
    /// This thread's device calls, watched (nil: `hv.deviceCallLimit = "off"`).
    private var callWatch: DeviceCallWatch?
    /// Set as the thread ends (``join()`` waits for it without blocking on a stuck call).
    private let exited = Atomic<Bool>(false)

    init(vcpu: VirtualCPU, vm: VirtualMachine, interrupts: VCPUInterruptController,
         scheduler: Scheduler, schedVM: SchedulerVM, activity: VCPUActivity? = nil) {
        self.vcpu = vcpu
        self.vm = vm
        self.interrupts = interrupts
        access = VCPUAccessRouter(vcpu: vcpu.index, ports: vm.portBus, mmio: vm.mmioBus, chipset: vm.chipset)
        self.scheduler = scheduler
        self.schedVM = schedVM
        self.vcpuID = scheduler.makeVCPUID()
        waitingForSIPI = (activity ?? (vcpu.index == 0 ? .running : .waitingForSIPI)) == .waitingForSIPI
        halted = activity == .halted
        callWatch = vm.configuration.deviceCallLimits.map { limits in
            DeviceCallWatch(limits: limits,
                            onStall: { [unowned self] site, elapsed in deviceCallStalled(site, elapsed: elapsed) },
                            onFail: { [unowned self] site, elapsed in deviceCallFailed(site, elapsed: elapsed) },
                            onReturn: { [unowned self] site, elapsed in deviceCallReturned(site, elapsed: elapsed) })
        }
    }

    /// What the vCPU is doing, as suspend saves it (read while the VM is paused).
    var activity: VCPUActivity {
        wake.withLock { waitingForSIPI ? .waitingForSIPI : halted ? .halted : .running }
    }

    func start() {
        thread = HostThread.spawn(name: "vcpu\(vcpu.index)") { [self] in main() }
    }

    /// Waits for the thread to end; false (the thread detached, never joined) when it is
    /// stuck in a device call past the fail limit: it may never return.
    @discardableResult
    func join() -> Bool {
        guard let t = thread else { return true }
        thread = nil
        // A stop can come while a call is stuck below the fail limit: poll until the
        // thread ends or the watchdog gives up on its call.
        while !exited.load(ordering: .acquiring) {
            if callWatch?.hasFailedCall == true {
                pthread_detach(t)
                return false
            }
            usleep(5_000)
        }
        pthread_join(t, nil)
        return true
    }

    // MARK: Device call watchdog (called on the watchdog thread, except `Returned`)

    /// A device call has not returned for the stall limit: report it and give the pCPU
    /// slot back, so the pool runs other vCPUs meanwhile. The watch's lock is held: the
    /// call cannot return half-way through.
    private func deviceCallStalled(_ site: DeviceCallSite, elapsed: UInt64) {
        vm.logger.warning("\(vm.name): vCPU \(vcpu.index): device call has not returned for \(elapsed / 1_000_000) ms: \(site.description); its pCPU slot is given back")
        guard let m = currentMember else { return }
        pool.block(m, ranNanoseconds: (m.cpuTime ?? m.cpuAtGrant) &- m.cpuAtGrant)
    }

    private func deviceCallFailed(_ site: DeviceCallSite, elapsed: UInt64) {
        vm.stop(.failure("vCPU \(vcpu.index): device call did not return within \(elapsed / 1_000_000) ms: \(site.description); the VM is stopped and the vCPU's thread abandoned"))
    }

    /// On this vCPU's thread: a stalled call returned; wait for a slot again before the
    /// guest goes on (nothing when the VM is stopping).
    private func deviceCallReturned(_ site: DeviceCallSite, elapsed: UInt64) {
        vm.logger.warning("\(vm.name): vCPU \(vcpu.index): device call returned after \(elapsed / 1_000_000) ms: \(site.description)")
        guard !vm.isStopping, let m = currentMember else { return }
        pool.wake(m)
        let grantsBefore = m.grantCount
        if let slot = pool.reschedule(m, ranNanoseconds: 0), m.grantCount != grantsBefore {
            m.cpuAtGrant = HostThread.currentThreadCPUTime()
            pin(m, to: slot)
        }
    }

    /// Something changed for this vCPU (an interrupt, a stop request): wake it from HLT
    /// and make a running or about-to-run KVM_RUN return. When the VM is stopping, a
    /// wait for a pCPU slot ends too.
    func notify() {
        let m: PoolMember? = wake.withLock {
            wakeSequence &+= 1
            wake.broadcast()
            return member
        }
        vcpu.kick()
        if let m, vm.isStopping { pool.cancel(m) }
    }

    /// INIT IPI: an AP goes back to wait-for-SIPI (the BSP ignores INIT).
    func receiveINIT() {
        guard vcpu.index != 0 else { return }
        wake.withLock {
            waitingForSIPI = true
            sipiVector = nil
            initPending.store(true, ordering: .releasing)
            wakeSequence &+= 1
            wake.broadcast()
        }
        vcpu.kick()
    }

    /// STARTUP IPI: starts an AP that waits for one (otherwise ignored, as on hardware).
    func receiveSIPI(vector: UInt8) {
        guard vcpu.index != 0 else { return }
        wake.withLock {
            guard waitingForSIPI, sipiVector == nil else { return }
            sipiVector = vector
            wake.broadcast()
        }
    }

    /// The state a STARTUP IPI with `vector` leaves an AP in: real mode, CS = vector << 8
    /// (base vector << 12), IP = 0, 64 KiB segments, CR0 = ET.
    static func startupState(vector: UInt8) -> VCPURegisterState {
        typealias Seg = VCPURegisterState.Segment
        let data = Seg(selector: 0, base: 0, limit: 0xFFFF, type: 0x3, present: true, dpl: 0,
                       db: false, s: true, l: false, g: false, avl: false, unusable: false)
        let code = Seg(selector: UInt16(vector) << 8, base: UInt64(vector) << 12, limit: 0xFFFF, type: 0xB,
                       present: true, dpl: 0, db: false, s: true, l: false, g: false, avl: false, unusable: false)
        let tr = Seg(selector: 0, base: 0, limit: 0xFFFF, type: 0x3, present: true, dpl: 0,
                     db: false, s: false, l: false, g: false, avl: false, unusable: false)
        return VCPURegisterState(
            rip: 0, rsp: 0, rbx: 0, rsi: 0, rflags: VCPURegisterState.rflagsReserved,
            cr0: VCPURegisterState.cr0ET, cr3: 0, cr4: 0, efer: 0,
            gdt: .init(base: 0, limit: 0xFFFF), idt: .init(base: 0, limit: 0xFFFF),
            cs: code, ds: data, es: data, fs: data, gs: data, ss: data, tr: tr, ldtr: .unusableLDT)
    }

    private func main() {
        vcpu.bindToCurrentThread()
        callWatch?.bindToCurrentThread()
        defer {
            leavePool()
            callWatch?.unbindFromCurrentThread()
            vcpu.unbindFromCurrentThread()
            exited.store(true, ordering: .releasing)
        }
        if VCPUConfinement.isEnabled {
            do { try vcpu.confineCurrentThread() } catch {
                vm.stop(.failure("vCPU \(vcpu.index): \(error)"))
                return
            }
        }
        if vcpu.index == 0 {
            guard joinPool() else { return }
            runGuest()
            return
        }
        var started = !wake.withLock { waitingForSIPI }    // restored while running
        while true {
            if started {
                guard joinPool() else { return }
                started = false
            } else {
                guard let vector = waitForStartup() else { return }
                do { try vcpu.setRegisters(Self.startupState(vector: vector)) } catch {
                    vm.stop(.failure("vCPU \(vcpu.index): cannot start at SIPI vector 0x\(String(vector, radix: 16)): \(error)"))
                    return
                }
                if let m = currentMember {
                    pool.wake(m)
                } else {
                    guard joinPool() else { return }
                }
            }
            runGuest()
            guard !vm.isStopping, let m = currentMember else { return }
            // INIT: out of the guest and out of the running set until the next SIPI.
            pool.block(m, ranNanoseconds: ranSinceGrant(m))
        }
    }

    private var currentMember: PoolMember? { wake.withLock { member } }

    /// Joins the pool (runnable at once); false when the VM is stopping or the policy refused.
    private func joinPool() -> Bool {
        guard !vm.isStopping else { return false }
        do {
            let m = try pool.join(id: vcpuID, vmID: schedVM.id, vmName: schedVM.name, vcpuIndex: vcpu.index,
                                  params: scheduler.params(of: schedVM), kick: { [vcpu] in vcpu.kick() })
            wake.withLock { member = m }
            if vm.isStopping { pool.cancel(m) }
            return true
        } catch {
            vm.stop(.failure("vCPU \(vcpu.index): \(error)"))
            return false
        }
    }

    private func leavePool() {
        guard let m = currentMember else { return }
        pool.leave(m, ranNanoseconds: ranSinceGrant(m))   // used only if it holds a slot
    }

    /// CPU time this thread used since its current slot was granted.
    private func ranSinceGrant(_ m: PoolMember) -> UInt64 {
        HostThread.currentThreadCPUTime() &- m.cpuAtGrant
    }

    /// AP: waits for a STARTUP IPI; nil when the VM stops first.
    private func waitForStartup() -> UInt8? {
        wake.withLock {
            while sipiVector == nil && !vm.isStopping { wake.wait() }
            guard let v = sipiVector, !vm.isStopping else { return nil }
            waitingForSIPI = false
            initPending.store(false, ordering: .releasing)
            return v
        }
    }

    /// Runs the guest until the VM stops or (AP) an INIT arrives.
    private func runGuest() {
        guard let m = currentMember else { return }
        let index = vcpu.index
        if wake.withLock({ halted }) {
            guard halt(m) else { return }
        }
        while !vm.isStopping {
            if m.needsPool.load(ordering: .acquiring) {
                // Slice ended, slot drained, or no slot yet: back through the pool.
                let grantsBefore = m.grantCount
                guard let slot = pool.reschedule(m, ranNanoseconds: ranSinceGrant(m)) else {
                    if vm.isStopping { return }
                    pool.wake(m)           // not runnable in the pool's view: become so
                    continue
                }
                // Only a new grant restarts the CPU-time baseline; a kept slot (stale flag)
                // keeps counting toward the slice the policy will be charged for.
                if m.grantCount != grantsBefore {
                    m.cpuAtGrant = HostThread.currentThreadCPUTime()
                    pin(m, to: slot)
                }
                continue
            }
            if initPending.load(ordering: .acquiring) { return }
            guard vm.gate.enter() else {
                // Paused: out of the pool until the VM resumes or stops.
                pool.block(m, ranNanoseconds: ranSinceGrant(m))
                vm.gate.waitWhileClosed()
                pool.wake(m)
                continue
            }
            let exit: VCPUExit
            do {
                defer { vm.gate.leave() }
                exit = try enterGuest(index)
                // Halted before it leaves the gate, so a pause sees it halted.
                if exit == .halt && interrupts.nextInterrupt(vcpu: index) == nil { wake.withLock { halted = true } }
            } catch {
                vm.stop(.failure("vCPU \(index): \(error)"))
                continue
            }
            switch exit {
            case .halt:
                guard wake.withLock({ halted }) else { continue }
                guard halt(m) else { return }
            case .interrupted, .interruptWindow:
                continue
            case .shutdown:
                vm.stop(.tripleFault(vcpu.registerSummary()))
            case .failure(let why):
                vm.stop(.failure("vCPU \(index): \(why)"))
            }
        }
    }

    /// Injects what is pending and runs the guest until an exit the VMkernel handles.
    private func enterGuest(_ index: Int) throws -> VCPUExit {
        if interrupts.takeNMI(vcpu: index) { try vcpu.injectNMI() }
        if interrupts.nextInterrupt(vcpu: index) != nil {
            if vcpu.canInjectInterrupt, let vector = interrupts.acknowledgeInterrupt(vcpu: index) {
                try vcpu.injectInterrupt(vector: vector)
                vcpu.requestInterruptWindow(false)
            } else {
                vcpu.requestInterruptWindow(true)
            }
        } else {
            vcpu.requestInterruptWindow(false)
        }
        return try vcpu.run(handler: access)
    }

    /// HLT: gives the slot back until an interrupt is pending; false when (AP) an INIT
    /// arrived meanwhile.
    private func halt(_ m: PoolMember) -> Bool {
        pool.block(m, ranNanoseconds: ranSinceGrant(m))
        waitForInterrupt()
        wake.withLock { halted = false }
        if initPending.load(ordering: .acquiring) { return false }
        pool.wake(m)
        return true
    }

    /// Moves this thread to the slot's host CPU (or back to any CPU) when that changed.
    private func pin(_ m: PoolMember, to slot: PCPUSlot) {
        guard !m.pinned || m.pinnedTo != slot.hostCPU else { return }
        if !m.pinned && slot.hostCPU == nil { m.pinned = true; return }   // never pinned: nothing to undo
        HostThread.pinCurrentThread(to: slot.hostCPU)
        m.pinned = true
        m.pinnedTo = slot.hostCPU
    }

    /// HLT: sleep until the chipset has an interrupt for us, the VM stops or (AP) an
    /// INIT arrives. The chipset is never called with `wake` held (it calls `notify`
    /// under its own lock).
    private func waitForInterrupt() {
        let index = vcpu.index
        while !vm.isStopping && !initPending.load(ordering: .acquiring) {
            let seen = wake.withLock { wakeSequence }
            if interrupts.nextInterrupt(vcpu: index) != nil { return }
            wake.withLock {
                while wakeSequence == seen && !vm.isStopping { wake.wait() }
            }
        }
    }
}

/// The router is what the backend calls on port and MMIO exits (its methods match).
extension VCPUAccessRouter: VCPUExitHandler {
    package func backdoorCall(registers: inout VCPUGeneralRegisters) -> Bool {
        var call = BackdoorRegisters(rax: registers.rax, rbx: registers.rbx, rcx: registers.rcx,
                                     rdx: registers.rdx, rsi: registers.rsi, rdi: registers.rdi)
        guard backdoorCall(&call) else { return false }
        registers = VCPUGeneralRegisters(rax: call.rax, rbx: call.rbx, rcx: call.rcx,
                                         rdx: call.rdx, rsi: call.rsi, rdi: call.rdi)
        return true
    }
}
