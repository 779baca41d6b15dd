import Glibc

extension GuestMemory {
    /// Gives the host pages behind `count` pages at mapping offset `offset` back
    /// (MADV_REMOVE punches a hole in the memfd): they cost no host memory until
    /// touched again, and read as zero unless a swap serves them.
    package func release(offset: UInt64, count: UInt64) throws(GuestMemoryError) {
        precondition(offset % GuestMemory.pageSize == 0 && offset + count * GuestMemory.pageSize <= size)
        guard madvise(base + Int(offset), Int(count * GuestMemory.pageSize), 9 /* MADV_REMOVE */) == 0 else {
            throw .system(call: "madvise(MADV_REMOVE)", errno: errno)
        }
    }

    /// Gives page `page`'s host memory back whatever maps it now, and reports whether
    /// page sharing had mapped it privately (a shared frame, the zero page or a copy):
    /// such a page gets its memfd page mapped back, a hole since the merge, so it reads
    /// zero. Takes no lock, so vCPU threads may call it (the balloon); page sharing's
    /// books catch up through `PageSharing.Member.noteRemapped`.
    package func releaseWhateverMapsIt(page: Int) throws(GuestMemoryError) -> Bool {
        let offset = UInt64(page) * GuestMemory.pageSize
        precondition(offset + GuestMemory.pageSize <= size)
        let address = base + Int(offset)
        if madvise(address, Int(GuestMemory.pageSize), 9 /* MADV_REMOVE */) == 0 { return false }
        // EINVAL (private anonymous) or EACCES (private file mapping): page sharing's.
        guard errno == EINVAL || errno == EACCES else { throw .system(call: "madvise(MADV_REMOVE)", errno: errno) }
        guard mmap(address, Int(GuestMemory.pageSize), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, off_t(offset)) != MAP_FAILED else {
            throw .system(call: "mmap(guest RAM page)", errno: errno)
        }
        guard madvise(address, Int(GuestMemory.pageSize), 9 /* MADV_REMOVE */) == 0 else {
            throw .system(call: "madvise(MADV_REMOVE)", errno: errno)
        }
        return true
    }

    /// Host memory backing guest RAM now: the memfd's allocated blocks (shared pages
    /// mapped from elsewhere and the VMM's own memory are not counted).
    package var residentBytes: UInt64 {
        var st = stat()
        guard fstat(fd, &st) == 0 else { return 0 }
        return UInt64(st.st_blocks) * 512
    }

    /// One byte per page of the mapping, bit 0 set when the memfd has the page (mincore).
    func residency() -> [UInt8] {
        var vector = [UInt8](repeating: 0, count: Int(size / GuestMemory.pageSize))
        _ = vector.withUnsafeMutableBufferPointer { mincore(base, Int(size), $0.baseAddress) }
        return vector
    }
}
