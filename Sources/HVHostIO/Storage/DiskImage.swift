import Glibc

/// The on-disk formats hvhost opens and creates.
package enum DiskImageFormat: String, Sendable, CaseIterable {
    /// A raw image: sector N at byte N*512.
    case flat
    /// A VMDK hosted sparse extent ("KDMV"), with its descriptor embedded; with a
    /// parent it is a delta disk (a redo log).
    case sparse = "monolithicSparse"
    /// A VMDK text descriptor naming FLAT extents (`disk.vmdk` + `disk-flat.vmdk`).
    case monolithicFlat
}

/// A virtual disk backed by image files, as the storage module opens it.
package protocol ImageDisk: VirtualDisk {
    /// The file opened (the descriptor of a monolithicFlat disk).
    var path: String { get }
    var format: DiskImageFormat { get }
    /// The VMDK content id, changed on the first write after each open; nil for raw
    /// images.
    var contentID: UInt32? { get }
    /// The disk a delta reads unallocated grains from.
    var parent: (any ImageDisk)? { get }
    /// Every file this disk (not its parent) is made of.
    var files: [String] { get }
    /// Closes the files (and the parent's) and drops their locks. Only when no I/O is
    /// in flight; I/O after it fails.
    func close()
}

extension ImageDisk {
    /// This disk, its parent, its parent's parent…
    package var chain: [any ImageDisk] {
        var result: [any ImageDisk] = [self]
        while let p = result.last?.parent { result.append(p) }
        return result
    }
}

/// Opening and creating images, whatever their format.
package enum DiskImage {
    /// Opens `path` in the format its content shows (KDMV magic: sparse; a text
    /// descriptor: monolithicFlat; otherwise raw), locked for `owner`. A delta's parent
    /// is opened read-only (shared lock) and checked against the delta's parentCID.
    package static func open(path: String, writable: Bool, owner: String) throws -> any ImageDisk {
        switch try probe(path: path) {
        case .sparse: return try SparseExtent.open(path: path, writable: writable, owner: owner)
        case .monolithicFlat: return try VMDKDescriptorDisk(path: path, writable: writable, owner: owner)
        case .flat: return try FlatDisk(path: path, readOnly: !writable, owner: owner)
        }
    }

    /// The format of `path` from its first bytes (the file is not locked).
    package static func probe(path: String) throws -> DiskImageFormat {
        var st = stat()
        guard stat(path, &st) == 0 else { throw ImageFile.openError(path: path, errno: errno, operation: "stat") }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw DiskError.notRegularFile(path: path) }
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)
        guard fd >= 0 else { throw ImageFile.openError(path: path, errno: errno, operation: "open") }
        defer { Glibc.close(fd) }
        var head = [UInt8](repeating: 0, count: 512)
        let n = head.withUnsafeMutableBytes { pread(fd, $0.baseAddress!, 512, 0) }
        guard n >= 0 else { throw DiskError.io(path: path, operation: "read", errno: errno) }
        if n >= 4, head[0] == 0x4B, head[1] == 0x44, head[2] == 0x4D, head[3] == 0x56 { return .sparse }
        // A descriptor is a small text file starting with a comment or key; raw disks
        // could start with anything, so ask for the marker line VMware and QEMU write.
        let text = String(decoding: head[0..<max(n, 0)], as: UTF8.self)
        if st.st_size <= VMDKDescriptorDisk.sizeLimit, text.hasPrefix("# Disk DescriptorFile") { return .monolithicFlat }
        return .flat
    }

    /// Creates a `format` image of `sectors` sectors at `path` (refusing an existing
    /// file). monolithicFlat also creates `<name>-flat.vmdk` beside it.
    package static func create(path: String, format: DiskImageFormat, sectors: UInt64) throws {
        guard sectors > 0 else { throw DiskError.invalidImage(path: path, reason: "a disk needs at least one sector") }
        switch format {
        case .flat:
            let file = try ImageFile(path: path, writable: true, owner: "hvhost disk create", create: true)
            defer { file.close() }
            try file.truncate(to: sectors * 512)
            try file.sync()
        case .sparse:
            let disk = try SparseExtent.create(path: path, sectors: sectors, parent: nil, owner: "hvhost disk create")
            disk.close()
        case .monolithicFlat:
            try VMDKDescriptorDisk.create(path: path, sectors: sectors)
        }
    }

    /// A random content id (never the "no parent" value).
    static func newContentID(replacing old: UInt32?) -> UInt32 {
        while true {
            let cid = UInt32.random(in: 1..<VMDKDescriptor.noParent)
            if cid != old { return cid }
        }
    }

    /// `name` resolved against the directory of `path` (unless absolute).
    static func sibling(_ name: String, of path: String) -> String {
        if name.hasPrefix("/") { return name }
        guard let slash = path.lastIndex(of: "/") else { return name }
        return String(path[...slash]) + name
    }

    /// The last path component.
    static func baseName(_ path: String) -> String {
        path.lastIndex(of: "/").map { String(path[path.index(after: $0)...]) } ?? path
    }
}
