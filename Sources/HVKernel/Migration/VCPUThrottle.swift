import Glibc
import HVSupport
import Synchronization

/// Auto-converge: holds a VM's vCPUs out of guest mode for `percent` of every 20 ms
/// period (through the VM's gate, as pause does), so a guest that dirties memory faster
/// than the link carries it slows down until pre-copy catches up.
final class VCPUThrottle: @unchecked Sendable {
    private static let periodMicroseconds: UInt32 = 20_000
    private let vm: VirtualMachine
    private let percentage = Atomic<Int>(0)
    private let running = Atomic<Bool>(true)
    private var thread: pthread_t?

    init(vm: VirtualMachine) { self.vm = vm }

    var percent: Int { percentage.load(ordering: .relaxed) }

    /// Sets the share (0...99); the thread starts with the first non-zero one.
    func set(percent: Int) {
        percentage.store(max(0, min(99, percent)), ordering: .relaxed)
        if percent > 0, thread == nil {
            thread = HostThread.spawn(name: "throttle-\(vm.name)") { [self] in loop() }
        }
    }

    /// Stops throttling; the gate is open when this returns.
    func stop() {
        running.store(false, ordering: .releasing)
        if let thread { pthread_join(thread, nil) }
        thread = nil
    }

    private func loop() {
        while running.load(ordering: .acquiring) {
            let p = UInt32(percentage.load(ordering: .relaxed))
            let held = Self.periodMicroseconds * p / 100
            if held > 0, !vm.isStopping {
                vm.gate.close { for r in vm.runners { r.vcpu.kick() } }
                usleep(held)
                vm.gate.open()
            }
            usleep(Self.periodMicroseconds - held)
        }
    }
}
