import Glibc
import XCTest
@testable import HVMemory

/// Page sharing on real memfd-backed guest RAM, without a VM: merging, copy-on-write,
/// and the pages the balloon and host swap take from under it.
final class PageSharingMemoryTests: XCTestCase {
    private static let pages = 64

    /// Pages 0..<32 hold one pattern, 32..<48 another, 48..<64 zeros (touched).
    private func filledMemory() throws -> GuestMemory {
        let memory = try GuestMemory(size: UInt64(Self.pages) * GuestMemory.pageSize, name: "sharing-test")
        let words = memory.base.assumingMemoryBound(to: UInt64.self)
        for page in 0..<Self.pages {
            for w in 0..<512 { words[page * 512 + w] = page < 32 ? 0xA5A5_0000 + UInt64(w) : page < 48 ? 0x5A5A_0000 ^ UInt64(w) : 0 }
        }
        return memory
    }

    private func word(_ memory: GuestMemory, page: Int, _ w: Int = 7) -> UInt64 {
        memory.base.assumingMemoryBound(to: UInt64.self)[page * 512 + w]
    }

    func testIdenticalPagesShareAndAWriteCopiesOnlyThatPage() throws {
        let memory = try filledMemory()
        let sharing = try PageSharing(capacityPages: 256)
        var quiesces = 0
        let member = sharing.attach(memory, name: "t") { body in quiesces += 1; body() }
        sharing.scan(pages: Self.pages * 2)
        let counts = sharing.counts(of: member)
        XCTAssertEqual(counts.shared, 48)
        XCTAssertEqual(counts.zero, 16)
        XCTAssertGreaterThan(quiesces, 0)
        XCTAssertEqual(sharing.statistics.framesInUse, 2)
        XCTAssertEqual(memory.residentBytes, 0, "every memfd page was punched out")
        XCTAssertFalse(sharing.privatePages(of: member).contains(true))

        // A write to one shared page changes that page only.
        memory.base.assumingMemoryBound(to: UInt64.self)[5 * 512 + 7] = 42
        XCTAssertEqual(word(memory, page: 5), 42)
        XCTAssertEqual(word(memory, page: 6), 0xA5A5_0007)
        sharing.refreshWritten()
        XCTAssertEqual(sharing.counts(of: member), PageSharing.Counts(shared: 47, zero: 16, copied: 1))
        XCTAssertEqual(sharing.statistics.unsharedByWrites, 1)
    }

    /// The balloon takes pages on vCPU threads, without the scanner's lock: a shared
    /// page and a zero page get their memfd page mapped back (a hole: they read zero),
    /// and the scanner's books catch up.
    func testBalloonReleaseOfSharedPagesReadsZeroAndTheCountsCatchUp() throws {
        let memory = try filledMemory()
        let sharing = try PageSharing(capacityPages: 256)
        let member = sharing.attach(memory, name: "t") { $0() }
        sharing.scan(pages: Self.pages * 2)
        XCTAssertEqual(sharing.counts(of: member).shared, 48)

        XCTAssertTrue(try memory.releaseWhateverMapsIt(page: 3))
        XCTAssertTrue(try memory.releaseWhateverMapsIt(page: 50))
        member.noteRemapped(3)
        member.noteRemapped(50)
        XCTAssertEqual(word(memory, page: 3), 0)
        XCTAssertEqual(word(memory, page: 4), 0xA5A5_0007, "the neighbour still shows the frame")
        XCTAssertEqual(sharing.counts(of: member), PageSharing.Counts(shared: 47, zero: 15, copied: 0))
        let privatePages = sharing.privatePages(of: member)
        XCTAssertEqual(privatePages.indices.filter { privatePages[$0] }, [3, 50])
        // A private page is released in place.
        memory.base.assumingMemoryBound(to: UInt64.self)[3 * 512] = 9
        XCTAssertFalse(try memory.releaseWhateverMapsIt(page: 3))
        XCTAssertEqual(word(memory, page: 3, 0), 0)
    }
}
