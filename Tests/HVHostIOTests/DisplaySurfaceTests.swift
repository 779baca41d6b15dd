import Foundation
import Synchronization
import XCTest
@testable import HVHostIO
@testable import HVSupport

/// The host side of the display: mode validation, damage, and a copy never reading a
/// framebuffer its device has already replaced.
final class DisplaySurfaceTests: XCTestCase {
    final class Counter: @unchecked Sendable {
        let value = Atomic<Int>(0)
        func add() { value.add(1, ordering: .relaxed) }
        var count: Int { value.load(ordering: .relaxed) }
    }

    /// A framebuffer whose bytes all equal `fill`; `retired` marks it freed by its device,
    /// and a copy of a retired buffer counts in `lateCopies`.
    final class Buffer: DisplayFramebuffer, @unchecked Sendable {
        let fill: UInt8
        let retired = Atomic<Bool>(false)
        let lateCopies: Counter
        init(fill: UInt8, lateCopies: Counter = Counter()) {
            self.fill = fill
            self.lateCopies = lateCopies
        }
        func copy(into buffer: inout [UInt8]) {
            if retired.load(ordering: .acquiring) { lateCopies.add() }
            for i in buffer.indices { buffer[i] = fill }
        }
    }

    func testModeLimits() {
        XCTAssertNoThrow(try DisplayMode(width: 8192, height: 8192, pitch: 8192 * 4, format: .xrgb8888))
        XCTAssertThrowsError(try DisplayMode(width: 8193, height: 1, pitch: 8193 * 4, format: .xrgb8888))
        XCTAssertThrowsError(try DisplayMode(width: 0, height: 1, pitch: 4, format: .xrgb8888))
        XCTAssertThrowsError(try DisplayMode(width: 640, height: 480, pitch: 1919, format: .rgb888))
        XCTAssertNoThrow(try DisplayMode(width: 641, height: 1, pitch: 641, format: .indexed8))
        XCTAssertThrowsError(try DisplayMode(width: 8192, height: 8192, pitch: 8192 * 4 + 4, format: .xrgb8888),
                             "more than 256 MiB")
        XCTAssertEqual(PixelFormat.allCases.map(\.bitsPerPixel), [32, 24, 16, 16, 8])
    }

    func testDamageIsClippedAndNeverOverflows() throws {
        let s = DisplaySurface()
        s.setMode(try DisplayMode(width: 100, height: 50, pitch: 400, format: .xrgb8888), framebuffer: Buffer(fill: 0))
        _ = s.takeDamage()
        s.update(x: UInt64.max - 1, y: 0, width: 10, height: 10)
        s.update(x: 90, y: 40, width: UInt64.max, height: UInt64.max)
        XCTAssertEqual(s.takeDamage(), [DisplayRect(x: 90, y: 40, width: 10, height: 10)])
        s.update(x: 10, y: 10, width: 5, height: 5)
        s.update(x: 0, y: 0, width: 50, height: 50)
        XCTAssertEqual(s.takeDamage(), [DisplayRect(x: 0, y: 0, width: 50, height: 50)], "a covering rectangle absorbs")
        XCTAssertThrowsError(try s.setPalette(first: 250, colors: [UInt32](repeating: 1, count: 7)))
        XCTAssertThrowsError(try s.defineCursor(width: 257, height: 1, hotX: 0, hotY: 0, pixels: [UInt32](repeating: 0, count: 257)))
        XCTAssertThrowsError(try s.defineCursor(width: 2, height: 2, hotX: 0, hotY: 0, pixels: [0, 0, 0]))
    }

    /// A device flips between buffers and frees the old one as soon as setMode returns,
    /// while a console copies as fast as it can: no copy touches a freed buffer, and each
    /// copy is one buffer with the mode published with it.
    func testCopiesAndModeChangesExcludeEachOther() throws {
        let s = DisplaySurface()
        let modes = [try DisplayMode(width: 64, height: 64, pitch: 256, format: .xrgb8888),
                     try DisplayMode(width: 32, height: 16, pitch: 128, format: .xrgb8888)]
        let late = Counter(), mismatches = Counter(), copies = Counter(), finished = Counter()
        let stopped = DispatchSemaphore(value: 0)
        var current = Buffer(fill: 0, lateCopies: late)
        s.setMode(modes[0], framebuffer: current)
        Thread.detachNewThread {
            while finished.count == 0 {
                guard let frame = s.snapshot() else { continue }
                let fill = frame.bytes[0]
                if !frame.bytes.allSatisfy({ $0 == fill }) || frame.mode != modes[Int(fill) % 2] {
                    mismatches.add()
                }
                copies.add()
            }
            stopped.signal()
        }
        // Flip until the console has copied many times meanwhile.
        var i = 0
        while i < 2000 || copies.count < 1000 {
            i += 1
            let next = Buffer(fill: UInt8(truncatingIfNeeded: i), lateCopies: late)
            s.setMode(modes[i % 2], framebuffer: next)
            current.retired.store(true, ordering: .releasing)
            current = next
        }
        finished.add()
        stopped.wait()
        XCTAssertGreaterThan(copies.count, 0)
        XCTAssertEqual(late.count, 0, "a copy read a buffer after setMode replaced it")
        XCTAssertEqual(mismatches.count, 0)
    }
}
