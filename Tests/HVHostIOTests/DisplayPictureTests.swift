import XCTest
@testable import HVHostIO

/// What `screenshot` saves: every pixel format as RGB, the palette, and the pointer
/// blended in with straight alpha and clipped at the screen's edges.
final class DisplayPictureTests: XCTestCase {
    final class Bytes: DisplayFramebuffer {
        let bytes: [UInt8]
        init(_ bytes: [UInt8]) { self.bytes = bytes }
        func copy(into buffer: inout [UInt8]) { buffer = Array(bytes.prefix(buffer.count)) }
    }

    func testFormatsBecomeRGB() throws {
        let surface = DisplaySurface()
        XCTAssertTrue(surface.attach(publisher: self))
        XCTAssertNil(surface.picture(cursor: true), "blank")
        // 2x1 RGB565 with a padded pitch: pure red, then white.
        surface.setMode(try DisplayMode(width: 2, height: 1, pitch: 6, format: .rgb565),
                        framebuffer: Bytes([0x00, 0xF8, 0xFF, 0xFF, 0xAA, 0xAA]))
        XCTAssertEqual(surface.picture(cursor: false)?.rgb, [0xFF, 0, 0, 0xFF, 0xFF, 0xFF])
        // XRGB1555: green 0x1F -> 0xFF; the top bit is ignored.
        surface.setMode(try DisplayMode(width: 1, height: 1, pitch: 2, format: .xrgb1555), framebuffer: Bytes([0xE0, 0x83]))
        XCTAssertEqual(surface.picture(cursor: false)?.rgb, [0, 0xFF, 0])
        // RGB888 stores blue, green, red.
        surface.setMode(try DisplayMode(width: 1, height: 1, pitch: 3, format: .rgb888), framebuffer: Bytes([1, 2, 3]))
        XCTAssertEqual(surface.picture(cursor: false)?.rgb, [3, 2, 1])
        // INDEXED8 through the palette.
        try surface.setPalette(first: 7, colors: [0x12_3456])
        surface.setMode(try DisplayMode(width: 1, height: 1, pitch: 1, format: .indexed8), framebuffer: Bytes([7]))
        XCTAssertEqual(surface.picture(cursor: false)?.rgb, [0x12, 0x34, 0x56])
    }

    func testCursorIsBlendedAndClipped() throws {
        let surface = DisplaySurface()
        XCTAssertTrue(surface.attach(publisher: self))
        // 3x1 black XRGB8888.
        surface.setMode(try DisplayMode(width: 3, height: 1, pitch: 12, format: .xrgb8888),
                        framebuffer: Bytes([UInt8](repeating: 0, count: 12)))
        // 2x2 cursor, hotspot (1, 1): opaque white, half red, transparent, opaque blue.
        try surface.defineCursor(width: 2, height: 2, hotX: 1, hotY: 1,
                                 pixels: [0xFFFF_FFFF, 0x80FF_0000, 0x0000_0000, 0xFF00_00FF])
        try surface.moveCursor(x: 1, y: 0)
        XCTAssertEqual(surface.picture(cursor: true)?.rgb, [UInt8](repeating: 0, count: 9), "hidden")
        surface.showCursor(true)
        // Row 0 of the screen is the cursor's row 1 at x 0..1: transparent, then blue.
        XCTAssertEqual(surface.picture(cursor: true)?.rgb, [0, 0, 0, 0, 0, 0xFF, 0, 0, 0])
        try surface.moveCursor(x: 2, y: 1)
        // Row 0 is the cursor's row 0 at x 1..2: white, then half red over black.
        XCTAssertEqual(surface.picture(cursor: true)?.rgb, [0, 0, 0, 0xFF, 0xFF, 0xFF, 0x80, 0, 0])
        XCTAssertEqual(surface.picture(cursor: false)?.rgb, [UInt8](repeating: 0, count: 9), "nocursor")
    }
}
