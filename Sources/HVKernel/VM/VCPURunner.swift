import Glibc
import Synchronization

/// The interrupt side of the chipset as one vCPU sees it.
public protocol VCPUInterruptController: AnyObject {
    func nextInterrupt(vcpu: Int) -> UInt8?
    func acknowledgeInterrupt(vcpu: Int) -> UInt8?
    func takeNMI(vcpu: Int) -> Bool
    func lapicRead(vcpu: Int, offset: UInt64, size: Int) -> UInt64
    func lapicWrite(vcpu: Int, offset: UInt64, size: Int, value: UInt64)
}

/// One vCPU's host thread: injects interrupts, runs the guest, dispatches its port and
/// MMIO exits to the VM's buses, and blocks on HLT until an interrupt is pending.
final class VCPURunner: VCPUExitHandler, @unchecked Sendable {
    static let lapicBase: UInt64 = 0xFEE0_0000

    let vcpu: VirtualCPU
    private unowned let vm: VirtualMachine
    private let interrupts: VCPUInterruptController
    private let wake = HostLock()
    private var wakeSequence: UInt64 = 0
    private var thread: pthread_t?
    /// Exits taken, for statistics.
    let exits = Atomic<UInt64>(0)

    init(vcpu: VirtualCPU, vm: VirtualMachine, interrupts: VCPUInterruptController) {
        self.vcpu = vcpu
        self.vm = vm
        self.interrupts = interrupts
    }

    func start() {
        thread = HostThread.spawn { [self] in loop() }
    }

    func join() {
        if let t = thread { pthread_join(t, nil); thread = nil }
    }

    /// Something changed for this vCPU (an interrupt, a stop request): wake it from HLT
    /// and make a running or about-to-run KVM_RUN return.
    func notify() {
        wake.withLock {
            wakeSequence &+= 1
            wake.broadcast()
        }
        vcpu.kick()
    }

    private func loop() {
        vcpu.bindToCurrentThread()
        let index = vcpu.index
        while !vm.isStopping {
            do {
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
                let exit = try vcpu.run(handler: self)
                exits.add(1, ordering: .relaxed)
                switch exit {
                case .halt:
                    waitForInterrupt()
                case .interrupted, .interruptWindow:
                    continue
                case .shutdown:
                    vm.stop(.tripleFault(vcpu.registerSummary()))
                case .failure(let why):
                    vm.stop(.failure("vCPU \(index): \(why)"))
                }
            } catch {
                vm.stop(.failure("vCPU \(index): \(error)"))
            }
        }
    }

    /// HLT: sleep until the chipset has an interrupt for us or the VM stops. The
    /// chipset is never called with `wake` held (it calls `notify` under its own lock).
    private func waitForInterrupt() {
        let index = vcpu.index
        while !vm.isStopping {
            let seen = wake.withLock { wakeSequence }
            if interrupts.nextInterrupt(vcpu: index) != nil { return }
            wake.withLock {
                while wakeSequence == seen && !vm.isStopping { wake.wait() }
            }
        }
    }

    // MARK: VCPUExitHandler

    func portRead(port: UInt16, size: Int) -> UInt32 {
        guard let (h, offset) = vm.portBus.lookup(UInt64(port)) else { return UInt32.max >> (32 - 8 * UInt32(size)) }
        return h.ioRead(offset: UInt16(offset), size: size)
    }

    func portWrite(port: UInt16, size: Int, value: UInt32) {
        guard let (h, offset) = vm.portBus.lookup(UInt64(port)) else { return }
        h.ioWrite(offset: UInt16(offset), size: size, value: value)
    }

    func mmioRead(address: UInt64, size: Int) -> UInt64 {
        if address & ~0xFFF == VCPURunner.lapicBase {
            return interrupts.lapicRead(vcpu: vcpu.index, offset: address & 0xFFF, size: size)
        }
        guard let (h, offset) = vm.mmioBus.lookup(address) else { return size == 8 ? ~0 : (1 << (8 * UInt64(size))) - 1 }
        return h.mmioRead(offset: offset, size: size)
    }

    func mmioWrite(address: UInt64, size: Int, value: UInt64) {
        if address & ~0xFFF == VCPURunner.lapicBase {
            interrupts.lapicWrite(vcpu: vcpu.index, offset: address & 0xFFF, size: size, value: value)
            return
        }
        guard let (h, offset) = vm.mmioBus.lookup(address) else { return }
        h.mmioWrite(offset: offset, size: size, value: value)
    }
}
