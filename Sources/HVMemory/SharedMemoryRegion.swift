import Glibc

/// Zero-filled host memory that the guest can share (a RAM BAR): a memfd mapped once
/// into the VMM, so a backend can map the same pages into the guest. Freed with the
/// object; whoever mapped it into a guest unmaps it first.
package final class SharedMemoryRegion: @unchecked Sendable {
    package let size: UInt64
    let fd: Int32
    package let base: UnsafeMutableRawPointer

    package init(size: UInt64, name: String) throws(GuestMemoryError) {
        precondition(size > 0 && size % GuestMemory.pageSize == 0)
        let fd = hostMemfdCreate(name, memfdCloseOnExec)
        guard fd >= 0 else { throw .system(call: "memfd_create", errno: errno) }
        guard ftruncate(fd, off_t(size)) == 0 else {
            let e = errno; close(fd)
            throw .system(call: "ftruncate(\(size))", errno: e)
        }
        let p = mmap(nil, Int(size), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0)
        guard let p, p != MAP_FAILED else {
            let e = errno; close(fd)
            throw .system(call: "mmap(\(size))", errno: e)
        }
        self.fd = fd
        self.size = size
        base = p
    }

    deinit {
        munmap(base, Int(size))
        close(fd)
    }
}
