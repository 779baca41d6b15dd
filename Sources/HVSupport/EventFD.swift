import Glibc

/// glibc declares eventfd in <sys/eventfd.h>, which the Glibc module does not import;
/// its C signature is stable, so bind it directly (as GuestMemory does memfd_create).
@_silgen_name("eventfd")
private func hostEventFD(_ initial: UInt32, _ flags: Int32) -> Int32

/// EFD_NONBLOCK and EFD_CLOEXEC from <sys/eventfd.h> (the O_ flags on x86-64 and arm64).
private let eventFDNonBlocking: Int32 = 0o4000
private let eventFDCloseOnExec: Int32 = 0o2000000

/// A system call that failed while making a host primitive.
package struct HostCallError: Error, CustomStringConvertible {
    package let call: String
    let errno: Int32
    package var description: String { "\(call) failed: \(String(cString: strerror(errno)))" }
}

/// A non-blocking Linux eventfd (eventfd(2)): a counter that KVM (KVM_IOEVENTFD) or
/// another thread signals and a poller drains.
package final class EventFD: @unchecked Sendable {
    package let fd: Int32

    package init() throws(HostCallError) {
        fd = hostEventFD(0, eventFDNonBlocking | eventFDCloseOnExec)
        guard fd >= 0 else { throw HostCallError(call: "eventfd", errno: errno) }
    }

    deinit { close(fd) }

    /// write(2) of 1: adds one to the counter and wakes a poller.
    package func signal() {
        var one: UInt64 = 1
        _ = write(fd, &one, 8)
    }

    /// read(2): the count since the previous take, and resets it; 0 when there is none.
    package func take() -> UInt64 {
        var value: UInt64 = 0
        return read(fd, &value, 8) == 8 ? value : 0
    }
}
