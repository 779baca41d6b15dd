import Foundation
import XCTest

/// Every guest reset rebuilds the VM: KVM VM and vCPUs, guest RAM, chipset, serial sink,
/// scheduler registration and plugin devices (here a Vlance NIC, thread-safe, with a
/// poll timer). A host that gives all of it back stays flat over a thousand resets.
final class GuestResetLeakTests: XCTestCase {
    private struct Sample { var rss: Int; var fds: Int }

    private func sample(_ pid: Int32) -> Sample? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
              let kib = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? ""),
              let fds = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd") else { return nil }
        return Sample(rss: kib, fds: fds.count)
    }

    /// The smallest RSS and descriptor count seen while the reset count is in `window`
    /// (the minimum: a sample taken mid-rebuild includes the VM being built).
    private func lowest(_ pid: Int32, log: String, window: Range<Int>, deadline: Date) -> Sample? {
        var low: Sample?
        while Date() < deadline {
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            let resets = text.components(separatedBy: "reboot: requesting reset").count - 1
            if resets >= window.upperBound { return low }
            if resets >= window.lowerBound, let s = sample(pid) {
                low = Sample(rss: min(low?.rss ?? .max, s.rss), fds: min(low?.fds ?? .max, s.fds))
            }
            usleep(20_000)
        }
        return nil
    }

    func testAThousandGuestResetsLeakNothing() throws {
        try HostHarness.requireHost()
        let hvhostDir = (HostHarness.hvhost as NSString).deletingLastPathComponent
        guard FileManager.default.fileExists(atPath: hvhostDir + "/libVlance.so") else {
            XCTFail("libVlance.so is not built next to hvhost: run `swift build`")
            return
        }
        let log = HostHarness.workDir + "/reset-leak.log"
        try? FileManager.default.removeItem(atPath: log)
        let vmx = HostHarness.vmx("reset-leak", guest: "reboot", extra: [
            "hv.serial": "file:\(log)", "ethernet0.present": "TRUE", "ethernet0.virtualDev": "vlance",
            "ethernet0.networkName": "reset-leak", "hv.resetLimit": "off"])
        var early: Sample?, late: Sample?
        let started = Date()
        let r = HostHarness.hvhostRun(["run", vmx], timeout: 150) { p in
            let deadline = Date().addingTimeInterval(120)
            early = self.lowest(p.processIdentifier, log: log, window: 100..<150, deadline: deadline)
            late = self.lowest(p.processIdentifier, log: log, window: 1000..<1050, deadline: deadline)
            kill(p.processIdentifier, SIGTERM)
        }
        let elapsed = Date().timeIntervalSince(started)
        XCTAssertFalse(r.timedOut)
        XCTAssertEqual(r.status, 0, r.stderr.suffix(2000).description)
        let e = try XCTUnwrap(early, "never reached 150 resets"), l = try XCTUnwrap(late, "never reached 1050 resets in 120 s")
        print("guest resets: RSS \(e.rss) KiB after 100, \(l.rss) KiB after 1000; \(e.fds) / \(l.fds) descriptors; \(Int(elapsed)) s")
        XCTAssertLessThanOrEqual(l.rss - e.rss, 512, "RSS grew by \(l.rss - e.rss) KiB over 900 guest resets")
        XCTAssertLessThanOrEqual(l.fds, e.fds, "descriptors leaked over 900 guest resets")
        XCTAssertTrue(r.stderr.contains("reset-leak: reset by the guest; booting again (reset 1000)"))
    }
}
