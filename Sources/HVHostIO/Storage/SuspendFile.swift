import Glibc
import HVSupport
import HVMemory

/// The suspend file of one VM: its configuration, memory, vCPUs, chipset, PCI functions
/// and plugin devices, written by `suspend` and read back by `resume`. Layout (format
/// version 1, every integer little endian; documented for operators in README.md):
///
///     header    "HVSUSPND" (8 bytes), u32 format version (1), u32 flags (0)
///     section*  u32 name length, name (UTF-8), u32 section version, u64 payload length, payload
///     trailer   u32 CRC-32 (IEEE 802.3, zlib's crc32) of every byte before it
///
/// Sections, in this order: "config", "machine", "memory", "vcpu.<n>" per vCPU,
/// "chipset", "balloon", "pci", "device:<prefix>" per plugin device (its version is the model's
/// state version), "end". A reader refuses a newer format or section version, an
/// unknown section, a bad checksum and a file cut short.
package enum SuspendFile {
    package static let magic = Array("HVSUSPND".utf8)
    package static let formatVersion: UInt32 = 1
    /// The largest non-memory section a reader accepts.
    package static let sectionLimit = 64 << 20
}

/// Why a suspend file cannot be written or resumed. The message names the file.
package struct SuspendError: Error, CustomStringConvertible {
    package let message: String
    package init(_ message: String) { self.message = message }
    package var description: String { message }
}

/// CRC-32 as zlib computes it (reflected polynomial 0xEDB88320).
package struct CRC32 {
    private static let table: [UInt32] = (0..<256).map { n -> UInt32 in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    private(set) package var value: UInt32 = 0

    package init() {}

    package mutating func update(_ bytes: UnsafeRawBufferPointer) {
        var c = ~value
        Self.table.withUnsafeBufferPointer { t in
            for b in bytes { c = t[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        }
        value = ~c
    }
}

/// Writes a suspend file to `<path>.tmp` and renames it into place on `finish`, so a
/// failed suspend never leaves a half-written file under the real name.
package final class SuspendFileWriter {
    package let path: String
    private let temporary: String
    private var fd: Int32
    private var crc = CRC32()
    private var buffer: [UInt8] = []

    package init(path: String) throws {
        self.path = path
        temporary = path + ".tmp"
        fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SuspendError("cannot create \(temporary): \(String(cString: strerror(errno)))") }
        buffer.reserveCapacity(1 << 20)
        var header = StateEncoder()
        header.u32(SuspendFile.formatVersion)
        header.u32(0)
        try write(SuspendFile.magic)
        try write(header.bytes)
    }

    deinit {
        if fd >= 0 {
            close(fd)
            unlink(temporary)
        }
    }

    package func write(_ bytes: UnsafeRawBufferPointer) throws {
        crc.update(bytes)
        buffer.append(contentsOf: bytes)
        if buffer.count >= 1 << 20 { try flush() }
    }

    package func write(_ bytes: [UInt8]) throws { try bytes.withUnsafeBytes { try write($0) } }

    private func flush() throws {
        try buffer.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = Glibc.write(fd, raw.baseAddress! + offset, raw.count - offset)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { throw SuspendError("cannot write \(temporary): \(String(cString: strerror(errno)))") }
                offset += n
            }
        }
        buffer.removeAll(keepingCapacity: true)
    }

    /// The header of a section whose payload (`length` bytes) follows through `write`.
    package func beginSection(_ name: String, version: UInt32, length: UInt64) throws {
        var e = StateEncoder()
        e.string(name)
        e.u32(version)
        e.u64(length)
        try write(e.bytes)
    }

    package func section(_ name: String, version: UInt32, _ payload: [UInt8]) throws {
        try beginSection(name, version: version, length: UInt64(payload.count))
        try write(payload)
    }

    /// Writes the end section and the checksum, syncs and renames the file into place.
    package func finish() throws {
        try section("end", version: 1, [])
        var trailer = StateEncoder()
        trailer.u32(crc.value)
        buffer.append(contentsOf: trailer.bytes)
        try flush()
        guard fsync(fd) == 0 else { throw SuspendError("cannot sync \(temporary): \(String(cString: strerror(errno)))") }
        close(fd)
        fd = -1
        guard rename(temporary, path) == 0 else {
            let e = errno
            unlink(temporary)
            throw SuspendError("cannot rename \(temporary) to \(path): \(String(cString: strerror(e)))")
        }
    }
}

/// A suspend file, checked and parsed. Small sections are held in memory; the memory
/// section stays in the file and is copied into guest RAM by `restoreMemory(into:)`.
package final class SuspendImage {
    package let path: String
    private let fd: Int32
    private(set) package var sections: [(name: String, version: UInt32, payload: [UInt8])] = []
    /// Offset and length of the memory section's payload.
    private(set) var memoryPayload: (offset: UInt64, length: UInt64)?

    /// Opens `path` and verifies magic, version and checksum before parsing anything.
    package init(path: String) throws {
        self.path = path
        fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SuspendError("cannot open suspend file \(path): \(String(cString: strerror(errno)))") }
        do { try parse() } catch {
            close(fd)
            throw error
        }
    }

    deinit { close(fd) }

    private func fail(_ why: String) -> SuspendError { SuspendError("\(path): \(why)") }

    private func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws {
        var done = 0
        while done < buffer.count {
            let n = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw fail(n == 0 ? "the file is cut short (not a complete suspend file)" : String(cString: strerror(errno))) }
            done += n
        }
    }

    private func bytes(at offset: UInt64, count: Int) throws -> [UInt8] {
        var b = [UInt8](repeating: 0, count: count)
        try b.withUnsafeMutableBytes { try read(at: offset, into: $0) }
        return b
    }

    private func parse() throws {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw fail(String(cString: strerror(errno))) }
        let size = UInt64(st.st_size)
        guard size >= 20 else { throw fail("\(size) bytes is too short for a suspend file") }
        let header = try bytes(at: 0, count: 16)
        guard Array(header[0..<8]) == SuspendFile.magic else { throw fail("not a suspend file (no HVSUSPND header)") }
        var h = StateDecoder(Array(header[8...]), context: path)
        let version = try h.u32()
        guard version == SuspendFile.formatVersion else {
            throw fail("suspend format version \(version); this hvhost reads version \(SuspendFile.formatVersion)")
        }
        try checkCRC(size: size)

        var offset: UInt64 = 16
        let end = size - 4
        while true {
            guard offset + 4 <= end else { throw fail("no end section") }
            var n = StateDecoder(try bytes(at: offset, count: 4), context: path)
            let nameLength = UInt64(try n.u32())
            guard nameLength <= 64, offset + 4 + nameLength + 12 <= end else { throw fail("a section header at offset \(offset) is corrupt") }
            var d = StateDecoder(try bytes(at: offset, count: Int(4 + nameLength + 12)), context: path)
            let name = try d.string(limit: 64)
            let sectionVersion = try d.u32(), length = try d.u64()
            let payload = offset + 4 + nameLength + 12
            guard length <= end - payload else { throw fail("section '\(name)' runs past the end of the file") }
            if name == "end" {
                guard payload + length == end else { throw fail("data after the end section") }
                return
            }
            if name == "memory" {
                guard sectionVersion == 1 else { throw fail("section 'memory' version \(sectionVersion); this hvhost reads version 1") }
                memoryPayload = (payload, length)
            } else {
                guard length <= UInt64(SuspendFile.sectionLimit) else { throw fail("section '\(name)' is \(length) bytes") }
                sections.append((name, sectionVersion, try bytes(at: payload, count: Int(length))))
            }
            offset = payload + length
        }
    }

    private func checkCRC(size: UInt64) throws {
        var crc = CRC32()
        let chunk = 1 << 20
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 16)
        defer { buffer.deallocate() }
        var offset: UInt64 = 0
        while offset < size - 4 {
            let n = Int(min(UInt64(chunk), size - 4 - offset))
            let slice = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<n])
            try read(at: offset, into: slice)
            crc.update(UnsafeRawBufferPointer(slice))
            offset += UInt64(n)
        }
        var t = StateDecoder(try bytes(at: size - 4, count: 4), context: path)
        let stored = try t.u32()
        guard stored == crc.value else {
            throw fail("checksum mismatch (stored 0x\(String(stored, radix: 16)), computed 0x\(String(crc.value, radix: 16))): the file is corrupt or incomplete")
        }
    }

    /// The payload of the only section named `name` with a version this host reads.
    package func section(_ name: String, maxVersion: UInt32) throws -> (version: UInt32, payload: [UInt8]) {
        let found = sections.filter { $0.name == name }
        guard found.count == 1, let s = found.first else {
            throw fail(found.isEmpty ? "no '\(name)' section" : "section '\(name)' appears \(found.count) times")
        }
        guard s.version <= maxVersion else {
            throw fail("section '\(name)' version \(s.version); this hvhost reads up to version \(maxVersion)")
        }
        return (s.version, s.payload)
    }

    /// Copies the saved pages into `memory` (fresh, all zero). Every page address is
    /// checked against the VM's RAM.
    package func restoreMemory(into memory: GuestMemory) throws {
        guard let (offset, length) = memoryPayload else { throw fail("no 'memory' section") }
        guard length >= 20 else { throw fail("section 'memory' is \(length) bytes") }
        var h = StateDecoder(try bytes(at: offset, count: 20), context: "\(path): section 'memory'")
        let size = try h.u64(), pageSize = try h.u32(), pages = try h.u64()
        guard size == memory.size, UInt64(pageSize) == GuestMemory.pageSize else {
            throw fail("section 'memory' holds \(size) bytes in \(pageSize)-byte pages; this VM has \(memory.size) bytes of RAM")
        }
        let record = 8 + GuestMemory.pageSize
        guard pages <= memory.size / GuestMemory.pageSize, length == 20 + pages * record else {
            throw fail("section 'memory' length \(length) does not fit \(pages) pages")
        }
        var at = offset + 20
        for _ in 0..<pages {
            var a = StateDecoder(try bytes(at: at, count: 8), context: path)
            let gpa = try a.u64()
            guard gpa % GuestMemory.pageSize == 0, let page = memory.pointer(at: gpa, length: Int(GuestMemory.pageSize)) else {
                throw fail("section 'memory' has a page at 0x\(String(gpa, radix: 16)), outside this VM's RAM")
            }
            try read(at: at + 8, into: UnsafeMutableRawBufferPointer(start: page, count: Int(GuestMemory.pageSize)))
            at += record
        }
    }
}

extension SuspendFileWriter {
    /// The "memory" section: u64 RAM size, u32 page size, u64 page count, then each page
    /// that is not all zero as u64 guest-physical address + its bytes.
    package func memorySection(_ memory: GuestMemory) throws {
        let pageSize = Int(GuestMemory.pageSize)
        let zero = [UInt8](repeating: 0, count: pageSize)
        var pages: [UInt64] = []
        zero.withUnsafeBytes { z in
            for region in memory.regions {
                var gpa = region.guestAddress
                while gpa < region.guestAddress + region.size {
                    if let p = memory.pointer(at: gpa, length: pageSize), memcmp(p, z.baseAddress!, pageSize) != 0 {
                        pages.append(gpa)
                    }
                    gpa += UInt64(pageSize)
                }
            }
        }
        try beginSection("memory", version: 1, length: 20 + UInt64(pages.count) * (8 + UInt64(pageSize)))
        var e = StateEncoder()
        e.u64(memory.size)
        e.u32(UInt32(pageSize))
        e.u64(UInt64(pages.count))
        try write(e.bytes)
        for gpa in pages {
            var a = StateEncoder()
            a.u64(gpa)
            try write(a.bytes)
            try write(UnsafeRawBufferPointer(start: memory.pointer(at: gpa, length: pageSize), count: pageSize))
        }
    }
}
