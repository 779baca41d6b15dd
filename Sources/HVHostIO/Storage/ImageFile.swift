import Glibc
import HVSupport

/// One open image file (a flat image, a sparse extent, a descriptor): whole-length
/// positioned reads and writes that retry EINTR, `fdatasync`, growth, and the image lock
/// (`ImageLock`) taken when it is opened and dropped when it is closed.
///
/// `close()` is explicit so a VM's power-off can release its images (and their locks)
/// at a known moment, whoever still holds a reference; calls after it throw EBADF.
/// Callers close only once no I/O is in flight.
package final class ImageFile: @unchecked Sendable {
    package let path: String
    package let isWritable: Bool
    private let state = HostLock()
    private var fd: Int32
    private var lock: ImageLock?

    /// Opens `path` (a regular file) for reading, or reading and writing, and locks it
    /// for `owner` (shared when read-only, exclusive when writable). `create` makes a
    /// new file (refusing an existing one).
    package init(path: String, writable: Bool, owner: String, create: Bool = false) throws {
        self.path = path
        self.isWritable = writable
        var st = stat()
        if !create {
            // stat first: opening a FIFO would block, and the error is clearer.
            if stat(path, &st) != 0 { throw Self.openError(path: path, errno: errno, operation: "stat") }
            guard (st.st_mode & S_IFMT) == S_IFREG else { throw DiskError.notRegularFile(path: path) }
        }
        var flags = (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NOCTTY
        if create { flags |= O_CREAT | O_EXCL }
        var descriptor: Int32
        repeat { descriptor = open(path, flags, 0o644) } while descriptor < 0 && errno == EINTR
        guard descriptor >= 0 else { throw Self.openError(path: path, errno: errno, operation: create ? "create" : "open") }
        // Re-check on the descriptor (the path may have been replaced since stat).
        guard fstat(descriptor, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            Glibc.close(descriptor)
            throw DiskError.notRegularFile(path: path)
        }
        do {
            lock = try ImageLock(fd: descriptor, path: path, device: UInt64(st.st_dev), inode: UInt64(st.st_ino),
                                 exclusive: writable, owner: owner)
        } catch {
            Glibc.close(descriptor)
            throw error
        }
        fd = descriptor
    }

    deinit { close() }

    /// Releases the lock and closes the file. Idempotent.
    package func close() {
        state.withLock {
            guard fd >= 0 else { return }
            lock?.release()
            lock = nil
            Glibc.close(fd)
            fd = -1
        }
    }

    private var descriptor: Int32 {
        get throws {
            let d = state.withLock { fd }
            guard d >= 0 else { throw DiskError.io(path: path, operation: "use a closed image", errno: EBADF) }
            return d
        }
    }

    /// The file's size in bytes.
    package func size() throws -> UInt64 {
        var st = stat()
        guard fstat(try descriptor, &st) == 0 else { throw DiskError.io(path: path, operation: "fstat", errno: errno) }
        return UInt64(st.st_size)
    }

    /// Reads exactly `buffer.count` bytes at `offset`; end of file first is
    /// `unexpectedEndOfFile` (reported at the 512-byte sector it hit).
    package func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return }
        let fd = try descriptor
        var done = 0
        while done < buffer.count {
            let n = pread(fd, base + done, buffer.count - done, off_t(offset + UInt64(done)))
            if n > 0 {
                done += n
            } else if n == 0 {
                throw DiskError.unexpectedEndOfFile(path: path, sector: (offset + UInt64(done)) / 512)
            } else if errno != EINTR {
                throw DiskError.io(path: path, operation: "read", errno: errno)
            }
        }
    }

    package func read(at offset: UInt64, count: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        try bytes.withUnsafeMutableBytes { try read(at: offset, into: $0) }
        return bytes
    }

    /// Writes all of `buffer` at `offset` (growing the file when it reaches past the end).
    package func write(at offset: UInt64, from buffer: UnsafeRawBufferPointer) throws {
        guard isWritable else { throw DiskError.readOnly(path: path) }
        guard let base = buffer.baseAddress, buffer.count > 0 else { return }
        let fd = try descriptor
        var done = 0
        while done < buffer.count {
            let n = pwrite(fd, base + done, buffer.count - done, off_t(offset + UInt64(done)))
            if n > 0 {
                done += n
            } else if n == 0 {
                // Not supposed to happen on a regular file; "no space" instead of spinning.
                throw DiskError.io(path: path, operation: "write", errno: ENOSPC)
            } else if errno != EINTR {
                throw DiskError.io(path: path, operation: "write", errno: errno)
            }
        }
    }

    package func write(at offset: UInt64, _ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write(at: offset, from: $0) }
    }

    /// Sets the file's length (for a new image, or a descriptor rewritten shorter).
    package func truncate(to length: UInt64) throws {
        guard isWritable else { throw DiskError.readOnly(path: path) }
        let fd = try descriptor
        while ftruncate(fd, off_t(length)) != 0 {
            if errno != EINTR { throw DiskError.io(path: path, operation: "truncate", errno: errno) }
        }
    }

    /// Frees `length` bytes at `offset` and keeps the file's size; the range then reads
    /// as zeros. False when the file system cannot punch holes (nothing changed).
    package func punchHole(at offset: UInt64, length: UInt64) throws -> Bool {
        guard isWritable else { throw DiskError.readOnly(path: path) }
        let fd = try descriptor
        let punchHoleKeepSize: Int32 = 0x02 | 0x01     // FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
        while Self.fallocate(fd, punchHoleKeepSize, off_t(offset), off_t(length)) != 0 {
            switch errno {
            case EINTR: continue
            case EOPNOTSUPP, ENOSYS: return false
            default: throw DiskError.io(path: path, operation: "discard", errno: errno)
            }
        }
        return true
    }

    /// glibc's fallocate(2) wrapper, which Swift's Glibc module hides (it needs
    /// _GNU_SOURCE); a libc without it makes punchHole report "unsupported".
    private static let fallocate: @convention(c) (Int32, Int32, off_t, off_t) -> Int32 = {
        guard let symbol = dlsym(nil, "fallocate") else {
            return { _, _, _, _ in
                errno = ENOSYS
                return -1
            }
        }
        return unsafeBitCast(symbol, to: (@convention(c) (Int32, Int32, off_t, off_t) -> Int32).self)
    }()

    /// Makes written data durable (a no-op for a read-only file).
    package func sync() throws {
        guard isWritable else { return }
        let fd = try descriptor
        while fdatasync(fd) != 0 {
            if errno != EINTR { throw DiskError.io(path: path, operation: "flush", errno: errno) }
        }
    }

    static func openError(path: String, errno e: Int32, operation: String) -> DiskError {
        switch e {
        case ENOENT, ENOTDIR: return .notFound(path: path)
        case EACCES, EPERM, EROFS: return .permissionDenied(path: path, errno: e)
        case EISDIR: return .notRegularFile(path: path)
        default: return .io(path: path, operation: operation, errno: e)
        }
    }
}
