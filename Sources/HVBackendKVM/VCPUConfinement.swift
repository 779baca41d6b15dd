import Synchronization

/// Whether vCPU threads confine themselves with ``VirtualCPU/confineCurrentThread()``
/// before their run loop: on by default (defence in depth: a plugin exploited through a
/// guest-controlled register cannot start programs, open files or change privileges
/// from the thread it runs on); `hvhost --no-vcpu-seccomp` turns it off for debugging.
package enum VCPUConfinement {
    private static let on = Atomic<Bool>(true)

    package static var isEnabled: Bool {
        get { on.load(ordering: .relaxed) }
        set { on.store(newValue, ordering: .relaxed) }
    }
}
