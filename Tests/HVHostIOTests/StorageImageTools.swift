import Foundation
import Glibc
import XCTest
@testable import HVHostIO

/// Shared by the storage tests: a scratch directory, patterns, and qemu-img.
enum StorageImageTools {
    static func scratchDirectory() throws -> String {
        let d = NSTemporaryDirectory() + "hv-vmdk-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }

    /// Bytes that differ per seed and position.
    static func pattern(_ seed: UInt64, count: Int) -> [UInt8] {
        var x = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        var words = [UInt64](repeating: 0, count: (count + 7) / 8)
        for i in words.indices {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17
            words[i] = x
        }
        return words.withUnsafeBytes { Array($0.prefix(count)) }
    }

    static func write(_ disk: any VirtualDisk, sector: UInt64, _ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try disk.write(sector: sector, from: $0) }
    }

    static func read(_ disk: any VirtualDisk, sector: UInt64, sectors: Int) throws -> [UInt8] {
        var b = [UInt8](repeating: 0xEE, count: sectors * 512)
        try b.withUnsafeMutableBytes { try disk.read(sector: sector, into: $0) }
        return b
    }

    static let qemuImgPath = ["/usr/bin/qemu-img", "/usr/local/bin/qemu-img"].first { FileManager.default.isExecutableFile(atPath: $0) }

    /// Skips the test, saying why, when qemu-img is not installed.
    static func requireQEMUImg() throws -> String {
        guard let path = qemuImgPath else { throw XCTSkip("qemu-img is not installed (apt-get install qemu-utils): QEMU interop not checked") }
        return path
    }

    /// Runs qemu-img; (exit status, stdout + stderr).
    @discardableResult
    static func qemuImg(_ args: [String]) throws -> (status: Int32, output: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: try requireQEMUImg())
        p.arguments = args
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    static func fileBytes(_ path: String) -> [UInt8] { [UInt8](FileManager.default.contents(atPath: path) ?? Data()) }
}
