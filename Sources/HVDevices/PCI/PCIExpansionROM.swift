/// A PCI expansion ROM: read-only contents a function decodes through configuration
/// register 0x30 (address bits 31..11, enable bit 0). Its size is the contents rounded
/// up to a power of two, at least 2 KiB; the padding reads as zero, writes are ignored.
package final class PCIExpansionROM: BusDevice, @unchecked Sendable {
    static let minimumSize: UInt64 = 2048
    /// The largest ROM the register's address bits describe sensibly (PCI allows 16 MiB).
    package static let maximumSize: UInt64 = 16 << 20

    package let size: UInt64
    let contents: [UInt8]

    /// nil when `contents` is empty or larger than `maximumSize`.
    package init?(contents: [UInt8]) {
        guard !contents.isEmpty, UInt64(contents.count) <= Self.maximumSize else { return nil }
        var size = Self.minimumSize
        while size < UInt64(contents.count) { size <<= 1 }
        self.size = size
        self.contents = contents
    }

    package func read(offset: UInt64, data: UnsafeMutableRawBufferPointer) {
        for i in 0..<data.count {
            let at = offset + UInt64(i)
            data[i] = at < UInt64(contents.count) ? contents[Int(at)] : 0
        }
    }

    package func write(offset: UInt64, data: UnsafeRawBufferPointer) {}
}
