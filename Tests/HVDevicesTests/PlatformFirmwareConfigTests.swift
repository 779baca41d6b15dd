import XCTest
@testable import HVDevices
@testable import HVMemory

/// fw_cfg as SeaBIOS drives it: the port interface, the file directory, DMA.
final class PlatformFirmwareConfigTests: XCTestCase {
    var memory: GuestMemory!
    var device: FirmwareConfig!

    override func setUpWithError() throws {
        memory = try GuestMemory(size: 2 << 20)
        var items = FirmwareConfigItems()
        items.set(FirmwareConfig.Key.cpuCount, integer: 3, width: 2)
        items.addFile("etc/e820", [UInt8](1...24))
        items.addFile("bootorder", Array("/pci@i0cf8/scsi@2/channel@0/disk@0,0\u{0}".utf8))
        device = FirmwareConfig(contents: items, memory: memory)
    }

    func select(_ key: UInt16) { device.ioWrite(offset: 0, size: 2, value: UInt32(key)) }
    func readBytes(_ n: Int) -> [UInt8] { (0..<n).map { _ in UInt8(device.ioRead(offset: 1, size: 1)) } }

    func testSignatureFeaturesAndNumericItemsThroughThePorts() {
        select(0)
        XCTAssertEqual(readBytes(4), Array("QEMU".utf8))
        select(1)
        XCTAssertEqual(readBytes(4), [3, 0, 0, 0], "traditional interface and DMA")
        select(5)
        XCTAssertEqual(readBytes(3), [3, 0, 0], "past the end: zeros")
        select(0x7777)
        XCTAssertEqual(readBytes(2), [0, 0], "an absent item reads as zeros")
        XCTAssertEqual(device.mmioRead(offset: 4, size: 4), 0x554D_4551, "\"QEMU CFG\" at the DMA address register")
    }

    func testFileDirectoryIsBigEndianWithKeysFrom0x20() {
        select(0x19)
        let dir = readBytes(4 + 2 * 64)
        XCTAssertEqual(Array(dir[0..<4]), [0, 0, 0, 2])
        XCTAssertEqual(Array(dir[4..<8]), [0, 0, 0, 24], "size")
        XCTAssertEqual(Array(dir[8..<10]), [0, 0x20], "key")
        XCTAssertEqual(String(decoding: dir[12..<20], as: UTF8.self), "etc/e820")
        XCTAssertEqual(Array(dir[68..<72]), [0, 0, 0, 37])
        XCTAssertEqual(Array(dir[72..<74]), [0, 0x21])
        XCTAssertEqual(dir[76 + 9], 0, "names are NUL-padded to 56 bytes")
    }

    /// Writes a descriptor at 0x1000 and kicks it (high half, then the low half).
    func dma(control: UInt32, length: UInt32, to address: UInt64) throws -> UInt32 {
        var d = [UInt8]()
        for v in [control, length, UInt32(address >> 32), UInt32(truncatingIfNeeded: address)] {
            d += [24, 16, 8, 0].map { UInt8(truncatingIfNeeded: v >> $0) }
        }
        try memory.write(d, at: 0x1000)
        device.ioWrite(offset: 4, size: 4, value: 0)
        device.ioWrite(offset: 8, size: 4, value: UInt32(0x1000).byteSwapped)
        return try memory.read(at: 0x1000, count: 4).reduce(0) { $0 << 8 | UInt32($1) }
    }

    func testDMASelectSkipReadAndZeroFill() throws {
        // select the first file and skip 4 bytes, then read 30: 20 bytes of data, 10 zeros.
        XCTAssertEqual(try dma(control: 0x20 << 16 | 0x08 | 0x04, length: 4, to: 0), 0)
        try memory.write([UInt8](repeating: 0xEE, count: 32), at: 0x2000)
        XCTAssertEqual(try dma(control: 0x02, length: 30, to: 0x2000), 0)
        XCTAssertEqual(try memory.read(at: 0x2000, count: 32), Array(5...24) + [UInt8](repeating: 0, count: 10) + [0xEE, 0xEE])
    }

    func testDMAErrorsOutsideRAMAndOnWrites() throws {
        XCTAssertEqual(try dma(control: 0x20 << 16 | 0x08 | 0x02, length: 8, to: 0x8000_0000), 1, "not RAM")
        XCTAssertEqual(try dma(control: 0x20 << 16 | 0x08 | 0x10, length: 8, to: 0x2000), 1, "nothing is writable")
        // A descriptor outside RAM is dropped without touching anything.
        device.ioWrite(offset: 4, size: 4, value: 0)
        device.ioWrite(offset: 8, size: 4, value: UInt32(0xF000_0000).byteSwapped)
    }
}
