import Foundation
@testable import HVHostIO
@testable import HVSupport

/// An in-memory disk whose failures, flushes and discards the tests control and count.
/// Sectors never written read as zeros; capacity may be far larger than what is stored.
final class MemoryDisk: VirtualDisk, @unchecked Sendable {
    let sectorSize = 512
    let sectorCount: UInt64
    let isReadOnly: Bool
    let supportsDiscard: Bool
    private let lock = HostLock()
    // [lock]
    private var sectors: [UInt64: [UInt8]] = [:]
    var failReads = false
    var failWrites = false
    var failFlush = false
    private(set) var flushes = 0
    private(set) var discards: [(sector: UInt64, count: UInt64)] = []

    init(sectors: UInt64, readOnly: Bool = false, discard: Bool = true) {
        sectorCount = sectors
        isReadOnly = readOnly
        supportsDiscard = discard
    }

    private func check(_ sector: UInt64, _ length: Int) throws {
        let n = UInt64(length / sectorSize)
        guard sector <= sectorCount, n <= sectorCount - sector else {
            throw DiskError.outOfRange(path: "mem", sector: sector, sectors: n, capacity: sectorCount)
        }
    }

    func read(sector: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws {
        try check(sector, buffer.count)
        if lock.withLock({ failReads }) { throw DiskError.io(path: "mem", operation: "read", errno: EIO) }
        for i in 0..<buffer.count / sectorSize {
            let data = lock.withLock { sectors[sector + UInt64(i)] } ?? [UInt8](repeating: 0, count: sectorSize)
            UnsafeMutableRawBufferPointer(rebasing: buffer[i * sectorSize..<(i + 1) * sectorSize]).copyBytes(from: data)
        }
    }

    func write(sector: UInt64, from buffer: UnsafeRawBufferPointer) throws {
        guard !isReadOnly else { throw DiskError.readOnly(path: "mem") }
        try check(sector, buffer.count)
        if lock.withLock({ failWrites }) { throw DiskError.io(path: "mem", operation: "write", errno: EIO) }
        lock.withLock {
            for i in 0..<buffer.count / sectorSize {
                sectors[sector + UInt64(i)] = Array(buffer[i * sectorSize..<(i + 1) * sectorSize])
            }
        }
    }

    func flush() throws {
        if lock.withLock({ failFlush }) { throw DiskError.io(path: "mem", operation: "flush", errno: EIO) }
        lock.withLock { flushes += 1 }
    }

    func discard(sector: UInt64, count: UInt64) throws {
        try check(sector, Int(count) * sectorSize)
        lock.withLock {
            discards.append((sector, count))
            for s in sector..<sector + count { sectors[s] = nil }
        }
    }

    func bytes(sector: UInt64, count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count * sectorSize)
        out.withUnsafeMutableBytes { try! read(sector: sector, into: $0) }
        return out
    }

    func fill(sector: UInt64, with bytes: [UInt8]) {
        bytes.withUnsafeBytes { try! write(sector: sector, from: $0) }
    }
}

/// An initiator buffer in host memory.
final class TestBuffer: SCSIDataBuffer, @unchecked Sendable {
    var bytes: [UInt8]
    init(_ bytes: [UInt8]) { self.bytes = bytes }
    convenience init(count: Int) { self.init([UInt8](repeating: 0xEE, count: count)) }
    var count: Int { bytes.count }
    func store(_ data: UnsafeRawBufferPointer, at offset: Int) throws {
        bytes.replaceSubrange(offset..<offset + data.count, with: data)
    }
    func load(into data: UnsafeMutableRawBufferPointer, at offset: Int) throws {
        data.copyBytes(from: bytes[offset..<offset + data.count])
    }
}

/// Big-endian helpers for building CDBs and parameter lists.
func be16(_ v: Int) -> [UInt8] { [UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }
func be32(_ v: UInt64) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * (3 - $0))) } }
func be64(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * (7 - $0))) } }
