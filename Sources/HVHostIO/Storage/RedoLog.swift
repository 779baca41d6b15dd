import Glibc

/// Redo logs: VMDK sparse delta disks beside their base, named `<disk>.REDO` as ESX
/// 2.x names them (e.g. `web01.vmdk.REDO`). Each carries the mode that made it in its
/// disk database (`ddb.hvhost.redoMode`), so a power-on can tell a nonpersistent log
/// left by a crash (discarded) from an undoable or append log (kept).
package enum RedoLog {
    package static let suffix = ".REDO"
    static let modeKey = "ddb.hvhost.redoMode"

    /// The redo log path of the disk at `path`.
    package static func path(for disk: String) -> String { disk + suffix }

    /// The mode recorded in the redo log at `path`, or nil when it has none (a delta
    /// made by another tool).
    static func recordedMode(_ path: String) throws -> DiskMode? {
        let delta = try SparseExtent.open(path: path, writable: false, owner: "hvhost (reading a redo log)", openParent: false)
        defer { delta.close() }
        return delta.descriptor?.value(modeKey).flatMap(DiskMode.init(rawValue:))
    }

    /// Creates a redo log at `path` over the open `base` for `mode`; returns it open
    /// for writing, reading through to `base`.
    static func create(path: String, over base: any ImageDisk, mode: DiskMode, owner: String) throws -> SparseExtent {
        try SparseExtent.create(path: path, sectors: base.sectorCount, parent: base, owner: owner,
                                database: [(modeKey, mode.rawValue)])
    }

    /// Folds the redo log at `path` into its parent and deletes it: every allocated
    /// grain is copied onto the parent (opened for writing), the parent is synced,
    /// then the log is unlinked. Interrupted, it can simply run again: the log is
    /// deleted last, and its parentCID is not checked here since the parent is
    /// partly committed. Returns the number of grains copied.
    @discardableResult
    package static func commit(_ path: String, owner: String) throws -> Int {
        let delta = try SparseExtent.open(path: path, writable: false, owner: owner, openParent: false)
        defer { delta.close() }
        guard let hint = delta.descriptor?.parentFileNameHint else {
            throw DiskError.invalidImage(path: path, reason: "not a redo log (no parentFileNameHint): nothing to commit it into")
        }
        let parent = try DiskImage.open(path: DiskImage.sibling(hint, of: path), writable: true, owner: owner)
        defer { parent.close() }
        guard parent.sectorCount >= delta.sectorCount else {
            throw DiskError.invalidImage(path: path, reason: "its parent '\(parent.path)' has \(parent.sectorCount) sectors, fewer than the redo log's \(delta.sectorCount)")
        }
        let grainSectors = delta.header.grainSize
        var buffer = [UInt8](repeating: 0, count: Int(grainSectors) * 512)
        let grains = try delta.allocatedGrains()
        for (grain, _) in grains {
            let first = grain * grainSectors
            let count = Int(min(grainSectors, delta.sectorCount - first)) * 512
            try buffer.withUnsafeMutableBytes { b in
                let slice = UnsafeMutableRawBufferPointer(rebasing: b[0..<count])
                try delta.read(sector: first, into: slice)
                try parent.write(sector: first, from: UnsafeRawBufferPointer(slice))
            }
        }
        try parent.flush()
        guard unlink(path) == 0 else { throw DiskError.io(path: path, operation: "delete the committed redo log", errno: errno) }
        return grains.count
    }
}
