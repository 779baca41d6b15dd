/// `hvhost disk check`: the metadata of an image and of its parent chain.
package enum DiskImageCheck {
    /// Every problem found in the image at `path` and its parents (empty: consistent).
    /// The image is opened read-only (a shared lock), so a disk a VM is writing is
    /// refused rather than checked while it changes.
    package static func problems(path: String) -> [String] {
        let disk: any ImageDisk
        do {
            disk = try DiskImage.open(path: path, writable: false, owner: "hvhost disk check")
        } catch {
            return ["\(error)"]
        }
        defer { disk.close() }
        var found: [String] = []
        for image in disk.chain {
            guard let sparse = image as? SparseExtent else { continue }
            do {
                found += try problems(of: sparse)
            } catch {
                found.append("\(error)")
            }
        }
        return found
    }

    /// Grain tables and grains inside the file, no two pieces of metadata or data
    /// sharing a sector, the descriptor's extent matching the header.
    private static func problems(of sparse: SparseExtent) throws -> [String] {
        let h = sparse.header
        let fileSectors = try sparse.fileSize() / 512
        var found: [String] = []
        func problem(_ s: String) { found.append("\(sparse.path): \(s)") }
        var used: [(start: UInt64, end: UInt64, what: String)] = [(0, 1, "the header")]
        if h.descriptorOffset != 0 {
            used.append((h.descriptorOffset, h.descriptorOffset + h.descriptorSize, "the descriptor"))
        }
        used.append((h.gdOffset, h.gdOffset + h.directorySectors, "the grain directory"))
        if h.hasRedundantTables {
            used.append((h.redundantGDOffset, h.redundantGDOffset + h.directorySectors, "the redundant grain directory"))
        }
        if let d = sparse.descriptor, d.capacity != h.capacity {
            problem("the descriptor's extents hold \(d.capacity) sectors but the header's capacity is \(h.capacity)")
        }
        let (primary, redundant) = sparse.directories
        for (name, directory, isRedundant) in [("grain table", primary, false), ("redundant grain table", redundant ?? [], true)] {
            for (t, sector) in directory.enumerated() where sector != 0 {
                let start = UInt64(sector), end = start + h.tableSectors
                guard end <= fileSectors else {
                    problem("\(name) \(t) at sector \(start) lies outside the file (\(fileSectors) sectors)")
                    continue
                }
                used.append((start, end, "\(name) \(t)"))
                guard let entries = isRedundant ? try sparse.redundantGrainTable(t) : try sparse.grainTable(t) else { continue }
                for (e, v) in entries.enumerated() where v > 1 || (v == 1 && !h.hasZeroedGrainEntries) {
                    let g = UInt64(t) * UInt64(h.grainTableEntries) + UInt64(e)
                    let gStart = UInt64(v), gEnd = gStart + h.grainSize
                    if g * h.grainSize >= h.capacity {
                        problem("\(name) \(t) entry \(e) allocates grain \(g), beyond the capacity")
                    } else if gEnd > fileSectors {
                        problem("\(name) \(t) entry \(e): grain \(g) at sector \(gStart) lies outside the file (\(fileSectors) sectors)")
                    } else if !isRedundant {
                        used.append((gStart, gEnd, "grain \(g)"))
                    } else if let p = try sparse.grainTable(t), p[e] != 0, p[e] != v {
                        problem("\(name) \(t) entry \(e) points at sector \(v) but the primary table at sector \(p[e])")
                    }
                }
            }
        }
        used.sort { $0.start < $1.start }
        for (a, b) in zip(used, used.dropFirst()) where b.start < a.end {
            problem("\(a.what) (sectors \(a.start)..<\(a.end)) overlaps \(b.what) (sectors \(b.start)..<\(b.end))")
        }
        return found
    }
}
