import Glibc
import HVMemory
import HVSupport

/// A "pages" section: u32 count, then per page a u64 whose page-aligned part is the
/// guest-physical address and whose low 12 bits say how the page comes:
///
///     0  raw: the 4096 bytes follow
///     1  zero: all zero (nothing follows)
///     2  duplicate: u32 index of an earlier page of this section with the same bytes
///
/// The first pass over memory leaves zero pages out altogether (the destination's RAM
/// starts zeroed); later passes send a page that became zero as kind 1.
struct MigrationPageBatch {
    static let maximumPages = 256
    private static let pageSize = Int(GuestMemory.pageSize)
    private static let zeroPage = [UInt8](repeating: 0, count: pageSize)

    private(set) var count = 0
    private var body: [UInt8] = []
    /// Raw pages of this batch by a cheap key (their first and last words), with where
    /// their copy sits in `body`; a match is confirmed against that copy (the guest may
    /// have changed the original since) before a page is sent as a duplicate.
    private var seen: [UInt64: [(index: Int, offset: Int)]] = [:]
    private(set) var zeroPages = 0
    private(set) var duplicatePages = 0

    init() { body.reserveCapacity(Self.maximumPages * (Self.pageSize + 8)) }

    var isFull: Bool { count >= Self.maximumPages }
    var isEmpty: Bool { count == 0 }

    static func isZero(_ page: UnsafeRawPointer) -> Bool {
        zeroPage.withUnsafeBytes { memcmp(page, $0.baseAddress!, pageSize) == 0 }
    }

    /// Adds the page at `gpa` (`page` points at its bytes). With `skipZero` a zero page
    /// is left out and false returned.
    @discardableResult
    mutating func add(gpa: UInt64, page: UnsafeRawPointer, skipZero: Bool) -> Bool {
        if Self.isZero(page) {
            if skipZero { return false }
            append(gpa | 1)
            zeroPages += 1
        } else {
            let key = page.loadUnaligned(as: UInt64.self) ^ page.loadUnaligned(fromByteOffset: Self.pageSize - 8, as: UInt64.self)
            let earlier = seen[key]?.first { e in
                body.withUnsafeBytes { memcmp($0.baseAddress! + e.offset, page, Self.pageSize) == 0 }
            }
            if let earlier {
                append(gpa | 2)
                var e = StateEncoder()
                e.u32(UInt32(earlier.index))
                body.append(contentsOf: e.bytes)
                duplicatePages += 1
            } else {
                append(gpa)
                seen[key, default: []].append((count, body.count))
                body.append(contentsOf: UnsafeRawBufferPointer(start: page, count: Self.pageSize))
            }
        }
        count += 1
        return true
    }

    private mutating func append(_ word: UInt64) {
        var e = StateEncoder()
        e.u64(word)
        body.append(contentsOf: e.bytes)
    }

    /// The section payload; the batch starts over empty.
    mutating func take() -> [UInt8] {
        var e = StateEncoder()
        e.u32(UInt32(count))
        let payload = e.bytes + body
        body.removeAll(keepingCapacity: true)
        seen.removeAll(keepingCapacity: true)
        count = 0
        return payload
    }

    /// Writes the pages of a received section into `memory`, checking every address and
    /// reference; returns how many pages it held.
    @discardableResult
    static func apply(_ payload: [UInt8], to memory: GuestMemory, from peer: String) throws -> Int {
        try payload.withUnsafeBytes { raw in
            func fail(_ why: String) -> MigrationError { MigrationError("\(peer): section 'pages': \(why)") }
            guard raw.count >= 4 else { throw fail("\(raw.count) bytes") }
            let count = Int(UInt32(littleEndian: raw.loadUnaligned(as: UInt32.self)))
            guard count <= maximumPages else { throw fail("\(count) pages") }
            var at = 4
            var placed: [UnsafeMutableRawPointer] = []
            placed.reserveCapacity(count)
            for _ in 0..<count {
                guard at + 8 <= raw.count else { throw fail("cut short") }
                let word = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: at, as: UInt64.self))
                at += 8
                let gpa = word & ~(GuestMemory.pageSize - 1), kind = word & (GuestMemory.pageSize - 1)
                guard let page = memory.pointer(at: gpa, length: pageSize) else {
                    throw fail("a page at 0x\(String(gpa, radix: 16)), outside this VM's RAM")
                }
                switch kind {
                case 0:
                    guard at + pageSize <= raw.count else { throw fail("cut short") }
                    page.copyMemory(from: raw.baseAddress! + at, byteCount: pageSize)
                    at += pageSize
                case 1:
                    memset(page, 0, pageSize)
                case 2:
                    guard at + 4 <= raw.count else { throw fail("cut short") }
                    let index = Int(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: at, as: UInt32.self)))
                    at += 4
                    guard index < placed.count else { throw fail("duplicate of page \(index) of \(placed.count)") }
                    page.copyMemory(from: placed[index], byteCount: pageSize)
                default:
                    throw fail("page kind \(kind)")
                }
                placed.append(page)
            }
            guard at == raw.count else { throw fail("\(raw.count - at) bytes after the last page") }
            return count
        }
    }
}
