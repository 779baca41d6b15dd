import Foundation
import PluginABI
import XCTest
@testable import HVPluginHost

/// What the loader refuses before `dlopen`, so no constructor of it runs in the host:
/// files that do not parse as ELF shared objects (no section headers, tables outside
/// the file; the symbol-table check used to trap on an overflowing `symOff + symSize`),
/// and libraries in places others can write to. The ELF check is fuzzed with header and
/// section-table mutations of a real plugin: `HV_FUZZ_ITERATIONS` (default 1000) runs.
final class PluginLoadingSafetyTests: XCTestCase {
    static let dir: String = {
        let d = NSTemporaryDirectory() + "hv-loadsafety-\(getpid())"
        try? FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }()
    static let marker = dir + "/constructor-ran"

    /// Builds the marker library into `dir`/libmarker.so.
    static let markerLibrary: String? = {
        let out = dir + "/libmarker.so"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/cc")
        p.arguments = ["-std=c99", "-Wall", "-Werror", "-shared", "-fPIC", "-I", ProbeFixtures.currentHeaders,
                       "-DMARKER=\"\(marker)\"", "-o", out, ProbeFixtures.fixtures + "/constructor_marker.c"]
        try? p.run()
        p.waitUntilExit()
        return p.terminationStatus == 0 ? out : nil
    }()

    private func library() throws -> [UInt8] {
        let path = try XCTUnwrap(Self.markerLibrary, "cc constructor_marker.c failed")
        return try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
    }

    private func install(_ bytes: [UInt8], as name: String, mode: Int = 0o755) throws -> String {
        let sub = Self.dir + "/\(name)-dir"
        try? FileManager.default.removeItem(atPath: sub)
        try FileManager.default.createDirectory(atPath: sub, withIntermediateDirectories: true)
        let path = sub + "/lib\(name).so"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        chmod(path, 0o755)
        chmod(sub, mode_t(mode))
        return path
    }

    private func loadError(_ path: String) -> PluginLoadError.Reason? {
        unlink(Self.marker)
        defer { XCTAssertFalse(FileManager.default.fileExists(atPath: Self.marker), "\(path) was dlopen'ed") }
        do {
            _ = try PluginLoader().load(path: path)
            return nil
        } catch {
            return error.reason
        }
    }

    private static func put64(_ bytes: inout [UInt8], _ offset: Int, _ value: UInt64) {
        for i in 0..<8 { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
    }

    private static func u64(_ bytes: [UInt8], _ o: Int) -> Int {
        (0..<8).reduce(0) { $0 | Int(bytes[o + $1]) << (8 * $1) }
    }
    private static func u16(_ bytes: [UInt8], _ o: Int) -> Int { Int(bytes[o]) | Int(bytes[o + 1]) << 8 }

    func testTheMarkerLibraryItselfIsLoadedSoTheOtherTestsCanFail() throws {
        let path = try install(try library(), as: "control")
        unlink(Self.marker)
        XCTAssertThrowsError(try PluginLoader().load(path: path))      // its entry returns NULL
        XCTAssertTrue(FileManager.default.fileExists(atPath: Self.marker), "the constructor ran")
    }

    func testALibraryWithoutSectionHeadersIsNeverLoaded() throws {
        var bytes = try library()
        Self.put64(&bytes, 0x28, 0)                          // e_shoff
        bytes[0x3C] = 0; bytes[0x3D] = 0                     // e_shnum
        XCTAssertEqual(loadError(try install(bytes, as: "noshdr")), .notAPlugin("no section headers"))
    }

    func testAnOverflowingDynsymSizeIsRefusedNotATrap() throws {
        var bytes = try library()
        let shoff = Self.u64(bytes, 0x28), shentsize = Self.u16(bytes, 0x3A), shnum = Self.u16(bytes, 0x3C)
        var patched = false
        for i in 0..<shnum where Self.u16(bytes, shoff + i * shentsize + 4) == 11 {   // SHT_DYNSYM
            Self.put64(&bytes, shoff + i * shentsize + 0x18, UInt64(Int.max - 16))     // sh_offset
            Self.put64(&bytes, shoff + i * shentsize + 0x20, 4096)                     // sh_size
            patched = true
        }
        XCTAssertTrue(patched)
        XCTAssertEqual(loadError(try install(bytes, as: "overflow")), .notAPlugin("malformed .dynsym section header"))
    }

    func testLibrariesInDirectoriesOthersCanWriteAreNeverLoaded() throws {
        for (name, mode, who) in [("worldw", 0o777, "everyone"), ("groupw", 0o775, "its group")] {
            let path = try install(try library(), as: name, mode: mode)
            guard case .unsafeLocation(let why)? = loadError(path) else {
                XCTFail("\(name): not refused for its location")
                continue
            }
            XCTAssertTrue(why.contains("its directory \((path as NSString).deletingLastPathComponent) is writable by \(who)"), why)
        }
        let writable = try install(try library(), as: "filew")
        chmod(writable, 0o666)
        guard case .unsafeLocation(let why)? = loadError(writable) else { return XCTFail("a world-writable library was loaded") }
        XCTAssertTrue(why.contains("the library \(writable) is writable by everyone"), why)
    }

    /// Random mutations of the ELF header, the section header table and the dynamic
    /// symbol/string tables: every one gets a verdict, none traps.
    func testELFHeaderMutationFuzz() throws {
        let original = try library()
        let iterations = ProcessInfo.processInfo.environment["HV_FUZZ_ITERATIONS"].flatMap(Int.init) ?? 1000
        var rng = SplitMix(seed: ProcessInfo.processInfo.environment["HV_FUZZ_SEED"].flatMap(UInt64.init) ?? 0x5eed)
        let shoff = Self.u64(original, 0x28), shentsize = Self.u16(original, 0x3A), shnum = Self.u16(original, 0x3C)
        let table = shoff..<(shoff + shentsize * shnum)
        let extremes: [UInt64] = [0, 1, 0x7F, 0xFF, 0xFFFF, 0xFFFF_FFFF, UInt64(Int.max), UInt64(Int.max) - 7, .max,
                                  UInt64(original.count), UInt64(original.count) - 1, 1 << 32, 1 << 63]
        var verdicts: [String: Int] = [:]
        let started = Date()
        for _ in 0..<iterations {
            var bytes = original
            for _ in 0..<(1 + Int(rng.next() % 4)) {
                let region = rng.next() % 3
                let offset: Int
                switch region {
                case 0: offset = Int(rng.next() % 64)
                case 1: offset = table.lowerBound + Int(rng.next() % UInt64(table.count))
                default: offset = Int(rng.next() % UInt64(original.count))
                }
                if rng.next() % 2 == 0 {
                    bytes[offset] = UInt8(truncatingIfNeeded: rng.next())
                } else if offset + 8 <= bytes.count {
                    Self.put64(&bytes, offset & ~7, extremes[Int(rng.next() % UInt64(extremes.count))])
                }
            }
            if rng.next() % 8 == 0 { bytes.removeLast(Int(rng.next() % UInt64(bytes.count - 1))) }   // truncated
            let verdict = bytes.withUnsafeBytes { PluginELFSymbols.inspect($0, for: HV_PLUGIN_ENTRY_SYMBOL) }
            switch verdict {
            case .defines: verdicts["defines", default: 0] += 1
            case .lacks: verdicts["lacks", default: 0] += 1
            case .unreadable(let why): verdicts[why, default: 0] += 1
            }
        }
        let seconds = Date().timeIntervalSince(started)
        print("ELF fuzz: \(iterations) mutations in \(String(format: "%.2f", seconds)) s: \(verdicts)")
        XCTAssertEqual(verdicts.values.reduce(0, +), iterations)
        XCTAssertGreaterThan(verdicts.count, 3, "the mutations reach several checks: \(verdicts)")
    }
}

/// A small deterministic generator (SplitMix64) for reproducible fuzz runs.
struct SplitMix {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
