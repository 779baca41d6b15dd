import Glibc
import XCTest
@testable import HVMemory

final class GuestSwapTests: XCTestCase {
    private func pattern(_ i: Int) -> UInt64 { UInt64(i) &* 0x9E37_79B9_7F4A_7C15 ^ 0x5A5A }

    private func filled(_ pages: Int) throws -> GuestMemory {
        let memory = try GuestMemory(size: UInt64(pages) * GuestMemory.pageSize, name: "swap-test")
        let words = memory.base.assumingMemoryBound(to: UInt64.self)
        for i in 0..<(pages * 512) { words[i] = pattern(i) }
        return memory
    }

    func testSwappedPagesLeaveTheMemfdAndComeBackIntact() throws {
        let memory = try filled(1024)
        let before = memory.residentBytes
        let path = NSTemporaryDirectory() + "swap-test-\(getpid()).swp"
        let swap = try GuestSwap(memory: memory, path: path, name: "swap-test")
        defer { swap.close() }
        var quiesced = 0
        let out = try swap.swapOut(count: 600) { body in quiesced += 1; try body() }
        XCTAssertEqual(out, 600)
        XCTAssertEqual(quiesced, 1)
        XCTAssertEqual(swap.statistics.swapped, 600)
        XCTAssertEqual(before - memory.residentBytes, 600 * GuestMemory.pageSize)
        // Every word reads back through the fault thread.
        let words = memory.base.assumingMemoryBound(to: UInt64.self)
        var bad = 0
        for i in 0..<(1024 * 512) where words[i] != pattern(i) { bad += 1 }
        XCTAssertEqual(bad, 0)
        XCTAssertEqual(swap.statistics.swapped, 0)
        XCTAssertEqual(swap.statistics.swappedIn, 600)
        // The fault thread records a latency just after it woke the toucher.
        var latencies = swap.takeSwapInLatencies()
        for _ in 0..<100 where latencies.count < 600 {
            usleep(10_000)
            latencies += swap.takeSwapInLatencies()
        }
        XCTAssertEqual(latencies.count, 600)
    }

    func testReleasedPagesReadZeroAndDiscardedSwapIsForgotten() throws {
        let memory = try filled(64)
        let path = NSTemporaryDirectory() + "swap-test-z-\(getpid()).swp"
        let swap = try GuestSwap(memory: memory, path: path, name: "swap-test")
        defer { swap.close() }
        XCTAssertEqual(try swap.swapOut(count: 8) { try $0() }, 8)
        XCTAssertTrue(swap.isSwapped(page: 0))
        // The balloon took page 0 meanwhile: its bytes are gone, it reads zero.
        XCTAssertTrue(swap.discard(page: 0))
        try memory.release(offset: 40 * GuestMemory.pageSize, count: 1)
        let words = memory.base.assumingMemoryBound(to: UInt64.self)
        XCTAssertEqual(words[0], 0)
        XCTAssertEqual(words[40 * 512 + 7], 0)
        XCTAssertEqual(words[1 * 512 + 3], pattern(512 + 3))
        XCTAssertEqual(swap.statistics.zeroFilled, 2)
        XCTAssertEqual(swap.statistics.swapped, 6)
        XCTAssertEqual(try swap.swapIn(count: 4), 4)
        XCTAssertEqual(swap.statistics.swapped, 2)
        XCTAssertEqual(swap.statistics.swappedIn, 5)
        XCTAssertEqual(words[2 * 512 + 9], pattern(2 * 512 + 9))
        XCTAssertEqual(swap.statistics.swappedIn, 5, "page 2 came back without a fault")
    }
}
