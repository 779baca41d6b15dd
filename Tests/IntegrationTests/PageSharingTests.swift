import Foundation
import XCTest

/// Content-based page sharing across the VMs of one hvhost: ten identical guests share
/// most of their memory (counted by the VMkernel and seen in the host's PSS), and a guest
/// writing to a shared page reads its own data while the others keep theirs.
final class PageSharingTests: XCTestCase {
    private static let vms = 10
    private static let pagesPerVM = 64 * 256

    func testTenIdenticalGuestsShareTheirPagesAndWritesCopyOnWrite() throws {
        let env = try SchedulingEnv.require(policies: [], guest: "memshare")
        let names = (1...Self.vms).map { "share\($0)" }
        let vmxs = names.enumerated().map { i, name -> String in
            try? FileManager.default.removeItem(atPath: "\(env.dir)/\(name).log")
            return HostHarness.vmx(name, guest: "memshare",
                                   extra: ["hv.serial": "file:\(env.dir)/\(name).log", "hv.cmdline": "id=\(i + 1)"])
        }
        func verifiedPasses(_ name: String) -> Int {
            env.log(name).components(separatedBy: " verified\n").count - 1
        }
        var sharedFraction = 0.0, pssMiB = 0, cow = 0, baselinePassed = [String: Int](), top = ""
        // Ten VMs' pages at 4096 pages/s (the default) take 40 s a pass; the test scans faster.
        let r = env.run(["--mem-scan-rate", "32768"], vmxs) { run in
            try Self.waitFor("every guest filled its memory", timeout: 60) {
                if let failed = names.first(where: { env.log($0).contains("EXIT") }) {
                    throw FixtureBuildError(message: "\(failed) stopped: \(env.log(failed))")
                }
                return names.allSatisfy { env.log($0).contains("memshare: filled") }
            }
            var rows: [MemRow] = []
            try Self.waitFor("60 % of the guests' pages shared", timeout: 60) {
                rows = try MemRow.parse(run.console("mem raw"))
                let vmRows = rows.filter { $0.vm != nil }
                guard vmRows.count == Self.vms else { return false }
                let saved = vmRows.reduce(0) { $0 + $1.shrd + $1.zero }
                sharedFraction = Double(saved) / Double(Self.vms * Self.pagesPerVM)
                return sharedFraction >= 0.6
            }
            // Every guest keeps stamping pattern pages (shared by now) and proving all of
            // its memory: three more proven passes each, and the scanner saw the writes.
            baselinePassed = Dictionary(uniqueKeysWithValues: names.map { ($0, verifiedPasses($0)) })
            try Self.waitFor("three more verified passes in every guest", timeout: 60) {
                names.allSatisfy { verifiedPasses($0) >= baselinePassed[$0, default: 0] + 3 }
            }
            try Self.waitFor("a guest write breaking a shared page", timeout: 30) {
                cow = try MemRow.parse(run.console("mem raw")).first { $0.vm == nil }?.cow ?? 0
                return cow > 0
            }
            pssMiB = try Self.pssMiB(pid: run.pid)
            top = HostHarness.hvhostRun(["top", "--mem", "--socket", run.socket, "--count", "1"], timeout: 20).stdout
        }
        XCTAssertEqual(r.status, 0, r.stderr)
        for name in names {
            let log = env.log(name)
            XCTAssertFalse(log.contains("MISMATCH"), "\(name): \(log.suffix(400))")
            XCTAssertGreaterThanOrEqual(verifiedPasses(name), baselinePassed[name, default: 0] + 3, name)
        }
        XCTAssertGreaterThanOrEqual(sharedFraction, 0.6)
        XCTAssertGreaterThan(cow, 0)
        // `top --mem`: esxtop's memory screen, a line per VM with its MEMSZ and SHRD in MiB.
        XCTAssertTrue(top.hasPrefix("hvhost top #1: memory\nbudget "), top)
        XCTAssertTrue(top.contains("page sharing: "), top)
        XCTAssertTrue(top.contains("VM\tMEMSZ\tGRANT\tSHRD\tZERO\tCOPIED\tMCTLSZ\tSWCUR\tTARGET"), top)
        for name in names {
            let row = top.split(separator: "\n").first { $0.hasPrefix(name + "\t") }?.split(separator: "\t") ?? []
            XCTAssertEqual(row.count, 14, top)
            XCTAssertEqual(row.dropFirst().first, "64.0", top)
            XCTAssertGreaterThan(Double(row.dropFirst(3).first ?? "") ?? 0, 20, "SHRD of \(name): \(top)")
        }
        // Each guest filled 44 MiB; unshared that is 440 MiB of PSS for guest RAM alone.
        // Shared: 1 MiB unique per guest, 16 pattern frames and the host's own memory.
        XCTAssertLessThan(pssMiB, 200, "hvhost PSS \(pssMiB) MiB with \(Int(sharedFraction * 100)) % of pages shared")
        print("page sharing: \(Int(sharedFraction * 100)) % of \(Self.vms) × 64 MiB shared, hvhost PSS \(pssMiB) MiB, \(cow) pages broken by guest writes")
    }

    /// One line of `mem raw`: a VM's pages, or the sharing totals (`vm` nil).
    private struct MemRow {
        var vm: String?
        var shrd = 0, zero = 0, cow = 0

        static func parse(_ text: String) -> [MemRow] {
            text.split(separator: "\n").compactMap { line in
                var fields: [String: String] = [:]
                for word in line.split(separator: " ") {
                    let kv = word.split(separator: "=", maxSplits: 1)
                    if kv.count == 2 { fields[String(kv[0])] = String(kv[1]) }
                }
                if let vm = fields["vm"] {
                    return MemRow(vm: vm, shrd: Int(fields["shrd"] ?? "") ?? 0, zero: Int(fields["zero"] ?? "") ?? 0)
                }
                guard line.hasPrefix("sharing ") else { return nil }
                return MemRow(vm: nil, cow: Int(fields["cow"] ?? "") ?? 0)
            }
        }
    }

    private static func pssMiB(pid: Int32) throws -> Int {
        let text = try String(contentsOfFile: "/proc/\(pid)/smaps_rollup", encoding: .utf8)
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("Pss:") }),
              let kib = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") else {
            throw FixtureBuildError(message: "no Pss line in /proc/\(pid)/smaps_rollup")
        }
        return kib / 1024
    }

    private static func waitFor(_ what: String, timeout: TimeInterval, _ condition: () throws -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while try !condition() {
            guard Date() < deadline else { throw FixtureBuildError(message: "timed out after \(Int(timeout)) s waiting for \(what)") }
            Thread.sleep(forTimeInterval: 0.2)
        }
    }
}
