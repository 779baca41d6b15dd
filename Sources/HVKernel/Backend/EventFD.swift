import CKVM
import Glibc

/// A non-blocking Linux eventfd (eventfd(2)): a counter that KVM (KVM_IOEVENTFD) or
/// another thread signals and a poller drains.
public final class EventFD: @unchecked Sendable {
    public let fd: Int32

    public init() throws(KVMError) {
        fd = ckvm_eventfd(0, CKVM_EFD_NONBLOCK | CKVM_EFD_CLOEXEC)
        guard fd >= 0 else { throw KVMError(call: "eventfd", errno: errno) }
    }

    deinit { close(fd) }

    /// write(2) of 1: adds one to the counter and wakes a poller.
    public func signal() {
        var one: UInt64 = 1
        _ = write(fd, &one, 8)
    }

    /// read(2): the count since the previous take, and resets it; 0 when there is none.
    public func take() -> UInt64 {
        var value: UInt64 = 0
        return read(fd, &value, 8) == 8 ? value : 0
    }
}
