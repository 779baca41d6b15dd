import Foundation

/// A minimal bootable CD image, laid out as ISO 9660 and El Torito describe it: the
/// system area (blocks 0–15), a primary volume descriptor (16) with an empty root
/// directory, the boot record volume descriptor (17) pointing at the boot catalog,
/// the set terminator (18), the catalog (19: validation entry and a bootable
/// no-emulation initial entry), the path tables (20, 21), the root directory (22) and
/// the boot image (23…), loaded by the BIOS at 0000:7C00 and entered with DL = the
/// CD's drive number.
enum ElToritoImage {
    static let block = 2048

    static func build(bootImage: [UInt8], volumeID: String = "HVTEST") -> [UInt8] {
        let bootBlocks = (bootImage.count + block - 1) / block
        let totalBlocks = 23 + bootBlocks
        var iso = [UInt8](repeating: 0, count: totalBlocks * block)
        func put(_ bytes: [UInt8], at offset: Int) { iso.replaceSubrange(offset..<offset + bytes.count, with: bytes) }
        func le32(_ v: Int) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
        func be32(_ v: Int) -> [UInt8] { le32(v).reversed() }
        func both32(_ v: Int) -> [UInt8] { le32(v) + be32(v) }
        func both16(_ v: Int) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8), UInt8(v >> 8), UInt8(v & 0xFF)] }
        func text(_ s: String, _ width: Int) -> [UInt8] { Array((s + String(repeating: " ", count: width)).utf8.prefix(width)) }
        let rootBlock = 22
        func directoryRecord(name: UInt8) -> [UInt8] {
            var r = [UInt8](repeating: 0, count: 34)
            r[0] = 34
            r.replaceSubrange(2..<10, with: both32(rootBlock))
            r.replaceSubrange(10..<18, with: both32(block))
            r.replaceSubrange(18..<25, with: [126, 12, 5, 0, 0, 0, 0])   // 2026-12-05 00:00:00 UTC
            r[25] = 0x02                                                 // a directory
            r.replaceSubrange(28..<32, with: both16(1))
            r[32] = 1
            r[33] = name
            return r
        }

        // Primary volume descriptor.
        let pvd = 16 * block
        put([1] + Array("CD001".utf8) + [1], at: pvd)
        put(text("", 32) + text(volumeID, 32), at: pvd + 8)
        put(both32(totalBlocks), at: pvd + 80)
        put(both16(1) + both16(1) + both16(block), at: pvd + 120)
        put(both32(10), at: pvd + 132)                 // path table size
        put(le32(20), at: pvd + 140)
        put(be32(21), at: pvd + 148)
        put(directoryRecord(name: 0), at: pvd + 156)
        put(text("", 128 * 4 + 37 * 3), at: pvd + 190)  // volume set … bibliographic ids
        for date in 0..<4 { put(Array(String(repeating: "0", count: 16).utf8) + [0], at: pvd + 813 + 17 * date) }
        iso[pvd + 881] = 1

        // Boot record volume descriptor: the catalog's block at 47h.
        let brvd = 17 * block
        put([0] + Array("CD001".utf8) + [1] + Array("EL TORITO SPECIFICATION".utf8), at: brvd)
        put(le32(19), at: brvd + 0x47)

        put([255] + Array("CD001".utf8) + [1], at: 18 * block)

        // Boot catalog: validation entry (its 16 words sum to 0) and the initial entry.
        let catalog = 19 * block
        var validation = [UInt8](repeating: 0, count: 32)
        validation[0] = 1                              // header; platform 0 = 80x86
        validation.replaceSubrange(4..<12, with: Array("hvhost  ".utf8))
        validation[30] = 0x55
        validation[31] = 0xAA
        let sum = stride(from: 0, to: 32, by: 2).reduce(0) { ($0 + Int(validation[$1]) + Int(validation[$1 + 1]) << 8) & 0xFFFF }
        let check = (0x10000 - sum) & 0xFFFF
        validation[28] = UInt8(check & 0xFF)
        validation[29] = UInt8(check >> 8)
        put(validation, at: catalog)
        let sectors = (bootImage.count + 511) / 512   // in 512-byte virtual sectors
        put([0x88, 0, 0, 0, 0, 0, UInt8(sectors & 0xFF), UInt8(sectors >> 8)] + le32(23), at: catalog + 32)

        // Path tables (root only), little- and big-endian.
        put([1, 0] + le32(rootBlock) + [1, 0, 0, 0], at: 20 * block)
        put([1, 0] + be32(rootBlock) + [0, 1, 0, 0], at: 21 * block)
        put(directoryRecord(name: 0) + directoryRecord(name: 1), at: rootBlock * block)

        put(bootImage, at: 23 * block)
        return iso
    }
}
