import Glibc

/// A userfaultfd in MISSING mode over guest RAM: a touch of a page that has no backing
/// in the memfd (a punched hole), by the guest through KVM or by the VMM through its
/// mapping, blocks the toucher until `copy` or `zero` fills the page.
/// The layouts and request numbers are <linux/userfaultfd.h>'s (UFFD_API 0xAA), which
/// the Glibc module does not import.
final class Userfaultfd {
    let fd: Int32

    private static let api: UInt = 0xC018_AA3F       // UFFDIO_API, struct uffdio_api (24 bytes)
    private static let register: UInt = 0xC020_AA00  // UFFDIO_REGISTER (32 bytes)
    private static let copyRequest: UInt = 0xC028_AA03   // UFFDIO_COPY (40 bytes)
    private static let zeroRequest: UInt = 0xC020_AA04   // UFFDIO_ZEROPAGE (32 bytes)
    private static let wakeRequest: UInt = 0x8010_AA02   // UFFDIO_WAKE (struct uffdio_range)
    private static let registerModeMissing: UInt64 = 1
    private static let featureMissingShmem: UInt64 = 0x20
    static let eventPageFault: UInt8 = 0x12

    /// One fault: the page-aligned host address somebody touched.
    struct Fault { let address: UInt64 }

    init() throws(GuestMemoryError) {
        // O_CLOEXEC | O_NONBLOCK; no UFFD_USER_MODE_ONLY: KVM's faults are kernel-mode.
        let fd = Int32(truncatingIfNeeded: hostSyscall(323 /* SYS_userfaultfd */, Int(O_CLOEXEC | O_NONBLOCK)))
        guard fd >= 0 else { throw .system(call: "userfaultfd", errno: errno) }
        var request: (UInt64, UInt64, UInt64) = (0xAA, Self.featureMissingShmem, 0)
        guard ioctl(fd, Self.api, &request) == 0 else {
            let e = errno; close(fd)
            throw .system(call: "UFFDIO_API", errno: e)
        }
        self.fd = fd
    }

    deinit { close(fd) }

    /// Watches `length` bytes at `start` (a shared memfd mapping) for missing pages.
    func watch(start: UInt64, length: UInt64) throws(GuestMemoryError) {
        var request: (UInt64, UInt64, UInt64, UInt64) = (start, length, Self.registerModeMissing, 0)
        guard ioctl(fd, Self.register, &request) == 0 else { throw .system(call: "UFFDIO_REGISTER", errno: errno) }
    }

    /// Waits up to `timeoutMilliseconds` for faults; returns those read (possibly none).
    func waitForFaults(timeoutMilliseconds: Int32) -> [Fault] {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, timeoutMilliseconds) > 0 else { return [] }
        var messages = [UInt8](repeating: 0, count: 32 * 16)
        let n = messages.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return [] }
        var faults: [Fault] = []
        messages.withUnsafeBytes { raw in
            for at in stride(from: 0, to: n / 32 * 32, by: 32) where raw[at] == Self.eventPageFault {
                // struct uffd_msg: u8 event, 7 reserved bytes, then pagefault { u64 flags, u64 address }.
                let address = raw.loadUnaligned(fromByteOffset: at + 16, as: UInt64.self)
                faults.append(Fault(address: address & ~(GuestMemory.pageSize - 1)))
            }
        }
        return faults
    }

    /// Fills the missing page at `address` with the page at `source` and wakes its
    /// waiters. A page somebody filled meanwhile (EEXIST) only needs the wake.
    func copy(to address: UInt64, from source: UnsafeRawPointer) throws(GuestMemoryError) {
        var request: (UInt64, UInt64, UInt64, UInt64, Int64) =
            (address, UInt64(UInt(bitPattern: source)), GuestMemory.pageSize, 0, 0)
        guard ioctl(fd, Self.copyRequest, &request) == 0 else {
            if errno == EEXIST { return try wake(address) }
            throw .system(call: "UFFDIO_COPY", errno: errno)
        }
    }

    /// Fills the missing page at `address` with zeros and wakes its waiters.
    func zero(_ address: UInt64) throws(GuestMemoryError) {
        var request: (UInt64, UInt64, UInt64, Int64) = (address, GuestMemory.pageSize, 0, 0)
        guard ioctl(fd, Self.zeroRequest, &request) == 0 else {
            if errno == EEXIST { return try wake(address) }
            throw .system(call: "UFFDIO_ZEROPAGE", errno: errno)
        }
    }

    private func wake(_ address: UInt64) throws(GuestMemoryError) {
        var range: (UInt64, UInt64) = (address, GuestMemory.pageSize)
        guard ioctl(fd, Self.wakeRequest, &range) == 0 else { throw .system(call: "UFFDIO_WAKE", errno: errno) }
    }
}

/// syscall(2) is variadic, which Swift cannot call; its integer-argument calling
/// convention is that of this fixed signature.
@_silgen_name("syscall")
private func hostSyscall(_ number: Int, _ argument: Int) -> Int
