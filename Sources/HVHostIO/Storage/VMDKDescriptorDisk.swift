import Glibc
import HVSupport

/// A VMDK disk described by a text descriptor file whose extents are FLAT (or VMFS)
/// files: monolithicFlat (`disk.vmdk` + `disk-flat.vmdk`), and also several flat
/// extents in a row (twoGbMaxExtentFlat). Sector N is found in the extent covering it.
/// The descriptor and every extent are locked; the first write of an open rewrites the
/// descriptor's CID line in place.
package final class VMDKDescriptorDisk: ImageDisk, @unchecked Sendable, CustomStringConvertible {
    /// Descriptors larger than this are not descriptors.
    static let sizeLimit = 64 * 1024

    package let path: String
    package let sectorSize = 512
    package let sectorCount: UInt64
    package let isReadOnly: Bool
    package var format: DiskImageFormat { .monolithicFlat }
    package var parent: (any ImageDisk)? { nil }
    package var files: [String] { [path] + extents.map(\.disk.path) }
    private let file: ImageFile
    /// Extents in order with their first sector.
    private let extents: [(first: UInt64, disk: FlatDisk)]
    private let meta = HostLock()
    /// [meta]
    private var descriptorValue: VMDKDescriptor
    private var contentChanged = false

    package var descriptor: VMDKDescriptor { meta.withLock { descriptorValue } }
    package var contentID: UInt32? { descriptor.contentID }

    package init(path: String, writable: Bool, owner: String) throws {
        let file = try ImageFile(path: path, writable: writable, owner: owner)
        var opened: [(UInt64, FlatDisk)] = []
        do {
            let size = try file.size()
            guard size <= UInt64(Self.sizeLimit) else {
                throw DiskError.invalidImage(path: path, reason: "\(size) bytes is too large for a VMDK descriptor")
            }
            // QEMU pads a rewritten descriptor with NULs: the text ends at the first one.
            let text = String(decoding: try file.read(at: 0, count: Int(size)).prefix { $0 != 0 }, as: UTF8.self)
            let descriptor = try VMDKDescriptor(text: text, path: path)
            if let hint = descriptor.parentFileNameHint {
                throw DiskError.invalidImage(path: path, reason: "delta descriptors (parentFileNameHint \"\(hint)\", createType \"\(descriptor.createType ?? "?")\") are not supported; redo logs here are monolithicSparse")
            }
            var first: UInt64 = 0
            for e in descriptor.extents {
                let at = "descriptor line \(e.line)"
                guard e.type == "FLAT" || e.type == "VMFS" else {
                    throw DiskError.invalidImage(path: path, reason: "\(at): extent type \(e.type) is not supported here (FLAT or VMFS; a sparse disk is one monolithicSparse file)")
                }
                guard e.access != "NOACCESS" else { throw DiskError.invalidImage(path: path, reason: "\(at): extent \"\(e.fileName)\" is NOACCESS") }
                let extentPath = DiskImage.sibling(e.fileName, of: path)
                let extentFile: ImageFile
                do {
                    extentFile = try ImageFile(path: extentPath, writable: writable && e.access == "RW", owner: owner)
                } catch let error as DiskError {
                    throw DiskError.invalidImage(path: path, reason: "\(at): extent \"\(e.fileName)\": \(error)")
                }
                let extentSize = try extentFile.size()
                let (end, overflow) = (e.offset &+ e.sectors).multipliedReportingOverflow(by: 512)
                guard !overflow, e.offset &+ e.sectors >= e.offset, end <= extentSize else {
                    extentFile.close()
                    throw DiskError.invalidImage(path: path, reason: "\(at): extent \"\(e.fileName)\" needs sectors \(e.offset)..<\(e.offset &+ e.sectors) but the file has \(extentSize / 512)")
                }
                opened.append((first, FlatDisk(file: extentFile, byteOffset: e.offset * 512, sectorCount: e.sectors)))
                first += e.sectors
            }
            self.descriptorValue = descriptor
            self.sectorCount = first
        } catch {
            for (_, d) in opened { d.close() }
            file.close()
            throw error
        }
        self.path = path
        self.file = file
        self.extents = opened
        self.isReadOnly = !writable || opened.contains { $0.1.isReadOnly }
    }

    /// Writes `path` (descriptor) and `<name>-flat.vmdk` of `sectors` sectors.
    static func create(path: String, sectors: UInt64) throws {
        let base = DiskImage.baseName(path)
        let stem = base.hasSuffix(".vmdk") ? String(base.dropLast(5)) : base
        let extentName = stem + "-flat.vmdk"
        let extentPath = DiskImage.sibling(extentName, of: path)
        let text = VMDKDescriptor.render(
            cid: DiskImage.newContentID(replacing: nil), parentCID: VMDKDescriptor.noParent,
            createType: "monolithicFlat", parentFileNameHint: nil,
            extents: [(sectors, "FLAT", extentName, 0)],
            database: [("ddb.virtualHWVersion", "4")] + VMDKDescriptor.geometry(sectors: sectors) + [("ddb.adapterType", "lsilogic")])
        let extent = try ImageFile(path: extentPath, writable: true, owner: "hvhost disk create", create: true)
        defer { extent.close() }
        do {
            let descriptor = try ImageFile(path: path, writable: true, owner: "hvhost disk create", create: true)
            defer { descriptor.close() }
            try extent.truncate(to: sectors * 512)
            try extent.sync()
            try descriptor.write(at: 0, Array(text.utf8))
            try descriptor.sync()
        } catch {
            unlink(extentPath)
            throw error
        }
    }

    package var description: String {
        "monolithicFlat disk '\(path)' (\(sectorCount) sectors in \(extents.count) extent\(extents.count == 1 ? "" : "s"))"
    }

    package func close() {
        for (_, d) in extents { d.close() }
        file.close()
    }

    /// Runs `body` for each extent piece of a transfer: (extent, its first sector, byte range in the buffer).
    private func split(sector: UInt64, length: Int, _ body: (FlatDisk, UInt64, Range<Int>) throws -> Void) throws {
        try checkTransfer(path: path, sector: sector, length: length, sectorSize: 512, capacity: sectorCount)
        var s = sector, at = 0
        while at < length {
            let (first, disk) = extents.last { $0.first <= s }!
            let n = Int(min(disk.sectorCount - (s - first), UInt64((length - at) / 512))) * 512
            try body(disk, s - first, at..<at + n)
            s += UInt64(n / 512)
            at += n
        }
    }

    package func read(sector: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws {
        try split(sector: sector, length: buffer.count) { disk, s, range in
            try disk.read(sector: s, into: UnsafeMutableRawBufferPointer(rebasing: buffer[range]))
        }
    }

    package func write(sector: UInt64, from buffer: UnsafeRawBufferPointer) throws {
        guard !isReadOnly else { throw DiskError.readOnly(path: path) }
        try markContentChanged()
        try split(sector: sector, length: buffer.count) { disk, s, range in
            try disk.write(sector: s, from: UnsafeRawBufferPointer(rebasing: buffer[range]))
        }
    }

    package func flush() throws {
        for (_, d) in extents { try d.flush() }
        try file.sync()
    }

    /// The first write of this open gives the disk a new CID. The text is rewritten in
    /// place in one write, padded with blank lines to at least the old length, so a
    /// crash at any point leaves a parseable descriptor (never a truncated one).
    private func markContentChanged() throws {
        try meta.withLock {
            guard !contentChanged else { return }
            let updated = descriptorValue.settingContentID(DiskImage.newContentID(replacing: descriptorValue.contentID))
            var bytes = Array(updated.text.utf8)
            let old = try file.size()
            if UInt64(bytes.count) < old { bytes += [UInt8](repeating: 0x0A, count: Int(old) - bytes.count) }
            try file.write(at: 0, bytes)
            descriptorValue = updated
            contentChanged = true
        }
    }
}
