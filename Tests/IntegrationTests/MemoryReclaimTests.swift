import Foundation
import XCTest

/// VMware's balloon (the `balloon` guest speaks `vmw_balloon`'s protocol) and host swap,
/// measured on the hvhost process: its shared-memory RSS is the guest RAM memfd.
final class MemoryReclaimTests: XCTestCase {
    private static let dir: String = {
        let d = HostHarness.workDir + "/reclaim"
        try? FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }()

    private func console(_ socket: String, _ words: String...) -> HostHarness.Result {
        HostHarness.hvhostRun(["console", "--socket", socket] + words, timeout: 60)
    }

    /// RssShmem of `pid` in KiB (guest RAM is a memfd, shared memory).
    private func shmemKiB(_ pid: Int32) -> UInt64 {
        for line in readLog("/proc/\(pid)/status").split(separator: "\n") where line.hasPrefix("RssShmem:") {
            return UInt64(line.split(separator: " ", omittingEmptySubsequences: true)[1]) ?? 0
        }
        return 0
    }

    /// The `mem reclaim` row of `vm`, by column name.
    private func reclaimRow(_ socket: String, _ vm: String) -> [String: String] {
        let lines = console(socket, "mem", "reclaim").stdout.split(separator: "\n").map { $0.split(separator: "\t").map(String.init) }
        guard let header = lines.first, let row = lines.first(where: { $0.first == vm }) else { return [:] }
        return Dictionary(uniqueKeysWithValues: zip(header, row))
    }

    /// Half of a 64 MiB guest's memory ballooned: the host gives back 32 MiB within 5 s,
    /// the guest's checker passes over the rest, and after deflating every page the
    /// balloon held comes back zero.
    func testBalloonHalfOfMemoryShrinksHostMemoryAndDeflatesToZeroedPages() throws {
        try HostHarness.requireHost()
        let log = Self.dir + "/balloon.log", socket = Self.dir + "/balloon.sock"
        try? FileManager.default.removeItem(atPath: log)
        let vmx = HostHarness.vmx("mem-balloon", guest: "balloon", extra: ["hv.serial": "file:\(log)"])
        var before: UInt64 = 0, after: UInt64 = 0, seconds = 0.0
        var row: [String: String] = [:]
        let run = HostHarness.hvhostRun(["run", "--console", socket, vmx], timeout: 120) { process in
            self.waitForSocket(socket)
            guard self.waitForLog(log, { $0.contains("balloon: check ok pages=") }) else { return }
            before = self.shmemKiB(process.processIdentifier)
            let set = self.console(socket, "mem", "balloon", "mem-balloon", "32m")
            XCTAssertEqual(set.stdout, "mem-balloon: balloon target 8192 pages (32 MiB)\n", set.stderr)
            let start = Date()
            while Date().timeIntervalSince(start) < 10 {
                after = self.shmemKiB(process.processIdentifier)
                if before >= after + 32 * 1024 { break }
                usleep(20_000)
            }
            seconds = Date().timeIntervalSince(start)
            guard self.waitForLog(log, { $0.contains("balloon: size=8192 target=8192\nballoon: check ok") }) else { return }
            row = self.reclaimRow(socket, "mem-balloon")
            _ = self.console(socket, "mem", "balloon", "mem-balloon", "0")
            _ = self.waitForLog(log, { $0.contains("balloon: size=0 target=0\nballoon: check ok pages=") && $0.hasSuffix("zeroed=8192\n") })
            _ = self.console(socket, "poweroff", "mem-balloon")
        }
        XCTAssertFalse(run.timedOut, run.stderr)
        XCTAssertGreaterThanOrEqual(before, 60 * 1024, "the guest filled its memory")
        XCTAssertGreaterThanOrEqual(before, after + 32 * 1024, "RssShmem \(before) KiB -> \(after) KiB")
        XCTAssertLessThan(seconds, 5, "the host memory went back in \(seconds) s")
        XCTAssertEqual(row["MCTLSZ"], "8192")
        XCTAssertEqual(row["BALLOON"], "guest type 1")
        let text = readLog(log)
        XCTAssertTrue(text.contains("balloon: check ok pages=7676 zeroed=0"), text)
        XCTAssertFalse(text.contains("FAILED"), text)
    }

    /// Protocol misuse by the guest: commands before START, PPNs outside RAM, locks of a
    /// locked page, unlocks of an unlocked one, unknown and unnegotiated commands, bad
    /// batches and locks past the target each get the protocol's status (the guest
    /// checks every one and exits 0 only if all matched).
    func testHostileBalloonCommandsGetTheProtocolsErrors() throws {
        try HostHarness.requireHost()
        let log = Self.dir + "/hostile.log", socket = Self.dir + "/hostile.sock"
        try? FileManager.default.removeItem(atPath: log)
        let vmx = HostHarness.vmx("mem-hostile", guest: "balloon", extra: ["hv.serial": "file:\(log)", "hv.cmdline": "hostile=1"])
        var row: [String: String] = [:]
        let run = HostHarness.hvhostRun(["run", "--console", socket, vmx], timeout: 120) { _ in
            self.waitForSocket(socket)
            guard self.waitForLog(log, { $0.contains("balloon: hostile start") }) else { return }
            _ = self.console(socket, "mem", "balloon", "mem-hostile", "8k")
            _ = self.waitForLog(log, { $0.contains("balloon: hostile ok") })
            row = self.reclaimRow(socket, "mem-hostile")
            _ = self.console(socket, "mem", "balloon", "mem-hostile", "0")
        }
        XCTAssertFalse(run.timedOut, run.stderr)
        let text = readLog(log)
        XCTAssertTrue(text.contains("balloon: hostile ok\nEXIT 0"), text)
        XCTAssertTrue(text.contains("balloon: hostile batch-entry-twice status=3"), text)
        XCTAssertEqual(row["MCTLSZ"], "2", "\(row)")
    }

    /// A 64 MiB guest held to 24 MiB (sched.mem.max) and no balloon driver: the memory
    /// scheduler's target stays under the limit, host swap takes the rest (the VM keeps
    /// running) and every byte of the passes after swapping reads back correctly.
    func testVMOverItsLimitSwapsAndReadsBackEveryByte() throws {
        try HostHarness.requireHost()
        let log = Self.dir + "/swap.log", socket = Self.dir + "/swap.sock"
        try? FileManager.default.removeItem(atPath: log)
        let vmx = HostHarness.vmx("mem-swap", guest: "balloon", extra: [
            "hv.serial": "file:\(log)", "hv.cmdline": "passes=100000", "sched.mem.max": "24", "sched.swap.dir": Self.dir,
        ])
        var row: [String: String] = [:]
        var target = Int.max, passesBefore = 0, passesAfter = 0
        func passes() -> Int { self.readLog(log).components(separatedBy: "balloon: pass ").count - 1 }
        let run = HostHarness.hvhostRun(["run", "--console", socket, vmx], timeout: 240) { process in
            self.waitForSocket(socket)
            guard self.waitForLog(log, timeout: 120, { $0.contains("balloon: pass 1 ok") }) else { return }
            // The scheduler ticks once a second: wait until it swapped and the guest faulted pages back.
            let deadline = Date().addingTimeInterval(60)
            while Date() < deadline {
                row = self.reclaimRow(socket, "mem-swap")
                if (UInt64(row["SWIN"] ?? "") ?? 0) > 0 { break }
                usleep(20_000)
            }
            let raw = self.console(socket, "mem", "raw").stdout
            let line = raw.split(separator: "\n").first { $0.hasPrefix("vm=mem-swap ") } ?? ""
            if let field = line.split(separator: " ").first(where: { $0.hasPrefix("target=") }) {
                target = Int(field.dropFirst(7)) ?? Int.max
            }
            // Three whole passes over the pool after the first swap-in: every byte checked.
            passesBefore = passes()
            _ = self.waitForLog(log, { _ in passes() >= passesBefore + 3 })
            passesAfter = passes()
            _ = self.console(socket, "poweroff", "mem-swap")
        }
        XCTAssertFalse(run.timedOut, run.stderr)
        let text = readLog(log)
        XCTAssertGreaterThanOrEqual(passesAfter, passesBefore + 3, text)
        XCTAssertFalse(text.contains("FAILED"), text)
        XCTAssertGreaterThan(UInt64(row["SWOUT"] ?? "") ?? 0, 0, "\(row)")
        XCTAssertGreaterThan(UInt64(row["SWIN"] ?? "") ?? 0, 0, "\(row)")
        XCTAssertLessThanOrEqual(target, 24 * 256, "the scheduler's target honours sched.mem.max")
        XCTAssertTrue(run.stderr.contains("mem-swap: swapping to \(Self.dir)/mem-swap.vswp"), run.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: Self.dir + "/mem-swap.vswp"), "the swap file goes with the VM")
    }

    /// Overcommit: two 64 MiB VMs (min 8 MiB each, shares 2:1) on a 64 MiB host budget,
    /// half their memsize sum. After their overhead (15 MiB each) and reservations the
    /// scheduler divides the rest 2:1 (idle tax off: both guests are equally busy); the
    /// balloon drivers (up to 65 % of memsize) and host swap bring each VM's memory to its
    /// target, and the guests' checkers pass. Page sharing is off: the two guests' pools
    /// are alike and would otherwise leave nothing to split.
    func testOvercommittedPairSplitsMemoryByShares() throws {
        try HostHarness.requireHost()
        let names = ["mem-two", "mem-one"]
        var vmxs: [String] = []
        for (name, shares) in zip(names, ["2000", "1000"]) {
            try? FileManager.default.removeItem(atPath: Self.dir + "/\(name).log")
            vmxs.append(HostHarness.vmx(name, guest: "balloon", extra: [
                "hv.serial": "file:\(Self.dir)/\(name).log", "sched.mem.shares": shares, "sched.mem.min": "8",
                "sched.swap.dir": Self.dir,
            ]))
        }
        let socket = Self.dir + "/overcommit.sock"
        var rows: [String: [String: Int]] = [:]
        var settled = false
        let run = HostHarness.hvhostRun(["run", "--console", socket, "--mem-budget", "64M", "--mem-idle-tax", "0",
                                         "--mem-scan-rate", "0"] + vmxs,
                                        timeout: 120) { _ in
            self.waitForSocket(socket)
            for name in names {
                guard self.waitForLog(Self.dir + "/\(name).log", { $0.contains("balloon: started") }) else { return }
            }
            // Each VM's memory (GRANT) within 10 % of its target, both targets in place.
            let deadline = Date().addingTimeInterval(60)
            while Date() < deadline, !settled {
                usleep(200_000)
                rows = Self.memRaw(self.console(socket, "mem", "raw").stdout)
                settled = names.allSatisfy { name in
                    guard let r = rows[name], let grant = r["grant"], let target = r["target"], target < 64 * 256 else { return false }
                    return abs(Double(grant - target)) <= 0.1 * Double(target)
                }
            }
            for name in names { _ = self.console(socket, "poweroff", name) }
        }
        XCTAssertFalse(run.timedOut, run.stderr)
        XCTAssertTrue(settled, "\(rows)")
        let two = rows["mem-two"] ?? [:], one = rows["mem-one"] ?? [:]
        let twoAbove = Double((two["target"] ?? 0) - 8 * 256), oneAbove = Double((one["target"] ?? 0) - 8 * 256)
        XCTAssertGreaterThan(oneAbove, 0, "\(rows)")
        XCTAssertEqual(twoAbove / max(oneAbove, 1), 2, accuracy: 0.2, "memory above the reservations: \(rows)")
        print("overcommit: mem-two target \(two["target"] ?? 0) grant \(two["grant"] ?? 0) balloon \(two["mctlsz"] ?? 0) swap \(two["swcur"] ?? 0); mem-one target \(one["target"] ?? 0) grant \(one["grant"] ?? 0) balloon \(one["mctlsz"] ?? 0) swap \(one["swcur"] ?? 0) (pages)")
        XCTAssertGreaterThanOrEqual(two["grant"] ?? 0, 8 * 256)
        XCTAssertGreaterThanOrEqual(one["grant"] ?? 0, 8 * 256)
        for name in names {
            let text = readLog(Self.dir + "/\(name).log")
            XCTAssertTrue(text.contains("balloon: check ok"), text)
            XCTAssertFalse(text.contains("FAILED"), text)
        }
    }

    /// `mem raw`'s VM lines: name → numeric fields (pages).
    private static func memRaw(_ text: String) -> [String: [String: Int]] {
        var out: [String: [String: Int]] = [:]
        for line in text.split(separator: "\n") where line.hasPrefix("vm=") {
            var fields: [String: Int] = [:]
            var name = ""
            for word in line.split(separator: " ") {
                let kv = word.split(separator: "=", maxSplits: 1).map(String.init)
                guard kv.count == 2 else { continue }
                if kv[0] == "vm" { name = kv[1] } else if let n = Int(kv[1]) { fields[kv[0]] = n }
            }
            out[name] = fields
        }
        return out
    }

    /// Ballooned and swapped pages across suspend and resume: the suspend file carries
    /// the swapped pages' bytes and the balloon's locked pages, so after `hvhost resume`
    /// the checker passes and deflating returns exactly the ballooned pages, zeroed.
    func testBalloonedAndSwappedPagesSurviveSuspendAndResume() throws {
        try HostHarness.requireHost()
        let log = Self.dir + "/susp.log", file = Self.dir + "/susp.hvsusp"
        let socket = Self.dir + "/susp-1.sock", socket2 = Self.dir + "/susp-2.sock"
        for p in [log, file] { try? FileManager.default.removeItem(atPath: p) }
        let vmx = HostHarness.vmx("mem-susp", guest: "balloon", extra: ["hv.serial": "file:\(log)", "sched.swap.dir": Self.dir])
        var swapped = HostHarness.Result(status: -1, stdout: "", stderr: "", timedOut: false)
        let first = HostHarness.hvhostRun(["run", "--console", socket, vmx], timeout: 120) { _ in
            self.waitForSocket(socket)
            guard self.waitForLog(log, { $0.contains("balloon: check ok pages=") }) else { return }
            _ = self.console(socket, "mem", "balloon", "mem-susp", "16m")
            guard self.waitForLog(log, { $0.contains("balloon: size=4096 target=4096\nballoon: check ok") }) else { return }
            swapped = self.console(socket, "mem", "swapout", "mem-susp", "16m")
            _ = self.console(socket, "suspend", "mem-susp", file)
        }
        XCTAssertFalse(first.timedOut, first.stderr)
        XCTAssertEqual(swapped.stdout, "mem-susp: swapped out 4096 pages\n", swapped.stderr)
        var row: [String: String] = [:]
        let second = HostHarness.hvhostRun(["resume", "--console", socket2, file], timeout: 120) { _ in
            self.waitForSocket(socket2)
            // The console answers before the resumed VM is on it.
            for _ in 0..<500 where row.isEmpty {
                row = self.reclaimRow(socket2, "mem-susp")
                if row.isEmpty { usleep(20_000) }
            }
            _ = self.console(socket2, "mem", "balloon", "mem-susp", "0")
            _ = self.waitForLog(log, { $0.contains("balloon: size=0 target=0\nballoon: check ok pages=15868 zeroed=4096") })
            _ = self.console(socket2, "poweroff", "mem-susp")
        }
        XCTAssertFalse(second.timedOut, second.stderr)
        XCTAssertEqual(second.status, 0, second.stderr)
        XCTAssertEqual(row["MCTLSZ"], "4096", "\(row)")
        XCTAssertFalse(readLog(log).contains("FAILED"), readLog(log))
    }

    /// The balloon takes pages that are in swap (the swap forgets them, on the vCPU
    /// thread), and the checker still passes; deflating returns them zeroed.
    func testBalloonTakesSwappedPages() throws {
        try HostHarness.requireHost()
        let log = Self.dir + "/both.log", socket = Self.dir + "/both.sock"
        try? FileManager.default.removeItem(atPath: log)
        let vmx = HostHarness.vmx("mem-both", guest: "balloon", extra: ["hv.serial": "file:\(log)", "sched.swap.dir": Self.dir])
        var row: [String: String] = [:]
        let run = HostHarness.hvhostRun(["run", "--console", socket, vmx], timeout: 120) { _ in
            self.waitForSocket(socket)
            guard self.waitForLog(log, { $0.contains("balloon: check ok pages=") }) else { return }
            _ = self.console(socket, "mem", "swapout", "mem-both", "60m")
            _ = self.console(socket, "mem", "balloon", "mem-both", "32m")
            guard self.waitForLog(log, { $0.contains("balloon: size=8192 target=8192\nballoon: check ok pages=7676") }) else { return }
            row = self.reclaimRow(socket, "mem-both")
            _ = self.console(socket, "mem", "balloon", "mem-both", "0")
            _ = self.waitForLog(log, { $0.contains("balloon: size=0 target=0\nballoon: check ok pages=15868 zeroed=8192") })
            _ = self.console(socket, "poweroff", "mem-both")
        }
        XCTAssertFalse(run.timedOut, run.stderr)
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertEqual(row["SWOUT"], "15360", "\(row)")
        // Every swapped page either came back (the checker read it) or went to the balloon.
        let swin = Int(row["SWIN"] ?? "") ?? 0, swcur = Int(row["SWCUR"] ?? "") ?? -1
        XCTAssertLessThan(swin + swcur, 15360, "some swapped pages went to the balloon: \(row)")
        XCTAssertFalse(readLog(log).contains("FAILED"), readLog(log))
    }
}
