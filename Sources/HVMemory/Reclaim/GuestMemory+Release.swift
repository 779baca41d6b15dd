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
