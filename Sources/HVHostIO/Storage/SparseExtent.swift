import Glibc
import HVSupport

/// A VMDK hosted sparse extent (monolithicSparse): a header, an embedded descriptor, a
/// grain directory whose entries point at grain tables whose entries point at grains
/// (`grainSize` sectors each, 0 = not allocated). With a parent (`parentFileNameHint`
/// in the descriptor) it is a delta disk, a redo log: unallocated grains read from the
/// parent.
///
/// Growth appends at the end of the file in an order that keeps the image consistent
/// if the process dies at any point, and across a power loss: the whole new grain (the
/// written sectors completed from the parent or zeros) is written, then `fdatasync`,
/// and only then the grain table entry (primary, then redundant) points at it. A new
/// grain table is likewise written and synced before the directory entry names it. A
/// crash leaves at most unreferenced space at the end of the file. The first write
/// after each open also gives the disk a new CID (VMware's "content changed" mark),
/// which is what a delta's parentCID is checked against.
package final class SparseExtent: ImageDisk, @unchecked Sendable, CustomStringConvertible {
    package let path: String
    package let sectorSize = 512
    package let sectorCount: UInt64
    package let isReadOnly: Bool
    package var format: DiskImageFormat { .sparse }
    package let parent: (any ImageDisk)?
    package var files: [String] { [path] }
    package let header: VMDKSparseHeader
    let file: ImageFile

    private let meta = HostLock()
    /// [meta] The embedded descriptor; nil when the extent has none.
    private var descriptorValue: VMDKDescriptor?
    /// [meta] Grain directory, and the redundant one when present.
    private var directory: [UInt32]
    private var redundantDirectory: [UInt32]?
    /// [meta] Grain tables read so far, by directory index.
    private var tables: [Int: [UInt32]] = [:]
    /// [meta] Where the next grain or table goes (bytes, sector aligned).
    private var fileEnd: UInt64
    /// [meta] Whether this open has changed the CID yet.
    private var contentChanged = false
    /// [meta] Sectors holding metadata (header, descriptor, directories, tables) as
    /// sorted disjoint ranges: a grain entry pointing into them is refused, so a hostile
    /// image cannot make a guest write overwrite the image's own metadata.
    private var metadata: [Range<UInt64>] = []

    package var descriptor: VMDKDescriptor? { meta.withLock { descriptorValue } }
    package var contentID: UInt32? { descriptor?.contentID }

    private enum Grain { case unallocated, zero, at(UInt64) }

    private init(file: ImageFile, header: VMDKSparseHeader, descriptor: VMDKDescriptor?, parent: (any ImageDisk)?,
                 directory: [UInt32], redundantDirectory: [UInt32]?, fileEnd: UInt64) {
        self.file = file
        self.path = file.path
        self.header = header
        self.descriptorValue = descriptor
        self.parent = parent
        self.directory = directory
        self.redundantDirectory = redundantDirectory
        self.fileEnd = fileEnd
        var ranges: [Range<UInt64>] = [0..<1, header.gdOffset..<header.gdOffset + header.directorySectors]
        if header.descriptorOffset != 0 { ranges.append(header.descriptorOffset..<header.descriptorOffset + header.descriptorSize) }
        if header.hasRedundantTables {
            ranges.append(header.redundantGDOffset..<header.redundantGDOffset + header.directorySectors)
        }
        for t in directory + (redundantDirectory ?? []) where t != 0 {
            ranges.append(UInt64(t)..<UInt64(t) + header.tableSectors)
        }
        self.metadata = Self.merged(ranges)
        self.sectorCount = header.capacity
        self.isReadOnly = !file.isWritable
    }

    package var description: String {
        "sparse extent '\(path)' (\(sectorCount) sectors\(parent.map { ", delta of '\($0.path)'" } ?? "")\(isReadOnly ? ", read-only" : ""))"
    }

    /// Opens the extent at `path` and, with `openParent`, the parent chain (read-only).
    package static func open(path: String, writable: Bool, owner: String, openParent: Bool = true) throws -> SparseExtent {
        let file = try ImageFile(path: path, writable: writable, owner: owner)
        do {
            return try open(file: file, owner: owner, openParent: openParent)
        } catch {
            file.close()
            throw error
        }
    }

    private static func open(file: ImageFile, owner: String, openParent: Bool) throws -> SparseExtent {
        let path = file.path
        let fail = { (why: String) -> Error in DiskError.invalidImage(path: path, reason: why) }
        let size = try file.size()
        guard size >= 512 else { throw fail("\(size) bytes is too short for a VMDK sparse extent") }
        let header = try VMDKSparseHeader(bytes: try file.read(at: 0, count: 512), fail: fail)
        let fileSectors = size / 512
        let gdSectors = header.directorySectors
        guard header.gdOffset < fileSectors, gdSectors <= fileSectors - header.gdOffset else {
            throw fail("the grain directory (sector \(header.gdOffset), \(gdSectors) sectors) lies outside the file (\(fileSectors) sectors)")
        }
        if header.hasRedundantTables {
            guard header.redundantGDOffset < fileSectors, gdSectors <= fileSectors - header.redundantGDOffset else {
                throw fail("the redundant grain directory (sector \(header.redundantGDOffset)) lies outside the file")
            }
        }
        var descriptor: VMDKDescriptor?
        if header.descriptorOffset != 0, header.descriptorSize != 0 {
            guard header.descriptorSize <= 2048, header.descriptorOffset < fileSectors,
                  header.descriptorSize <= fileSectors - header.descriptorOffset else {
                throw fail("the embedded descriptor (sector \(header.descriptorOffset), \(header.descriptorSize) sectors) lies outside the file")
            }
            let raw = try file.read(at: header.descriptorOffset * 512, count: Int(header.descriptorSize) * 512)
            let text = String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            descriptor = try VMDKDescriptor(text: text, path: path)
        }
        let directory = try readDirectory(file, at: header.gdOffset, entries: Int(header.directoryEntries))
        let redundant = header.hasRedundantTables
            ? try readDirectory(file, at: header.redundantGDOffset, entries: Int(header.directoryEntries)) : nil
        for (name, d) in [("grain table", directory), ("redundant grain table", redundant ?? [])] {
            for (t, sector) in d.enumerated() where sector != 0 {
                guard sector >= 1, UInt64(sector) + header.tableSectors <= fileSectors else {
                    throw fail("\(name) \(t) at sector \(sector) lies outside the file (\(fileSectors) sectors); `hvhost disk check` lists every problem")
                }
            }
        }

        var parent: (any ImageDisk)?
        if openParent, let hint = descriptor?.parentFileNameHint {
            let parentPath = DiskImage.sibling(hint, of: path)
            let p: any ImageDisk
            do {
                p = try DiskImage.open(path: parentPath, writable: false, owner: owner)
            } catch let error as DiskError {
                throw DiskError.invalidImage(path: path, reason: "cannot open its parent (parentFileNameHint \"\(hint)\"): \(error)")
            }
            let expected = descriptor!.parentContentID
            if let cid = p.contentID, expected != VMDKDescriptor.noParent, cid != expected {
                p.close()
                throw fail("its parent '\(parentPath)' has CID \(VMDKDescriptor.hex(cid)) but this delta was made on CID \(VMDKDescriptor.hex(expected)): the parent changed after the redo log was created, so the chain is inconsistent")
            }
            parent = p
        }
        return SparseExtent(file: file, header: header, descriptor: descriptor, parent: parent,
                            directory: directory, redundantDirectory: redundant,
                            fileEnd: (size + 511) / 512 * 512)
    }

    private static func readDirectory(_ file: ImageFile, at sector: UInt64, entries: Int) throws -> [UInt32] {
        let raw = try file.read(at: sector * 512, count: entries * 4)
        return (0..<entries).map { i in (0..<4).reduce(UInt32(0)) { $0 | UInt32(raw[i * 4 + $1]) << (8 * $1) } }
    }

    /// Creates a new extent of `sectors` sectors at `path` with every grain table
    /// allocated (VMware's and QEMU's layout: header, descriptor, redundant directory
    /// and tables, directory and tables, rounded up to a grain), and opens it writable.
    /// With `parent`, the extent is a delta disk of that image: `parentCID` is the
    /// parent's CID and `parentFileNameHint` its name relative to `path` when beside it.
    package static func create(path: String, sectors: UInt64, parent: (any ImageDisk)?, owner: String,
                               database extra: [(String, String)] = []) throws -> SparseExtent {
        var header = VMDKSparseHeader(capacity: sectors)
        header.descriptorOffset = 1
        header.descriptorSize = 20
        header.redundantGDOffset = header.descriptorOffset + header.descriptorSize
        let tablesSectors = header.directoryEntries * header.tableSectors
        header.gdOffset = header.redundantGDOffset + header.directorySectors + tablesSectors
        let metadataEnd = header.gdOffset + header.directorySectors + tablesSectors
        header.overhead = (metadataEnd + header.grainSize - 1) / header.grainSize * header.grainSize

        let hint = parent.map { p -> String in
            let dir = { (s: String) in s.lastIndex(of: "/").map { String(s[...$0]) } ?? "" }
            return dir(p.path) == dir(path) ? DiskImage.baseName(p.path) : p.path
        }
        let text = VMDKDescriptor.render(
            cid: DiskImage.newContentID(replacing: nil),
            parentCID: parent.map { $0.contentID ?? VMDKDescriptor.noParent } ?? VMDKDescriptor.noParent,
            createType: "monolithicSparse", parentFileNameHint: hint,
            extents: [(sectors, "SPARSE", DiskImage.baseName(path), nil)],
            database: [("ddb.virtualHWVersion", "4")] + VMDKDescriptor.geometry(sectors: sectors)
                + [("ddb.adapterType", "lsilogic")] + extra)
        guard text.utf8.count < Int(header.descriptorSize) * 512 else {
            throw DiskError.invalidImage(path: path, reason: "the descriptor (\(text.utf8.count) bytes) does not fit its \(header.descriptorSize * 512)-byte area; use a shorter parent path")
        }

        // Built under a temporary name and linked into place complete, so a crash while
        // creating (say a redo log at power-on) never leaves a half-written image.
        let temporary = path + ".creating"
        unlink(temporary)   // left by a crash: it never had a reader
        let file = try ImageFile(path: temporary, writable: true, owner: owner, create: true)
        do {
            var meta = [UInt8](repeating: 0, count: Int(header.overhead) * 512)
            meta.replaceSubrange(0..<512, with: header.bytes)
            let d = Int(header.descriptorOffset) * 512
            meta.replaceSubrange(d..<d + text.utf8.count, with: Array(text.utf8))
            for (gd, firstTable) in [(header.redundantGDOffset, header.redundantGDOffset + header.directorySectors),
                                     (header.gdOffset, header.gdOffset + header.directorySectors)] {
                for i in 0..<Int(header.directoryEntries) {
                    let v = UInt32(firstTable + UInt64(i) * header.tableSectors)
                    for b in 0..<4 { meta[Int(gd) * 512 + i * 4 + b] = UInt8(truncatingIfNeeded: v >> (8 * b)) }
                }
            }
            try file.write(at: 0, meta)
            try file.sync()
            file.close()
            // link refuses an existing `path`, as creating it would.
            guard link(temporary, path) == 0 else {
                throw ImageFile.openError(path: path, errno: errno, operation: "create")
            }
            unlink(temporary)
        } catch {
            file.close()
            unlink(temporary)
            throw error
        }
        let disk = try open(path: path, writable: true, owner: owner, openParent: false)
        return parent.map { disk.withParent($0) } ?? disk
    }

    /// The same open extent over `parent` (used right after creating a delta, whose
    /// parent the caller already holds).
    private func withParent(_ parent: any ImageDisk) -> SparseExtent {
        meta.withLock {
            SparseExtent(file: file, header: header, descriptor: descriptorValue, parent: parent,
                         directory: directory, redundantDirectory: redundantDirectory, fileEnd: fileEnd)
        }
    }

    package func close() {
        file.close()
        parent?.close()
    }

    // MARK: - Lookup

    /// [meta] The grain table `index`, read on first use.
    private func table(_ index: Int) throws -> [UInt32]? {
        if let t = tables[index] { return t }
        let sector = UInt64(directory[index])
        guard sector != 0 else { return nil }
        let count = Int(header.grainTableEntries)
        let raw = try file.read(at: sector * 512, count: count * 4)
        let t = (0..<count).map { i in (0..<4).reduce(UInt32(0)) { $0 | UInt32(raw[i * 4 + $1]) << (8 * $1) } }
        let fileSectors = fileEnd / 512
        for (e, v) in t.enumerated() where v > 1 || (v == 1 && !header.hasZeroedGrainEntries) {
            let grain = UInt64(v)..<UInt64(v) + header.grainSize
            guard grain.upperBound <= fileSectors, !overlapsMetadata(grain) else {
                throw DiskError.invalidImage(path: path, reason: "grain table \(index) entry \(e) points at sector \(v), \(grain.upperBound > fileSectors ? "outside the file" : "inside the image's metadata"); `hvhost disk check` lists every problem")
            }
        }
        tables[index] = t
        return t
    }

    /// [meta]
    private func grain(_ g: UInt64) throws -> Grain {
        let entries = UInt64(header.grainTableEntries)
        guard let t = try table(Int(g / entries)) else { return .unallocated }
        switch t[Int(g % entries)] {
        case 0: return .unallocated
        case 1 where header.hasZeroedGrainEntries: return .zero
        case let sector: return .at(UInt64(sector) * 512)
        }
    }

    /// Splits a transfer into per-grain pieces: (grain, first sector in it, sectors, byte offset in the buffer).
    private func pieces(sector: UInt64, length: Int) -> [(grain: UInt64, inGrain: UInt64, sectors: UInt64, at: Int)] {
        var result: [(UInt64, UInt64, UInt64, Int)] = []
        var s = sector, left = UInt64(length / 512), at = 0
        while left > 0 {
            let inGrain = s % header.grainSize
            let n = min(header.grainSize - inGrain, left)
            result.append((s / header.grainSize, inGrain, n, at))
            s += n; left -= n; at += Int(n) * 512
        }
        return result
    }

    // MARK: - I/O

    package func read(sector: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws {
        try checkTransfer(path: path, sector: sector, length: buffer.count, sectorSize: 512, capacity: sectorCount)
        for p in pieces(sector: sector, length: buffer.count) {
            let chunk = UnsafeMutableRawBufferPointer(rebasing: buffer[p.at..<p.at + Int(p.sectors) * 512])
            switch try meta.withLock({ try grain(p.grain) }) {
            case .at(let offset): try file.read(at: offset + p.inGrain * 512, into: chunk)
            case .zero: chunk.initializeMemory(as: UInt8.self, repeating: 0)
            case .unallocated: try readBelow(sector: p.grain * header.grainSize + p.inGrain, into: chunk)
            }
        }
    }

    /// What an unallocated range reads: the parent's data (zeros past its end), or zeros.
    private func readBelow(sector: UInt64, into chunk: UnsafeMutableRawBufferPointer) throws {
        chunk.initializeMemory(as: UInt8.self, repeating: 0)
        guard let parent, sector < parent.sectorCount else { return }
        let n = Int(min(UInt64(chunk.count / 512), parent.sectorCount - sector)) * 512
        try parent.read(sector: sector, into: UnsafeMutableRawBufferPointer(rebasing: chunk[0..<n]))
    }

    package func write(sector: UInt64, from buffer: UnsafeRawBufferPointer) throws {
        guard !isReadOnly else { throw DiskError.readOnly(path: path) }
        try checkTransfer(path: path, sector: sector, length: buffer.count, sectorSize: 512, capacity: sectorCount)
        try markContentChanged()
        var missing: [(grain: UInt64, inGrain: UInt64, sectors: UInt64, at: Int)] = []
        for p in pieces(sector: sector, length: buffer.count) {
            if case .at(let offset) = try meta.withLock({ try grain(p.grain) }) {
                try file.write(at: offset + p.inGrain * 512,
                               from: UnsafeRawBufferPointer(rebasing: buffer[p.at..<p.at + Int(p.sectors) * 512]))
            } else {
                missing.append(p)
            }
        }
        guard !missing.isEmpty else { return }
        try meta.withLock { try allocate(missing, from: buffer) }
    }

    /// [meta] Writes grains that had no space yet: data first, one sync, then the
    /// table entries. A grain another writer allocated meanwhile is written in place.
    private func allocate(_ pieces: [(grain: UInt64, inGrain: UInt64, sectors: UInt64, at: Int)],
                          from buffer: UnsafeRawBufferPointer) throws {
        let grainBytes = Int(header.grainSize) * 512
        var placed: [(grain: UInt64, offset: UInt64)] = []
        var whole = [UInt8](repeating: 0, count: grainBytes)
        for p in pieces {
            let source = UnsafeRawBufferPointer(rebasing: buffer[p.at..<p.at + Int(p.sectors) * 512])
            switch try grain(p.grain) {
            case .at(let offset):
                try file.write(at: offset + p.inGrain * 512, from: source)
                continue
            case .zero:
                whole = [UInt8](repeating: 0, count: grainBytes)
            case .unallocated:
                if p.sectors < header.grainSize {
                    try whole.withUnsafeMutableBytes { try readBelow(sector: p.grain * header.grainSize, into: $0) }
                }
            }
            whole.withUnsafeMutableBytes { w in
                UnsafeMutableRawBufferPointer(rebasing: w[Int(p.inGrain) * 512..<Int(p.inGrain) * 512 + source.count])
                    .copyMemory(from: source)
            }
            try ensureTable(Int(p.grain / UInt64(header.grainTableEntries)))
            let offset = fileEnd
            try file.write(at: offset, whole)
            fileEnd += UInt64(grainBytes)
            placed.append((p.grain, offset))
        }
        guard !placed.isEmpty else { return }
        try file.sync()
        for (g, offset) in placed {
            try setEntry(grain: g, sector: UInt32(offset / 512))
        }
    }

    /// [meta] Points grain `g`'s table entries (primary, then redundant) at `sector`.
    private func setEntry(grain g: UInt64, sector: UInt32) throws {
        let entries = UInt64(header.grainTableEntries)
        let t = Int(g / entries), e = Int(g % entries)
        let bytes = (0..<4).map { UInt8(truncatingIfNeeded: sector >> (8 * $0)) }
        try file.write(at: UInt64(directory[t]) * 512 + UInt64(e) * 4, bytes)
        if let r = redundantDirectory, r[t] != 0 {
            try file.write(at: UInt64(r[t]) * 512 + UInt64(e) * 4, bytes)
        }
        tables[t]![e] = sector
    }

    /// [meta] Makes sure grain table `t` exists: a new one (and its redundant copy) is
    /// written zeroed and synced before the directory entries point at it.
    private func ensureTable(_ t: Int) throws {
        guard try table(t) == nil else { return }
        let bytes = [UInt8](repeating: 0, count: Int(header.tableSectors) * 512)
        let primary = fileEnd
        try file.write(at: primary, bytes)
        fileEnd += UInt64(bytes.count)
        var backup: UInt64?
        if redundantDirectory != nil {
            backup = fileEnd
            try file.write(at: fileEnd, bytes)
            fileEnd += UInt64(bytes.count)
        }
        try file.sync()
        func entry(_ v: UInt64) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: UInt32(v / 512) >> (8 * $0)) } }
        try file.write(at: header.gdOffset * 512 + UInt64(t) * 4, entry(primary))
        directory[t] = UInt32(primary / 512)
        if let backup {
            try file.write(at: header.redundantGDOffset * 512 + UInt64(t) * 4, entry(backup))
            redundantDirectory![t] = UInt32(backup / 512)
        }
        tables[t] = [UInt32](repeating: 0, count: Int(header.grainTableEntries))
        metadata = Self.merged(metadata + [primary / 512..<fileEnd / 512])
    }

    /// [meta] Whether `range` shares a sector with the metadata.
    private func overlapsMetadata(_ range: Range<UInt64>) -> Bool {
        // The first metadata range ending after range's start decides.
        var low = 0, high = metadata.count
        while low < high {
            let mid = (low + high) / 2
            if metadata[mid].upperBound <= range.lowerBound { low = mid + 1 } else { high = mid }
        }
        return low < metadata.count && metadata[low].lowerBound < range.upperBound
    }

    private static func merged(_ ranges: [Range<UInt64>]) -> [Range<UInt64>] {
        var result: [Range<UInt64>] = []
        for r in ranges.sorted(by: { $0.lowerBound < $1.lowerBound }) where !r.isEmpty {
            if let last = result.last, r.lowerBound <= last.upperBound {
                result[result.count - 1] = last.lowerBound..<max(last.upperBound, r.upperBound)
            } else {
                result.append(r)
            }
        }
        return result
    }

    /// The first write of this open gives the disk a new CID.
    private func markContentChanged() throws {
        try meta.withLock {
            guard !contentChanged, let d = descriptorValue else { return }
            let updated = d.settingContentID(DiskImage.newContentID(replacing: d.contentID))
            var bytes = Array(updated.text.utf8)
            guard bytes.count < Int(header.descriptorSize) * 512 else { return }
            bytes += [UInt8](repeating: 0, count: Int(header.descriptorSize) * 512 - bytes.count)
            try file.write(at: header.descriptorOffset * 512, bytes)
            descriptorValue = updated
            contentChanged = true
        }
    }

    package func flush() throws {
        try file.sync()
    }

    // MARK: - Metadata for commit, info and check

    /// Every allocated grain: its number and byte offset in the file (zeroed-grain
    /// entries as offset 0).
    package func allocatedGrains() throws -> [(grain: UInt64, offset: UInt64)] {
        try meta.withLock {
            var result: [(UInt64, UInt64)] = []
            let entries = UInt64(header.grainTableEntries)
            let grains = (sectorCount + header.grainSize - 1) / header.grainSize
            for t in 0..<directory.count {
                guard let table = try table(t) else { continue }
                for (e, v) in table.enumerated() where v != 0 {
                    let g = UInt64(t) * entries + UInt64(e)
                    guard g < grains else { continue }
                    result.append((g, v == 1 && header.hasZeroedGrainEntries ? 0 : UInt64(v) * 512))
                }
            }
            return result
        }
    }

    /// Grain table `t` as stored, unchecked (nil when its directory entry is 0).
    func grainTable(_ t: Int) throws -> [UInt32]? { try storedTable(at: directories.primary[t]) }

    /// The redundant copy of grain table `t`, unchecked.
    func redundantGrainTable(_ t: Int) throws -> [UInt32]? { try storedTable(at: directories.redundant?[t] ?? 0) }

    private func storedTable(at sector: UInt32) throws -> [UInt32]? {
        guard sector != 0 else { return nil }
        let count = Int(header.grainTableEntries)
        let raw = try file.read(at: UInt64(sector) * 512, count: count * 4)
        return (0..<count).map { i in (0..<4).reduce(UInt32(0)) { $0 | UInt32(raw[i * 4 + $1]) << (8 * $1) } }
    }

    /// The file's size in bytes.
    func fileSize() throws -> UInt64 { try file.size() }

    /// The grain directory and its redundant copy (sector numbers of the tables).
    var directories: (primary: [UInt32], redundant: [UInt32]?) { meta.withLock { (directory, redundantDirectory) } }
}
