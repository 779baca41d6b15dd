/// The 512-byte header of a VMDK hosted sparse extent ("KDMV", little endian), as the
/// public VMDK specification lays it out. Sector numbers count 512-byte sectors from
/// the start of the file.
package struct VMDKSparseHeader: Equatable, Sendable {
    package static let magic: UInt32 = 0x564D_444B   // "KDMV" on disk
    package static let size = 512

    /// flags: the newline-detection characters are valid.
    static let flagNewlineTest: UInt32 = 1 << 0
    /// flags: a redundant grain directory and tables exist (at `redundantGDOffset`).
    static let flagRedundantGrainTables: UInt32 = 1 << 1
    /// flags: a grain table entry of 1 means "zeroed grain".
    static let flagZeroedGrainEntries: UInt32 = 1 << 2
    /// flags: grains are compressed (streamOptimized).
    static let flagCompressed: UInt32 = 1 << 16
    /// flags: the stream has markers (streamOptimized).
    static let flagMarkers: UInt32 = 1 << 17

    package var version: UInt32 = 1
    package var flags: UInt32 = flagNewlineTest | flagRedundantGrainTables
    /// Disk size in sectors.
    package var capacity: UInt64
    /// Sectors per grain (a power of two, at least 8).
    package var grainSize: UInt64 = 128
    package var descriptorOffset: UInt64 = 0
    package var descriptorSize: UInt64 = 0
    package var grainTableEntries: UInt32 = 512
    package var redundantGDOffset: UInt64 = 0
    package var gdOffset: UInt64 = 0
    /// Sectors of metadata before the first grain.
    package var overhead: UInt64 = 0
    package var uncleanShutdown: UInt8 = 0
    package var compressAlgorithm: UInt16 = 0

    package init(capacity: UInt64) { self.capacity = capacity }

    var hasRedundantTables: Bool { flags & Self.flagRedundantGrainTables != 0 && redundantGDOffset != 0 }
    var hasZeroedGrainEntries: Bool { flags & Self.flagZeroedGrainEntries != 0 }
    /// Sectors one grain table covers.
    var sectorsPerTable: UInt64 { grainSize * UInt64(grainTableEntries) }
    /// Entries in the grain directory.
    var directoryEntries: UInt64 { (capacity + sectorsPerTable - 1) / sectorsPerTable }
    /// Sectors one grain table occupies.
    var tableSectors: UInt64 { (UInt64(grainTableEntries) * 4 + 511) / 512 }
    /// Sectors the grain directory occupies.
    var directorySectors: UInt64 { (directoryEntries * 4 + 511) / 512 }

    /// Parses and sanity-checks a header; `fail` turns a reason into the caller's error.
    package init(bytes: [UInt8], fail: (String) -> Error) throws {
        guard bytes.count >= Self.size else { throw fail("too short for a VMDK sparse header") }
        func u32(_ o: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(bytes[o + $1]) << (8 * $1) } }
        func u64(_ o: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(bytes[o + $1]) << (8 * $1) } }
        guard u32(0) == Self.magic else { throw fail("not a VMDK sparse extent (no KDMV magic)") }
        capacity = u64(12)
        version = u32(4)
        flags = u32(8)
        grainSize = u64(20)
        descriptorOffset = u64(28)
        descriptorSize = u64(36)
        grainTableEntries = u32(44)
        redundantGDOffset = u64(48)
        gdOffset = u64(56)
        overhead = u64(64)
        uncleanShutdown = bytes[72]
        compressAlgorithm = UInt16(bytes[77]) | UInt16(bytes[78]) << 8

        guard (1...3).contains(version) else { throw fail("sparse header version \(version); this host reads versions 1 to 3") }
        guard flags & (Self.flagCompressed | Self.flagMarkers) == 0, compressAlgorithm == 0 else {
            throw fail("compressed grains (streamOptimized) are not supported; convert the image to monolithicSparse")
        }
        guard grainSize >= 8, grainSize <= 1 << 16, grainSize & (grainSize - 1) == 0 else {
            throw fail("grain size \(grainSize) sectors is not a power of two between 8 and 65536")
        }
        guard grainTableEntries >= 1, grainTableEntries <= 1 << 16 else {
            throw fail("\(grainTableEntries) entries per grain table is outside 1...65536")
        }
        guard capacity > 0, capacity <= 1 << 41 else { throw fail("capacity \(capacity) sectors is outside 1 sector...1 PiB") }
        guard gdOffset != 0 else { throw fail("no grain directory (gdOffset is 0)") }
        if flags & Self.flagNewlineTest != 0 {
            guard bytes[73] == 0x0A, bytes[74] == 0x20, bytes[75] == 0x0D, bytes[76] == 0x0A else {
                throw fail("the header's newline-test characters are damaged (was the file transferred in text mode?)")
            }
        }
    }

    package var bytes: [UInt8] {
        var b = [UInt8](repeating: 0, count: Self.size)
        func put32(_ o: Int, _ v: UInt32) { for i in 0..<4 { b[o + i] = UInt8(truncatingIfNeeded: v >> (8 * i)) } }
        func put64(_ o: Int, _ v: UInt64) { for i in 0..<8 { b[o + i] = UInt8(truncatingIfNeeded: v >> (8 * i)) } }
        put32(0, Self.magic)
        put32(4, version)
        put32(8, flags)
        put64(12, capacity)
        put64(20, grainSize)
        put64(28, descriptorOffset)
        put64(36, descriptorSize)
        put32(44, grainTableEntries)
        put64(48, redundantGDOffset)
        put64(56, gdOffset)
        put64(64, overhead)
        b[72] = uncleanShutdown
        b[73] = 0x0A; b[74] = 0x20; b[75] = 0x0D; b[76] = 0x0A
        b[77] = UInt8(truncatingIfNeeded: compressAlgorithm)
        b[78] = UInt8(truncatingIfNeeded: compressAlgorithm >> 8)
        return b
    }
}
