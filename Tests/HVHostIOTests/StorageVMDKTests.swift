import Foundation
import Glibc
import XCTest
@testable import HVHostIO

/// VMDK monolithicSparse and monolithicFlat images: our reads and writes, growth, and
/// interop with QEMU's implementation (qemu-img creates, checks and compares).
final class StorageVMDKTests: XCTestCase {
    typealias T = StorageImageTools
    private var dir = ""

    override func setUpWithError() throws { dir = try T.scratchDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    func testSparseRoundTripGrowsByGrainsAndReadsZerosElsewhere() throws {
        let path = dir + "/s.vmdk"
        try DiskImage.create(path: path, format: .sparse, sectors: 8192)
        let before = try FileManager.default.attributesOfItem(atPath: path)[.size] as! UInt64
        let disk = try DiskImage.open(path: path, writable: true, owner: "test")
        XCTAssertEqual(disk.format, .sparse)
        XCTAssertEqual(disk.sectorCount, 8192)
        // Partial grain at the start, a write across a grain boundary, the last sector.
        let a = T.pattern(1, count: 3 * 512), b = T.pattern(2, count: 200 * 512), c = T.pattern(3, count: 512)
        try T.write(disk, sector: 5, a)
        try T.write(disk, sector: 100, b)
        try T.write(disk, sector: 8191, c)
        XCTAssertEqual(try T.read(disk, sector: 5, sectors: 3), a)
        XCTAssertEqual(try T.read(disk, sector: 100, sectors: 200), b)
        XCTAssertEqual(try T.read(disk, sector: 8191, sectors: 1), c)
        XCTAssertEqual(try T.read(disk, sector: 0, sectors: 5), [UInt8](repeating: 0, count: 5 * 512))
        XCTAssertEqual(try T.read(disk, sector: 4000, sectors: 64), [UInt8](repeating: 0, count: 64 * 512))
        // Overwrite inside an allocated grain does not grow the file.
        let grown = try FileManager.default.attributesOfItem(atPath: path)[.size] as! UInt64
        XCTAssertEqual(grown - before, 4 * 128 * 512, "grains 0, 1, 2 (sectors 5, 100..<300) and 63 allocated")
        try T.write(disk, sector: 6, T.pattern(4, count: 512))
        XCTAssertEqual(try FileManager.default.attributesOfItem(atPath: path)[.size] as! UInt64, grown)
        XCTAssertThrowsError(try T.write(disk, sector: 8192, c)) { XCTAssertEqual($0 as? DiskError, .outOfRange(path: path, sector: 8192, sectors: 1, capacity: 8192)) }
        try disk.flush()
        disk.close()

        let again = try DiskImage.open(path: path, writable: false, owner: "test")
        defer { again.close() }
        XCTAssertEqual(try T.read(again, sector: 100, sectors: 200), b)
        XCTAssertEqual(Array(try T.read(again, sector: 5, sectors: 3)[512..<1024]), T.pattern(4, count: 512))
        XCTAssertEqual(try (again as! SparseExtent).allocatedGrains().map(\.grain), [0, 1, 2, 63])
        XCTAssertEqual(DiskImageCheck.problems(path: path), [])
    }

    /// Four I/O threads writing interleaved sectors of the same new grains of a redo
    /// log: each grain is allocated once and no write is lost to a concurrent allocation.
    func testConcurrentWritersAllocateEachGrainOnce() throws {
        let base = dir + "/cbase.vmdk"
        try DiskImage.create(path: base, format: .sparse, sectors: 4096)
        let b = try DiskImage.open(path: base, writable: true, owner: "t")
        try T.write(b, sector: 0, [UInt8](repeating: 0xB0, count: 4096 * 512))
        b.close()
        let parent = try DiskImage.open(path: base, writable: false, owner: "t")
        let redo = try RedoLog.create(path: base + ".REDO", over: parent, mode: .undoable, owner: "t")
        let queue = DiskIOQueue(name: "sparse-io", threads: 4)
        for sector in stride(from: 0, to: 1024, by: 2) {   // every other sector of grains 0..<8
            queue.submit {
                let data = [UInt8](repeating: UInt8(truncatingIfNeeded: sector / 2), count: 512)
                try! data.withUnsafeBytes { try redo.write(sector: UInt64(sector), from: $0) }
            }
        }
        queue.drain()
        queue.shutdown()
        XCTAssertEqual(try redo.allocatedGrains().map(\.grain), Array(0..<8))
        let all = try T.read(redo, sector: 0, sectors: 1024)
        for sector in 0..<1024 {
            let expected: UInt8 = sector % 2 == 0 ? UInt8(truncatingIfNeeded: sector / 2) : 0xB0
            XCTAssertTrue(all[sector * 512..<(sector + 1) * 512].allSatisfy { $0 == expected }, "sector \(sector)")
        }
        redo.close()
        XCTAssertEqual(DiskImageCheck.problems(path: base + ".REDO"), [])
    }

    /// The first write of an open gives the image a new CID; reads do not.
    func testFirstWriteChangesTheCID() throws {
        let path = dir + "/cid.vmdk"
        try DiskImage.create(path: path, format: .sparse, sectors: 1024)
        let r = try DiskImage.open(path: path, writable: false, owner: "t")
        let original = try XCTUnwrap(r.contentID)
        r.close()
        let w = try DiskImage.open(path: path, writable: true, owner: "t")
        XCTAssertEqual(w.contentID, original)
        try T.write(w, sector: 0, T.pattern(9, count: 512))
        let changed = try XCTUnwrap(w.contentID)
        XCTAssertNotEqual(changed, original)
        try T.write(w, sector: 1, T.pattern(9, count: 512))
        XCTAssertEqual(w.contentID, changed, "once per open")
        w.close()
        let again = try DiskImage.open(path: path, writable: false, owner: "t")
        XCTAssertEqual(again.contentID, changed)
        again.close()
    }

    /// qemu-img's monolithicSparse and monolithicFlat images: we read what QEMU wrote,
    /// write into them, and qemu-img check and compare accept the result.
    func testQEMUCreatedImagesAreReadAndWrittenAndQEMUAgrees() throws {
        _ = try T.requireQEMUImg()
        for subformat in ["monolithicSparse", "monolithicFlat"] {
            let path = dir + "/q-\(subformat).vmdk"
            let reference = dir + "/q-\(subformat).raw"
            XCTAssertEqual(try T.qemuImg(["create", "-q", "-f", "vmdk", "-o", "subformat=\(subformat)", path, "4M"]).status, 0)
            // QEMU writes a pattern through its own driver (qemu-io is part of qemu-utils).
            let qemuIO = "/usr/bin/qemu-io"
            if FileManager.default.isExecutableFile(atPath: qemuIO) {
                let p = Process()
                p.executableURL = URL(fileURLWithPath: qemuIO)
                p.arguments = ["-f", "vmdk", "-c", "write -P 0x5a 65536 131072", path]
                p.standardOutput = FileHandle.nullDevice
                try p.run(); p.waitUntilExit()
                XCTAssertEqual(p.terminationStatus, 0)
            }
            let disk = try DiskImage.open(path: path, writable: true, owner: "test")
            XCTAssertEqual(disk.format, subformat == "monolithicFlat" ? .monolithicFlat : .sparse)
            XCTAssertEqual(disk.sectorCount, 8192)
            if FileManager.default.isExecutableFile(atPath: qemuIO) {
                XCTAssertEqual(try T.read(disk, sector: 128, sectors: 256), [UInt8](repeating: 0x5A, count: 256 * 512), subformat)
            }
            try T.write(disk, sector: 7, T.pattern(10, count: 9 * 512))
            try T.write(disk, sector: 300, T.pattern(11, count: 300 * 512))   // over QEMU's data and past it
            try T.write(disk, sector: 8000, T.pattern(12, count: 192 * 512))
            try disk.flush()
            disk.close()

            let check = try T.qemuImg(["check", path])
            XCTAssertEqual(check.status, 0, "\(subformat): \(check.output)")
            // Our view, as raw, must equal QEMU's view.
            let ours = try DiskImage.open(path: path, writable: false, owner: "test")
            let all = try T.read(ours, sector: 0, sectors: 8192)
            ours.close()
            FileManager.default.createFile(atPath: reference, contents: Data(all))
            let compare = try T.qemuImg(["compare", "-f", "vmdk", "-F", "raw", path, reference])
            XCTAssertEqual(compare.status, 0, "\(subformat): \(compare.output)")
            XCTAssertEqual(Array(all[7 * 512..<16 * 512]), T.pattern(10, count: 9 * 512))
            XCTAssertEqual(DiskImageCheck.problems(path: path), [], subformat)
        }
    }

    /// Images hvhost creates are valid to qemu-img, and what we write is what QEMU reads.
    func testImagesWeCreateAndWritePassQEMUCheckAndCompare() throws {
        _ = try T.requireQEMUImg()
        for format in [DiskImageFormat.sparse, .monolithicFlat] {
            let path = dir + "/ours-\(format.rawValue).vmdk"
            try DiskImage.create(path: path, format: format, sectors: 20480)   // 10 MiB: a partial last grain table
            let disk = try DiskImage.open(path: path, writable: true, owner: "t")
            var expected = [UInt8](repeating: 0, count: 20480 * 512)
            for (i, (sector, count)) in [(0, 1), (127, 2), (1000, 130), (20000, 480), (65536 / 512, 64)].enumerated() {
                let p = T.pattern(UInt64(100 + i), count: count * 512)
                try T.write(disk, sector: UInt64(sector), p)
                expected.replaceSubrange(sector * 512..<(sector + count) * 512, with: p)
            }
            disk.close()
            let reference = dir + "/expected.raw"
            FileManager.default.createFile(atPath: reference, contents: Data(expected))
            let check = try T.qemuImg(["check", path])
            XCTAssertEqual(check.status, 0, "\(format): \(check.output)")
            let compare = try T.qemuImg(["compare", "-f", "vmdk", "-F", "raw", path, reference])
            XCTAssertEqual(compare.status, 0, "\(format): \(compare.output)")
        }
    }

    /// A redo log over a VMDK base: reads fall through for unallocated grains, and the
    /// chain's content equals what qemu-img makes of the delta with its backing file.
    func testRedoLogChainEqualsQEMUsViewOfTheChain() throws {
        _ = try T.requireQEMUImg()
        let base = dir + "/base.vmdk"
        try DiskImage.create(path: base, format: .sparse, sectors: 4096)
        let b = try DiskImage.open(path: base, writable: true, owner: "t")
        try T.write(b, sector: 0, T.pattern(20, count: 4096 * 512))
        b.close()

        let parent = try DiskImage.open(path: base, writable: false, owner: "t")
        let redo = try RedoLog.create(path: dir + "/base.vmdk.REDO", over: parent, mode: .undoable, owner: "t")
        var expected = T.pattern(20, count: 4096 * 512)
        for (i, (sector, count)) in [(3, 1), (130, 140), (4095, 1)].enumerated() {
            let p = T.pattern(UInt64(30 + i), count: count * 512)
            try T.write(redo, sector: UInt64(sector), p)
            expected.replaceSubrange(sector * 512..<(sector + count) * 512, with: p)
        }
        XCTAssertEqual(try T.read(redo, sector: 0, sectors: 4096), expected)
        redo.close()
        XCTAssertEqual(try T.read(try DiskImage.open(path: base, writable: false, owner: "t"), sector: 3, sectors: 1),
                       Array(T.pattern(20, count: 4 * 512)[1536...]), "the base is untouched")

        XCTAssertEqual(try T.qemuImg(["check", dir + "/base.vmdk.REDO"]).status, 0)
        let converted = dir + "/chain.raw"
        let convert = try T.qemuImg(["convert", "-f", "vmdk", "-O", "raw", dir + "/base.vmdk.REDO", converted])
        XCTAssertEqual(convert.status, 0, convert.output)
        XCTAssertEqual(T.fileBytes(converted), expected, "qemu-img's view of the chain")
        XCTAssertEqual(DiskImageCheck.problems(path: dir + "/base.vmdk.REDO"), [])
    }

    /// A delta made by qemu-img over our base opens as a chain here.
    func testQEMUDeltaOverOurBaseOpensAsAChain() throws {
        _ = try T.requireQEMUImg()
        let base = dir + "/b.vmdk"
        try DiskImage.create(path: base, format: .sparse, sectors: 2048)
        let b = try DiskImage.open(path: base, writable: true, owner: "t")
        try T.write(b, sector: 0, T.pattern(40, count: 2048 * 512))
        b.close()
        let delta = dir + "/d.vmdk"
        let made = try T.qemuImg(["create", "-q", "-f", "vmdk", "-b", "b.vmdk", "-F", "vmdk", delta])
        XCTAssertEqual(made.status, 0, made.output)
        let chain = try DiskImage.open(path: delta, writable: true, owner: "t")
        XCTAssertEqual(chain.chain.map(\.path), [delta, base])
        XCTAssertEqual(try T.read(chain, sector: 0, sectors: 2048), T.pattern(40, count: 2048 * 512))
        chain.close()
    }

    /// A parent that changed after its redo log was made is refused (CID chain), naming both.
    func testRedoLogOverAChangedParentIsRefused() throws {
        let base = dir + "/p.vmdk"
        try DiskImage.create(path: base, format: .sparse, sectors: 1024)
        let parent = try DiskImage.open(path: base, writable: false, owner: "t")
        try RedoLog.create(path: base + ".REDO", over: parent, mode: .append, owner: "t").close()
        let w = try DiskImage.open(path: base, writable: true, owner: "t")
        try T.write(w, sector: 0, T.pattern(1, count: 512))
        w.close()
        XCTAssertThrowsError(try DiskImage.open(path: base + ".REDO", writable: false, owner: "t")) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains(base + ".REDO") && text.contains(base) && text.contains("parent changed"), text)
        }
        let problems = DiskImageCheck.problems(path: base + ".REDO")
        XCTAssertEqual(problems.count, 1)
        XCTAssertTrue(problems.first?.contains("CID") == true, "\(problems)")
    }

    /// `check` finds a grain table entry pointing outside the file and two grains sharing sectors.
    func testCheckFindsEntriesOutsideTheFileAndOverlaps() throws {
        let path = dir + "/bad.vmdk"
        try DiskImage.create(path: path, format: .sparse, sectors: 4096)
        let d = try DiskImage.open(path: path, writable: true, owner: "t") as! SparseExtent
        try T.write(d, sector: 0, T.pattern(5, count: 256 * 512))   // grains 0 and 1
        let table = UInt64(d.directories.primary[0]) * 512
        let grain0 = try XCTUnwrap(d.grainTable(0)?[0])
        d.close()
        let f = open(path, O_WRONLY)
        var entries: [UInt32] = [grain0, 0x7FFF_0000, grain0 + 64]   // grain 1 beyond EOF; grain 2 overlapping grain 0
        XCTAssertEqual(pwrite(f, &entries, 12, off_t(table)), 12)
        close(f)
        let problems = DiskImageCheck.problems(path: path)
        XCTAssertEqual(problems.count, 3, "\(problems)")
        XCTAssertTrue(problems.contains { $0.contains("redundant grain table 0 entry 1 points at sector 256 but the primary table at sector \(0x7FFF_0000)") }, "\(problems)")
        XCTAssertTrue(problems.contains { $0.contains("grain 1 at sector \(0x7FFF_0000) lies outside the file") }, "\(problems)")
        XCTAssertTrue(problems.contains { $0.contains("grain 0") && $0.contains("overlaps grain 2") }, "\(problems)")
    }

    /// A hostile grain table entry pointing at the image's own metadata (here the grain
    /// directory) is refused on use: a guest write can never overwrite the metadata.
    func testGrainEntryPointingIntoMetadataIsRefused() throws {
        let path = dir + "/hostile.vmdk"
        try DiskImage.create(path: path, format: .sparse, sectors: 4096)
        let d = try DiskImage.open(path: path, writable: true, owner: "t") as! SparseExtent
        try T.write(d, sector: 3000, T.pattern(2, count: 512))   // the file now reaches past the metadata
        let table = UInt64(d.directories.primary[0]) * 512
        let gd = d.header.gdOffset
        let descriptorEnd = Int(d.header.descriptorOffset + d.header.descriptorSize) * 512
        d.close()
        let f = open(path, O_WRONLY)
        var entry = UInt32(gd)
        XCTAssertEqual(pwrite(f, &entry, 4, off_t(table)), 4)
        close(f)
        let before = T.fileBytes(path)
        let disk = try DiskImage.open(path: path, writable: true, owner: "t")
        XCTAssertThrowsError(try T.write(disk, sector: 0, T.pattern(1, count: 512))) { error in
            XCTAssertEqual("\(error)", "virtual disk '\(path)': grain table 0 entry 0 points at sector \(gd), inside the image's metadata; `hvhost disk check` lists every problem")
        }
        XCTAssertThrowsError(try T.read(disk, sector: 0, sectors: 1))
        disk.close()
        let after = T.fileBytes(path)
        XCTAssertTrue(after[descriptorEnd...] == before[descriptorEnd...] && after[0..<512] == before[0..<512],
                      "nothing but the descriptor's CID changed")
        XCTAssertFalse(DiskImageCheck.problems(path: path).isEmpty)
    }

    /// A broken descriptor names the file and the line.
    func testDescriptorErrorsNameFileAndLine() throws {
        let path = dir + "/broken.vmdk"
        try "# Disk DescriptorFile\nversion=1\nCID=zz\ncreateType=\"monolithicFlat\"\nRW 100 FLAT \"x-flat.vmdk\" 0\n"
            .write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try DiskImage.open(path: path, writable: false, owner: "t")) { error in
            XCTAssertEqual("\(error)", "virtual disk '\(path)': descriptor line 3: CID \"zz\" is not a 32-bit hexadecimal number")
        }
        try "# Disk DescriptorFile\nversion=1\nCID=12345678\ncreateType=\"monolithicFlat\"\nRW lots FLAT \"x-flat.vmdk\" 0\n"
            .write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try DiskImage.open(path: path, writable: false, owner: "t")) { error in
            XCTAssertEqual("\(error)", "virtual disk '\(path)': descriptor line 5: extent size \"lots\" is not a positive number of sectors")
        }
        try "# Disk DescriptorFile\nversion=1\nCID=12345678\ncreateType=\"monolithicFlat\"\n\nRW 100 FLAT \"x-flat.vmdk\" 0\n"
            .write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try DiskImage.open(path: path, writable: false, owner: "t")) { error in
            XCTAssertEqual("\(error)", "virtual disk '\(path)': descriptor line 6: extent \"x-flat.vmdk\": virtual disk '\(dir)/x-flat.vmdk': no such file")
        }
        FileManager.default.createFile(atPath: dir + "/x-flat.vmdk", contents: Data(count: 50 * 512))
        XCTAssertThrowsError(try DiskImage.open(path: path, writable: false, owner: "t")) { error in
            XCTAssertEqual("\(error)", "virtual disk '\(path)': descriptor line 6: extent \"x-flat.vmdk\" needs sectors 0..<100 but the file has 50")
        }
    }

    /// A damaged sparse header is refused with what is wrong, never read as garbage.
    func testBadSparseHeadersAreRefused() throws {
        let path = dir + "/h.vmdk"
        try DiskImage.create(path: path, format: .sparse, sectors: 1024)
        var header = try VMDKSparseHeader(bytes: Array(T.fileBytes(path)[0..<512]), fail: { DiskError.invalidImage(path: path, reason: $0) })
        for (mutate, reason) in [({ (h: inout VMDKSparseHeader) in h.grainSize = 100 }, "grain size 100 sectors is not a power of two"),
                                 ({ $0.flags |= VMDKSparseHeader.flagCompressed }, "compressed grains"),
                                 ({ $0.gdOffset = 1 << 30 }, "the grain directory (sector 1073741824")] {
            var h = header
            mutate(&h)
            let f = open(path, O_WRONLY)
            XCTAssertEqual(h.bytes.withUnsafeBytes { pwrite(f, $0.baseAddress, 512, 0) }, 512)
            close(f)
            XCTAssertThrowsError(try DiskImage.open(path: path, writable: false, owner: "t")) { error in
                XCTAssertTrue("\(error)".contains(reason), "\(error)")
            }
        }
        header.capacity = 0
        XCTAssertThrowsError(try VMDKSparseHeader(bytes: header.bytes, fail: { DiskError.invalidImage(path: path, reason: $0) }))
    }
}
