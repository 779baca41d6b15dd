import Glibc

/// A flat (raw) image file: sector N is bytes N*512 ..< (N+1)*512 of the file.
/// The capacity is fixed when the file is opened (file size / 512); the file is never
/// grown or shrunk. The descriptor is closed when the disk is deallocated.
package final class FlatDisk: VirtualDisk, CustomStringConvertible {
    static let defaultSectorSize = 512

    package let path: String
    package let sectorSize: Int
    package let sectorCount: UInt64
    package let isReadOnly: Bool
    private let fd: Int32

    /// Opens `path`. Throws `DiskError` naming the path when the file is missing, not a
    /// regular file, not accessible (in the requested mode), empty, or not a whole
    /// number of 512-byte sectors.
    package init(path: String, readOnly: Bool) throws {
        self.path = path
        self.sectorSize = Self.defaultSectorSize
        self.isReadOnly = readOnly

        // stat first: opening a FIFO would block, and the error is clearer.
        var st = stat()
        if stat(path, &st) != 0 {
            throw Self.openError(path: path, errno: errno, operation: "stat")
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw DiskError.notRegularFile(path: path) }

        let flags = (readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NONBLOCK | O_NOCTTY
        var descriptor: Int32
        repeat { descriptor = open(path, flags) } while descriptor < 0 && errno == EINTR
        guard descriptor >= 0 else { throw Self.openError(path: path, errno: errno, operation: "open") }

        // Re-check on the descriptor (the path may have been replaced since stat).
        guard fstat(descriptor, &st) == 0 else {
            let e = errno
            close(descriptor)
            throw DiskError.io(path: path, operation: "fstat", errno: e)
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            close(descriptor)
            throw DiskError.notRegularFile(path: path)
        }
        let size = UInt64(st.st_size)
        guard size > 0 else {
            close(descriptor)
            throw DiskError.emptyImage(path: path)
        }
        guard size % UInt64(Self.defaultSectorSize) == 0 else {
            close(descriptor)
            throw DiskError.sizeNotSectorMultiple(path: path, size: size, sectorSize: Self.defaultSectorSize)
        }
        // Regular files ignore O_NONBLOCK, but clear it anyway so the fd is plain.
        let fl = fcntl(descriptor, F_GETFL)
        if fl >= 0 { _ = fcntl(descriptor, F_SETFL, fl & ~O_NONBLOCK) }

        self.fd = descriptor
        self.sectorCount = size / UInt64(Self.defaultSectorSize)
    }

    deinit {
        close(fd)
    }

    package var description: String {
        "flat disk '\(path)' (\(sectorCount) sectors\(isReadOnly ? ", read-only" : ""))"
    }

    package func read(sector: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws {
        let offset = try checkRange(sector: sector, length: buffer.count)
        guard let base = buffer.baseAddress, buffer.count > 0 else { return }
        var done = 0
        while done < buffer.count {
            let n = pread(fd, base + done, buffer.count - done, off_t(offset + UInt64(done)))
            if n > 0 {
                done += n
            } else if n == 0 {
                throw DiskError.unexpectedEndOfFile(path: path, sector: sector + UInt64(done / sectorSize))
            } else if errno != EINTR {
                throw DiskError.io(path: path, operation: "read", errno: errno)
            }
        }
    }

    package func write(sector: UInt64, from buffer: UnsafeRawBufferPointer) throws {
        guard !isReadOnly else { throw DiskError.readOnly(path: path) }
        let offset = try checkRange(sector: sector, length: buffer.count)
        guard let base = buffer.baseAddress, buffer.count > 0 else { return }
        var done = 0
        while done < buffer.count {
            let n = pwrite(fd, base + done, buffer.count - done, off_t(offset + UInt64(done)))
            if n > 0 {
                done += n
            } else if n == 0 {
                // pwrite of a non-zero count returning 0 is not supposed to happen on a
                // regular file; treat it as "no space" instead of spinning.
                throw DiskError.io(path: path, operation: "write", errno: ENOSPC)
            } else if errno != EINTR {
                throw DiskError.io(path: path, operation: "write", errno: errno)
            }
        }
    }

    package func flush() throws {
        guard !isReadOnly else { return }
        while fdatasync(fd) != 0 {
            if errno != EINTR { throw DiskError.io(path: path, operation: "flush", errno: errno) }
        }
    }

    /// Flat images are sparse-capable: punching a hole frees the blocks and keeps the
    /// file's size, and the hole reads as zeros.
    package var supportsDiscard: Bool { !isReadOnly }

    package func discard(sector: UInt64, count: UInt64) throws {
        guard !isReadOnly else { throw DiskError.readOnly(path: path) }
        guard count <= UInt64(Int.max) / UInt64(sectorSize) else {
            throw DiskError.outOfRange(path: path, sector: sector, sectors: count, capacity: sectorCount)
        }
        let offset = try checkRange(sector: sector, length: Int(count) * sectorSize)
        guard count > 0 else { return }
        let punchHoleKeepSize: Int32 = 0x02 | 0x01     // FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
        while Self.fallocate(fd, punchHoleKeepSize, off_t(offset), off_t(count * UInt64(sectorSize))) != 0 {
            switch errno {
            case EINTR: continue
            case EOPNOTSUPP, ENOSYS:
                // A file system without holes: zeros are what the range must read as.
                let zeros = [UInt8](repeating: 0, count: Int(min(count, 2048)) * sectorSize)
                var done: UInt64 = 0
                while done < count {
                    let n = min(count - done, 2048)
                    try zeros.withUnsafeBytes { try write(sector: sector + done, from: UnsafeRawBufferPointer(rebasing: $0[0..<Int(n) * sectorSize])) }
                    done += n
                }
                return
            default: throw DiskError.io(path: path, operation: "discard", errno: errno)
            }
        }
    }

    /// glibc's fallocate(2) wrapper, which Swift's Glibc module hides (it needs
    /// _GNU_SOURCE); a libc without it makes discard fall back to writing zeros.
    private static let fallocate: @convention(c) (Int32, Int32, off_t, off_t) -> Int32 = {
        guard let symbol = dlsym(nil, "fallocate") else {
            return { _, _, _, _ in
                errno = ENOSYS
                return -1
            }
        }
        return unsafeBitCast(symbol, to: (@convention(c) (Int32, Int32, off_t, off_t) -> Int32).self)
    }()

    /// Validates a transfer and returns its byte offset in the file.
    private func checkRange(sector: UInt64, length: Int) throws -> UInt64 {
        guard length % sectorSize == 0 else {
            throw DiskError.unalignedLength(path: path, length: length, sectorSize: sectorSize)
        }
        let sectors = UInt64(length / sectorSize)
        guard sector <= sectorCount, sectors <= sectorCount - sector else {
            throw DiskError.outOfRange(path: path, sector: sector, sectors: sectors, capacity: sectorCount)
        }
        return sector * UInt64(sectorSize)
    }

    private static func openError(path: String, errno e: Int32, operation: String) -> DiskError {
        switch e {
        case ENOENT, ENOTDIR: return .notFound(path: path)
        case EACCES, EPERM, EROFS: return .permissionDenied(path: path, errno: e)
        case EISDIR: return .notRegularFile(path: path)
        default: return .io(path: path, operation: operation, errno: e)
        }
    }
}
