import Foundation
import XCTest

/// `--user`: after /dev/kvm, the VM's files and the console are open, every thread of
/// the host (vCPU threads included, under their seccomp filter) runs as that user and
/// the VM keeps running.
final class PrivilegeDropTests: XCTestCase {
    /// The uid lines of the host's threads.
    private func uids(of pid: Int32) -> Set<String> {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        var out = Set<String>()
        for t in tasks {
            // KVM's own worker (kvm-nx-lpage-recovery) is a kernel task listed here; it
            // runs no user code and takes whatever credentials it was created with.
            let comm = (try? String(contentsOfFile: "/proc/\(pid)/task/\(t)/comm", encoding: .utf8)) ?? ""
            if comm.hasPrefix("kvm-") { continue }
            guard let status = try? String(contentsOfFile: "/proc/\(pid)/task/\(t)/status", encoding: .utf8),
                  let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Uid:") }) else { continue }
            out.insert(line.split(whereSeparator: { $0 == "\t" || $0 == " " }).dropFirst().joined(separator: " "))
        }
        return out
    }

    func testTheHostGoesOnAsTheUserItIsGiven() throws {
        guard getuid() == 0 else { throw XCTSkip("--user needs the test to run as root") }
        guard let nobody = getpwnam("nobody")?.pointee.pw_uid else { throw XCTSkip("no user 'nobody' on this host") }
        let env = try SchedulingEnv.require(policies: [])
        let vm = env.burn("as-nobody")
        var seen = Set<String>()
        let r = env.run(["--user", "nobody"], [vm]) { run in
            try run.waitForBurnLines(["as-nobody"])
            let deadline = Date().addingTimeInterval(10)
            repeat {
                seen = self.uids(of: run.pid)
                Thread.sleep(forTimeInterval: 0.05)
            } while seen != ["\(nobody) \(nobody) \(nobody) \(nobody)"] && Date() < deadline
            let before = run.units("as-nobody") ?? 0
            let progress = Date().addingTimeInterval(10)
            while (run.units("as-nobody") ?? 0) <= before + 1 && Date() < progress { Thread.sleep(forTimeInterval: 0.1) }
            XCTAssertGreaterThan(run.units("as-nobody") ?? 0, before + 1, "the VM runs on after the drop")
        }
        XCTAssertEqual(seen, ["\(nobody) \(nobody) \(nobody) \(nobody)"], "every thread's real, effective, saved and fs uid")
        XCTAssertFalse(r.timedOut, r.stderr)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("running as user 'nobody' (uid \(nobody)"), r.stderr)
    }

    func testAnUnknownUserStopsTheHost() throws {
        guard getuid() == 0 else { throw XCTSkip("--user needs the test to run as root") }
        let env = try SchedulingEnv.require(policies: [])
        let r = HostHarness.hvhostRun(["run", "--user", "no-such-user-hv", env.burn("no-user", seconds: 30)], timeout: 60)
        XCTAssertEqual(r.status, 2, r.stderr)
        XCTAssertTrue(r.stderr.contains("--user no-such-user-hv: no such user; powering off"), r.stderr)
    }
}
