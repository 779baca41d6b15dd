import Foundation
import XCTest

/// Record and replay: a live 1:2:1 run of three `burn` guests on one pCPU slot is
/// recorded (`--sched-record`) and replayed in the simulator (`sched-sim --replay`). The
/// replay under the recorded policy gives each VM the same part of the CPU time as the
/// live run did, within 1 %; under roundrobin the same workload gets equal parts.
final class SchedReplayTests: XCTestCase {
    /// VM → (live part, replay part) from the side-by-side table `sched-sim --replay` prints.
    static func parts(_ output: String, vms: [String]) -> [String: (live: Double, replay: Double)] {
        var out: [String: (Double, Double)] = [:]
        for line in output.split(separator: "\n") {
            let f = line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
            guard f.count == 6, vms.contains(f[0]), let live = Double(f[3]), let replay = Double(f[4]) else { continue }
            out[f[0]] = (live, replay)
        }
        return out
    }

    func testLiveOneToTwoToOneReplaysWithinOnePercent() throws {
        let env = try SchedulingEnv.require(policies: ["propshare", "roundrobin"])
        let names = ["rec-a", "rec-b", "rec-c"]
        let shares = ["rec-a": "1000", "rec-b": "2000", "rec-c": "1000"]
        let vms = names.map { env.burn($0, ["sched.cpu.shares": shares[$0]!], seconds: 8) }
        let path = env.dir + "/live-1-2-1.rec"
        try? FileManager.default.removeItem(atPath: path)
        let r = env.run(["--pcpus", "1", "--pool", "default:0:propshare", "--sched-record", path], vms, powerOff: false) { run in
            try run.waitForBurnLines(names)
        }
        XCTAssertEqual(r.status, 0, r.stderr)
        for vm in names { XCTAssertTrue(env.log(vm).contains("burn: done"), "\(vm): \(env.log(vm))") }
        XCTAssertTrue(r.stderr.contains("scheduling events recorded in \(path)"), r.stderr)
        let header = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").prefix(12).joined(separator: "\n")
        XCTAssertTrue(header.hasPrefix("hvsched-record 1\n"), header)
        XCTAssertTrue(header.contains("rec-b pool 0 vcpus 1 shares 2000 min 0 max 100"), header)
        XCTAssertTrue(header.contains("pool 0 default slots 0 policy propshare"), header)

        let same = HostHarness.hvhostRun(["sched-sim"] + env.pluginArgs + ["--replay", path, "--policy", "propshare"], timeout: 120)
        XCTAssertEqual(same.status, 0, same.stderr)
        print(same.stdout)
        let p = Self.parts(same.stdout, vms: names)
        XCTAssertEqual(p.count, 3, same.stdout)
        for (vm, want) in [("rec-a", 0.25), ("rec-b", 0.5), ("rec-c", 0.25)] {
            let got = try XCTUnwrap(p[vm])
            XCTAssertEqual(got.live, want, accuracy: want * 0.03, "\(vm): live part \(got.live), entitled \(want)")
            XCTAssertLessThanOrEqual(abs(got.replay - got.live) / got.live, 0.01,
                                     "\(vm): replay part \(got.replay) vs live \(got.live) (more than 1 % apart)")
        }

        let other = HostHarness.hvhostRun(["sched-sim"] + env.pluginArgs + ["--replay", path, "--policy", "roundrobin"], timeout: 120)
        XCTAssertEqual(other.status, 0, other.stderr)
        print(other.stdout)
        let q = Self.parts(other.stdout, vms: names)
        XCTAssertEqual(q.count, 3, other.stdout)
        for vm in names {
            let got = try XCTUnwrap(q[vm]).replay
            XCTAssertEqual(got, 1.0 / 3, accuracy: 0.01, "\(vm): roundrobin replay part \(got), equal shares expected")
        }
    }
}
