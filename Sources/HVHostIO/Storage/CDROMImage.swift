/// A CD-ROM image in a virtual drive (`scsiN:M.deviceType = "cdrom-image"`): an ISO 9660
/// file read as 2048-byte blocks, never written, held with a shared lock so several VMs
/// can have the same image inserted. The SCSI layer gives it a CD-ROM target (MMC)
/// instead of a disk target.
package final class CDROMImage: VirtualDisk, CustomStringConvertible {
    /// The logical block size of CD-ROM data (mode 1) sectors.
    package static let blockSize = 2048

    private let image: FlatDisk
    package var path: String { image.path }
    package var sectorSize: Int { Self.blockSize }
    package var sectorCount: UInt64 { image.sectorCount }
    package var isReadOnly: Bool { true }

    /// Opens `path` read-only for `owner`; throws `DiskError` naming the file when it is
    /// missing, not a regular file, empty or not a whole number of 2048-byte blocks.
    package init(path: String, owner: String) throws {
        image = try FlatDisk(path: path, readOnly: true, owner: owner, sectorSize: Self.blockSize)
    }

    package func read(sector: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws {
        try image.read(sector: sector, into: buffer)
    }

    package func write(sector: UInt64, from buffer: UnsafeRawBufferPointer) throws {
        throw DiskError.readOnly(path: path)
    }

    package func flush() throws {}

    /// Closes the file and drops its lock; reads afterwards fail.
    package func close() { image.close() }

    package var description: String { "CD-ROM image '\(path)' (\(sectorCount) blocks)" }
}
