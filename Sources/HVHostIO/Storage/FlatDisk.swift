import Glibc

/// A flat (raw) image, or a FLAT extent of a VMDK descriptor: sector N is bytes
/// `offset + N*S ..< offset + (N+1)*S` of the file, S = 512 (2048 for a CD-ROM image).
/// The capacity is fixed when the file is opened (for a whole raw file, its size / S);
/// the file is never grown or shrunk.
package final class FlatDisk: ImageDisk, CustomStringConvertible {
    package static let defaultSectorSize = 512

    package let path: String
    package let sectorSize: Int
    package let sectorCount: UInt64
    package let isReadOnly: Bool
    package var format: DiskImageFormat { .flat }
    package var contentID: UInt32? { nil }
    package var parent: (any ImageDisk)? { nil }
    package var files: [String] { [path] }
    private let file: ImageFile
    private let byteOffset: UInt64

    /// Opens the raw image `path`, locked for `owner`. Throws `DiskError` naming the
    /// path when the file is missing, not a regular file, not accessible (in the
    /// requested mode), locked by another VM, empty, or not a whole number of
    /// `sectorSize`-byte sectors.
    package convenience init(path: String, readOnly: Bool, owner: String = "an hvhost disk",
                             sectorSize: Int = FlatDisk.defaultSectorSize) throws {
        let file = try ImageFile(path: path, writable: !readOnly, owner: owner)
        let size = try file.size()
        guard size > 0 else { throw DiskError.emptyImage(path: path) }
        guard size % UInt64(sectorSize) == 0 else {
            throw DiskError.sizeNotSectorMultiple(path: path, size: size, sectorSize: sectorSize)
        }
        self.init(file: file, byteOffset: 0, sectorCount: size / UInt64(sectorSize), sectorSize: sectorSize)
    }

    /// An extent of `sectorCount` sectors starting `byteOffset` bytes into `file`.
    init(file: ImageFile, byteOffset: UInt64, sectorCount: UInt64, sectorSize: Int = FlatDisk.defaultSectorSize) {
        self.file = file
        self.path = file.path
        self.sectorSize = sectorSize
        self.isReadOnly = !file.isWritable
        self.byteOffset = byteOffset
        self.sectorCount = sectorCount
    }

    package func close() { file.close() }

    package var description: String {
        "flat disk '\(path)' (\(sectorCount) sectors\(isReadOnly ? ", read-only" : ""))"
    }

    package func read(sector: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws {
        let offset = try checkRange(sector: sector, length: buffer.count)
        try file.read(at: offset, into: buffer)
    }

    package func write(sector: UInt64, from buffer: UnsafeRawBufferPointer) throws {
        guard !isReadOnly else { throw DiskError.readOnly(path: path) }
        let offset = try checkRange(sector: sector, length: buffer.count)
        try file.write(at: offset, from: buffer)
    }

    package func flush() throws {
        try file.sync()
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
        // A file system without holes: zeros are what the range must read as.
        if try !file.punchHole(at: offset, length: count * UInt64(sectorSize)) {
            try writeZeros(sector: sector, count: count)
        }
    }

    /// Validates a transfer and returns its byte offset in the file.
    private func checkRange(sector: UInt64, length: Int) throws -> UInt64 {
        try checkTransfer(path: path, sector: sector, length: length, sectorSize: sectorSize, capacity: sectorCount)
        return byteOffset + sector * UInt64(sectorSize)
    }
}

/// The `VirtualDisk` range rules: whole sectors, inside the capacity.
func checkTransfer(path: String, sector: UInt64, length: Int, sectorSize: Int, capacity: UInt64) throws {
    guard length % sectorSize == 0 else {
        throw DiskError.unalignedLength(path: path, length: length, sectorSize: sectorSize)
    }
    let sectors = UInt64(length / sectorSize)
    guard sector <= capacity, sectors <= capacity - sector else {
        throw DiskError.outOfRange(path: path, sector: sector, sectors: sectors, capacity: capacity)
    }
}
