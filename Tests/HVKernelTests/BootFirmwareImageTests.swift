import Foundation
import Testing
@testable import HVBackendKVM
@testable import HVKernel
@testable import HVMemory

/// Where a BIOS image lands: all of it below 4 GiB, its last 256 KiB (or all of a smaller
/// image) ending at 1 MiB in guest RAM; sizes that are not whole 64 KiB blocks are refused.
@Suite struct BootFirmwareImageTests {
    private func image(_ size: Int) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("fw-\(getpid())-\(size).bin").path
        // Each 64 KiB block holds its index, so a copy shows which part of the image it is.
        let bytes = (0..<size).map { UInt8(truncatingIfNeeded: $0 >> 16) }
        FileManager.default.createFile(atPath: path, contents: Data(bytes))
        return path
    }

    @Test func shadowCopyIsTheImagesTail() throws {
        for (size, blocks) in [(128 << 10, 2), (256 << 10, 4), (512 << 10, 4)] {
            let path = try image(size)
            defer { try? FileManager.default.removeItem(atPath: path) }
            let fw = try FirmwareImage(contentsOf: path)
            #expect(fw.highBase == 0x1_0000_0000 - UInt64(size))
            #expect(fw.shadowRange == (0x10_0000 - UInt64(blocks) * 0x1_0000)..<0x10_0000)
            let memory = try GuestMemory(size: 16 << 20)
            try fw.install(into: memory)
            // The byte just below 1 MiB is the image's last; the copy starts `blocks` blocks from its end.
            #expect(try memory.load(UInt8.self, at: 0xF_FFFF) == UInt8(size / 0x1_0000 - 1))
            #expect(try memory.load(UInt8.self, at: fw.shadowRange.lowerBound) == UInt8(size / 0x1_0000 - blocks))
        }
    }

    @Test func badSizesAreRefused() throws {
        for size in [0, 1000, 0x1_0000 + 512] {
            let path = try image(size)
            defer { try? FileManager.default.removeItem(atPath: path) }
            #expect(throws: BootError(file: path, reason: .badFirmwareSize(UInt64(size)))) {
                _ = try FirmwareImage(contentsOf: path)
            }
        }
        #expect(throws: BootError.self) { _ = try FirmwareImage(contentsOf: "/nonexistent/bios.bin") }
    }
}
