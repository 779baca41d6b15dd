/// A VMDK text descriptor (embedded in a sparse extent, or the small `.vmdk` file of a
/// monolithicFlat disk): header keys (`CID`, `parentCID`, `createType`,
/// `parentFileNameHint`, …), extent lines (`RW 2048 FLAT "disk-flat.vmdk" 0`) and the
/// disk database (`ddb.* = "…"`). Unknown lines are kept as written so a rewrite (a new
/// CID) changes only what it means to.
package struct VMDKDescriptor: Sendable {
    package struct Extent: Equatable, Sendable {
        /// RW, RDONLY or NOACCESS.
        package var access: String
        package var sectors: UInt64
        /// SPARSE, FLAT, VMFS, ZERO, …
        package var type: String
        package var fileName: String
        /// Sectors into the extent file (FLAT/VMFS).
        package var offset: UInt64
        /// 1-based line in the descriptor.
        package var line: Int
    }

    /// The parent CID of a disk without a parent.
    package static let noParent: UInt32 = 0xFFFF_FFFF

    private(set) var lines: [String]
    package private(set) var extents: [Extent] = []
    private var values: [String: (value: String, line: Int)] = [:]

    /// Parses `text`; errors name `path` and the line: "`path`:N: problem".
    package init(text: String, path: String) throws {
        lines = text.split(separator: "\n", omittingEmptySubsequences: false).map {
            $0.hasSuffix("\r") ? String($0.dropLast()) : String($0)
        }
        while lines.last?.isEmpty == true { lines.removeLast() }
        func fail(_ n: Int, _ why: String) -> DiskError {
            .invalidImage(path: path, reason: "descriptor line \(n): \(why)")
        }
        for (index, raw) in lines.enumerated() {
            let n = index + 1
            let line = raw.trimmingCharacters(in: " \t")
            if line.isEmpty || line.hasPrefix("#") { continue }
            if let eq = line.firstIndex(of: "=") {
                let key = line[..<eq].trimmingCharacters(in: " \t")
                var value = line[line.index(after: eq)...].trimmingCharacters(in: " \t")
                if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") { value = String(value.dropFirst().dropLast()) }
                guard !key.isEmpty else { throw fail(n, "\"\(raw)\" has no key before \"=\"") }
                values[key.lowercased()] = (value, n)
                continue
            }
            extents.append(try Self.extent(line, lineNumber: n, fail: fail))
        }
        guard values["version"] != nil || values["createtype"] != nil else {
            throw DiskError.invalidImage(path: path, reason: "not a VMDK descriptor (no version or createType line)")
        }
        for key in ["cid", "parentcid"] {
            if let (v, n) = values[key], UInt32(v, radix: 16) == nil {
                throw fail(n, "\(key == "cid" ? "CID" : "parentCID") \"\(v)\" is not a 32-bit hexadecimal number")
            }
        }
        guard !extents.isEmpty else {
            throw DiskError.invalidImage(path: path, reason: "the descriptor has no extent line (like RW 2048 FLAT \"disk-flat.vmdk\" 0)")
        }
    }

    private static func extent(_ line: String, lineNumber n: Int, fail: (Int, String) -> DiskError) throws -> Extent {
        // ACCESS SECTORS TYPE "FILE NAME" [OFFSET]; the name is quoted and may hold spaces.
        guard let open = line.firstIndex(of: "\""), let close = line[line.index(after: open)...].firstIndex(of: "\"") else {
            throw fail(n, "\"\(line)\" is neither key = value nor an extent (ACCESS SECTORS TYPE \"FILE\" [OFFSET])")
        }
        let head = line[..<open].split(separator: " ", omittingEmptySubsequences: true)
        let tail = line[line.index(after: close)...].split(separator: " ", omittingEmptySubsequences: true)
        guard head.count == 3 else { throw fail(n, "an extent needs ACCESS SECTORS TYPE before the file name") }
        guard ["RW", "RDONLY", "NOACCESS"].contains(head[0]) else {
            throw fail(n, "extent access \"\(head[0])\" is not RW, RDONLY or NOACCESS")
        }
        guard let sectors = UInt64(head[1]), sectors > 0 else { throw fail(n, "extent size \"\(head[1])\" is not a positive number of sectors") }
        guard tail.count <= 1, let offset = tail.first.map({ UInt64($0) }) ?? 0 else {
            throw fail(n, "extent offset \"\(tail.joined(separator: " "))\" is not a number of sectors")
        }
        let name = String(line[line.index(after: open)..<close])
        guard !name.isEmpty else { throw fail(n, "the extent has an empty file name") }
        return Extent(access: String(head[0]), sectors: sectors, type: String(head[2]), fileName: name, offset: offset, line: n)
    }

    package var contentID: UInt32? { values["cid"].flatMap { UInt32($0.value, radix: 16) } }
    package var parentContentID: UInt32 { values["parentcid"].flatMap { UInt32($0.value, radix: 16) } ?? Self.noParent }
    package var createType: String? { values["createtype"]?.value }
    package var parentFileNameHint: String? { values["parentfilenamehint"]?.value }
    /// The value of `key` (case-insensitive), e.g. "ddb.hvhost.redoMode".
    package func value(_ key: String) -> String? { values[key.lowercased()]?.value }
    package var capacity: UInt64 { extents.reduce(0) { $0 + $1.sectors } }

    /// The descriptor with `CID` set to `cid` (the line rewritten in place, or added).
    package func settingContentID(_ cid: UInt32) -> VMDKDescriptor {
        var copy = self
        let text = "CID=" + Self.hex(cid)
        if let n = values["cid"]?.line { copy.lines[n - 1] = text } else { copy.lines.insert(text, at: min(2, lines.count)) }
        copy.values["cid"] = (Self.hex(cid), values["cid"]?.line ?? min(3, lines.count + 1))
        return copy
    }

    package var text: String { lines.joined(separator: "\n") + "\n" }

    static func hex(_ v: UInt32) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: 8 - s.count) + s
    }

    /// The text of a new descriptor.
    package static func render(cid: UInt32, parentCID: UInt32, createType: String, parentFileNameHint: String?,
                               extents: [(sectors: UInt64, type: String, fileName: String, offset: UInt64?)],
                               database: [(String, String)]) -> String {
        var t = "# Disk DescriptorFile\nversion=1\nCID=\(hex(cid))\nparentCID=\(hex(parentCID))\ncreateType=\"\(createType)\"\n"
        if let parentFileNameHint { t += "parentFileNameHint=\"\(parentFileNameHint)\"\n" }
        t += "\n# Extent description\n"
        for e in extents {
            t += "RW \(e.sectors) \(e.type) \"\(e.fileName)\"" + (e.offset.map { " \($0)" } ?? "") + "\n"
        }
        t += "\n# The Disk Data Base\n#DDB\n\n"
        for (k, v) in database { t += "\(k) = \"\(v)\"\n" }
        return t
    }

    /// ddb.geometry.* for `sectors`, the way VMware and QEMU compute them (16 heads,
    /// 63 sectors per track, cylinders capped at 16383).
    static func geometry(sectors: UInt64) -> [(String, String)] {
        let cylinders = min(sectors / (16 * 63), 16383)
        return [("ddb.geometry.cylinders", "\(cylinders)"), ("ddb.geometry.heads", "16"), ("ddb.geometry.sectors", "63")]
    }
}

extension StringProtocol {
    fileprivate func trimmingCharacters(in set: String) -> String {
        var s = Substring(self)
        while let f = s.first, set.contains(f) { s = s.dropFirst() }
        while let l = s.last, set.contains(l) { s = s.dropLast() }
        return String(s)
    }
}
