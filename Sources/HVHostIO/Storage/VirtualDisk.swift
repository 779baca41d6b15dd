import Glibc

/// A VMkernel virtual disk: fixed-size sectors addressed from 0, as a SCSI adapter
/// plugin sees it through `disk_info`/`disk_submit`.
///
/// Contract for every implementation (flat files now; VMDK sparse extents, redo logs
/// and disk modes later):
/// - Transfers are whole sectors: a buffer's length must be a multiple of `sectorSize`
///   (`DiskError.unalignedLength`), and `sector ..< sector + length/sectorSize` must lie
///   inside `0 ..< sectorCount` (`DiskError.outOfRange`). A zero-length transfer at any
///   `sector <= sectorCount` does nothing.
/// - `write` on a read-only disk throws `DiskError.readOnly` (checked first); `flush` on
///   a read-only disk succeeds and does nothing.
/// - No silent zero-fill: every sector inside the capacity is backed by the image
///   (images whose size is not a sector multiple are refused when opened), so reaching
///   end-of-file inside the capacity means the image was truncated behind our back and
///   throws `DiskError.unexpectedEndOfFile`.
/// - A failed transfer may have moved part of the data.
/// - Thread-safe: calls may run concurrently from any thread (the I/O queue's workers);
///   overlapping concurrent writes have no defined order.
package protocol VirtualDisk: AnyObject, Sendable {
    /// Bytes per sector (512).
    var sectorSize: Int { get }
    /// Capacity in sectors.
    var sectorCount: UInt64 { get }
    var isReadOnly: Bool { get }
    func read(sector: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws
    func write(sector: UInt64, from buffer: UnsafeRawBufferPointer) throws
    /// Makes completed writes durable.
    func flush() throws
    /// Whether `discard` gives storage back (SCSI thin provisioning: the target offers
    /// UNMAP and WRITE SAME with UNMAP only then). Default false.
    var supportsDiscard: Bool { get }
    /// Deallocates `count` sectors from `sector` (same range rules and read-only check
    /// as `write`); afterwards they read as zeros. The default writes zeros.
    func discard(sector: UInt64, count: UInt64) throws
}

extension VirtualDisk {
    package var supportsDiscard: Bool { false }

    package func discard(sector: UInt64, count: UInt64) throws {
        guard !isReadOnly else { throw DiskError.readOnly(path: "\(self)") }
        // The whole range first: a failure must not leave part of it zeroed.
        guard sector <= sectorCount, count <= sectorCount - sector else {
            throw DiskError.outOfRange(path: "\(self)", sector: sector, sectors: count, capacity: sectorCount)
        }
        let chunkSectors = UInt64(max(1, (1 << 20) / sectorSize))
        let zeros = [UInt8](repeating: 0, count: Int(min(count, chunkSectors)) * sectorSize)
        var done: UInt64 = 0
        repeat {
            let n = min(count - done, chunkSectors)
            try zeros.withUnsafeBytes { try write(sector: sector + done, from: UnsafeRawBufferPointer(rebasing: $0[0..<Int(n) * sectorSize])) }
            done += n
        } while done < count
    }
}

/// Why a virtual-disk operation failed. Every message names the image file.
package enum DiskError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The image file does not exist.
    case notFound(path: String)
    /// The path exists but is not a regular file (a directory, device, FIFO…).
    case notRegularFile(path: String)
    /// Opening the image was refused (EACCES/EPERM, or EROFS for a writable open).
    case permissionDenied(path: String, errno: Int32)
    /// The image file is 0 bytes long.
    case emptyImage(path: String)
    /// The image's size is not a whole number of sectors.
    case sizeNotSectorMultiple(path: String, size: UInt64, sectorSize: Int)
    /// The transfer reaches outside the disk.
    case outOfRange(path: String, sector: UInt64, sectors: UInt64, capacity: UInt64)
    /// The buffer is not a whole number of sectors.
    case unalignedLength(path: String, length: Int, sectorSize: Int)
    /// A write to a disk opened read-only.
    case readOnly(path: String)
    /// End of file inside the disk's capacity (the image shrank after it was opened).
    case unexpectedEndOfFile(path: String, sector: UInt64)
    /// A system call failed. `operation` is e.g. "open", "read", "write", "flush".
    case io(path: String, operation: String, errno: Int32)

    /// The positive errno value that best describes this error, for mapping onto the
    /// ABI's negative HV_E* results (read-only → EPERM as `hv_disk_info` documents).
    package var errnoValue: Int32 {
        switch self {
        case .notFound: return ENOENT
        case .notRegularFile: return EINVAL
        case .permissionDenied(_, let e): return e == EROFS ? EPERM : e
        case .emptyImage, .sizeNotSectorMultiple, .unalignedLength: return EINVAL
        case .outOfRange: return ERANGE
        case .readOnly: return EPERM
        case .unexpectedEndOfFile: return EIO
        case .io(_, _, let e): return e
        }
    }

    /// The image file the error is about.
    var path: String {
        switch self {
        case .notFound(let p), .notRegularFile(let p), .permissionDenied(let p, _), .emptyImage(let p),
             .sizeNotSectorMultiple(let p, _, _), .outOfRange(let p, _, _, _), .unalignedLength(let p, _, _),
             .readOnly(let p), .unexpectedEndOfFile(let p, _), .io(let p, _, _):
            return p
        }
    }

    package var description: String {
        switch self {
        case .notFound(let path):
            return "virtual disk '\(path)': no such file"
        case .notRegularFile(let path):
            return "virtual disk '\(path)': not a regular file"
        case .permissionDenied(let path, let e):
            return "virtual disk '\(path)': permission denied (\(errnoText(e)))"
        case .emptyImage(let path):
            return "virtual disk '\(path)': the image is empty (0 bytes)"
        case .sizeNotSectorMultiple(let path, let size, let sectorSize):
            return "virtual disk '\(path)': size \(size) bytes is not a multiple of the \(sectorSize)-byte sector size"
        case .outOfRange(let path, let sector, let sectors, let capacity):
            return "virtual disk '\(path)': sectors \(sector)+\(sectors) are outside the disk (\(capacity) sectors)"
        case .unalignedLength(let path, let length, let sectorSize):
            return "virtual disk '\(path)': transfer length \(length) is not a multiple of \(sectorSize) bytes"
        case .readOnly(let path):
            return "virtual disk '\(path)': the disk is read-only"
        case .unexpectedEndOfFile(let path, let sector):
            return "virtual disk '\(path)': unexpected end of file at sector \(sector) (was the image truncated?)"
        case .io(let path, let operation, let e):
            return "virtual disk '\(path)': \(operation) failed: \(errnoText(e))"
        }
    }
}

/// "strerror text (errno N)". (glibc's strerror returns static text for known codes
/// and a thread-local buffer for unknown ones, so it is safe from any thread.)
package func errnoText(_ code: Int32) -> String {
    let text = strerror(code).map { String(cString: $0) } ?? "unknown error"
    return "\(text) (errno \(code))"
}
