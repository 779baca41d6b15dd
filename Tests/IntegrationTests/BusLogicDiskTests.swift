import Foundation
import XCTest

/// The `buslogic-disk` guest (guests/buslogic-disk: the Linux BusLogic probe order, 32-bit
/// mailboxes and CCBs) on the BusLogic plugin and the VMkernel's SCSI layer, with flat
/// image files as the disks.
final class BusLogicDiskTests: XCTestCase {
    /// The guest's pattern: the little-endian word at byte offset o of target t on
    /// adapter a is patternWord(16 * a + t, o / 8).
    static func patternWord(_ target: UInt64, _ index: UInt64) -> UInt64 {
        var z = index &* 0x9E37_79B9_7F4A_7C15 &+ (target << 56) &+ 0x42
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    private func requireBusLogic() throws {
        try HostHarness.requireHost()
        let dir = (HostHarness.hvhost as NSString).deletingLastPathComponent
        guard FileManager.default.fileExists(atPath: dir + "/libBusLogic.so") else {
            XCTFail("libBusLogic.so is not built next to hvhost (\(dir)): run `swift build`")
            throw XCTSkip("no BusLogic plugin")
        }
    }

    /// A zero-filled (sparse) image of `mib` MiB.
    private func makeImage(_ name: String, mib: Int) throws -> String {
        let path = HostHarness.workDir + "/\(name)"
        try? FileManager.default.removeItem(atPath: path)
        guard FileManager.default.createFile(atPath: path, contents: nil), truncate(path, off_t(mib) << 20) == 0 else {
            throw XCTSkip("cannot create \(path)")
        }
        return path
    }

    /// Checks that `path` holds the guest's pattern for `target` in its first `mib` MiB
    /// and zeros after it; nil when it does, else where it differs.
    private func checkImage(_ path: String, target: UInt64, mib: Int) throws -> String? {
        let handle = try XCTUnwrap(FileHandle(forReadingAtPath: path))
        defer { try? handle.close() }
        var offset: UInt64 = 0
        let written = UInt64(mib) << 20
        while true {
            let data = handle.readData(ofLength: 1 << 20)
            if data.isEmpty { break }
            let mismatch: String? = data.withUnsafeBytes { raw in
                let words = raw.bindMemory(to: UInt64.self)
                for i in 0..<words.count {
                    let at = offset + UInt64(i) * 8
                    let want = at < written ? Self.patternWord(target, at / 8) : 0
                    let got = UInt64(littleEndian: words[i])
                    if got != want { return "byte \(at): 0x\(String(got, radix: 16)), want 0x\(String(want, radix: 16))" }
                }
                return nil
            }
            if let mismatch { return mismatch }
            offset += UInt64(data.count)
        }
        return nil
    }

    /// The issue's acceptance run: 64 MiB of patterns written and read back on two
    /// targets of one adapter (a narrow and a wide id) with 8 CCBs in flight, and on a
    /// second adapter of the same VM; the image files hold exactly those bytes (and
    /// nothing past them).
    func testGuestWritesAndVerifies64MiBOnTwoTargetsAndASecondAdapter() throws {
        try requireBusLogic()
        let mib = 64
        let disks = [(adapter: 0, target: 0), (adapter: 0, target: 9), (adapter: 1, target: 3)].map {
            (adapter: $0.adapter, target: $0.target, path: try? makeImage("buslogic-\($0.adapter)-\($0.target).img", mib: mib + 8))
        }
        let log = HostHarness.workDir + "/buslogic-disk.log"
        try? FileManager.default.removeItem(atPath: log)
        var keys = ["memsize": "64", "hv.cmdline": "mib=\(mib) qd=8", "hv.serial": "file:\(log)",
                    "scsi0.present": "TRUE", "scsi0.virtualDev": "buslogic",
                    "scsi1.present": "TRUE", "scsi1.virtualDev": "buslogic"]
        for d in disks {
            keys["scsi\(d.adapter):\(d.target).present"] = "TRUE"
            keys["scsi\(d.adapter):\(d.target).fileName"] = try XCTUnwrap(d.path)
        }
        let vmx = HostHarness.vmx("buslogic-disk", guest: "buslogic-disk", extra: keys)
        let start = Date()
        let r = HostHarness.hvhostRun(["run", vmx], timeout: 240)
        let seconds = Date().timeIntervalSince(start)
        let serial = (try? String(contentsOfFile: log, encoding: .utf8)) ?? "(no serial log)"
        XCTAssertFalse(r.timedOut, serial + r.stderr)
        XCTAssertEqual(r.status, 1, "guest failed:\n\(serial)\n\(r.stderr)")
        for line in ["buslogic0: isa port code 0 (0x330 decoded, after disable silent)",
                     "buslogic0: model BT-958 firmware 5.07B id 7 bus 'E' sg limit 1024 wide 1",
                     "buslogic0: mailboxes 211 at 0x408000, target devices 0x0201",
                     "buslogic1: isa port code 6 (0x330 silent, after disable silent)",
                     "buslogic1: mailboxes 211 at 0x409000, target devices 0x0008",
                     "buslogic0: INQUIRY found targets 0x0201", "buslogic1: INQUIRY found targets 0x0008",
                     "buslogic0: target 0 wrote \(mib) MiB (8 in flight)", "buslogic0: target 0 verified \(mib) MiB",
                     "buslogic0: target 9 verified \(mib) MiB", "buslogic1: target 3 verified \(mib) MiB",
                     "buslogic: all 3 targets ok on 2 adapters (interrupt bits seen with completions 0x81)"] {
            XCTAssertTrue(serial.contains(line + "\n"), "missing \"\(line)\" in:\n\(serial)")
        }
        XCTAssertTrue(serial.range(of: #"buslogic0: interrupt \d+ seen, register 0x84"#, options: .regularExpression) != nil,
                      serial)
        for d in disks {
            let path = try XCTUnwrap(d.path)
            XCTAssertNil(try checkImage(path, target: UInt64(16 * d.adapter + d.target), mib: mib),
                         "scsi\(d.adapter):\(d.target) image")
        }
        print("buslogic-disk: \(disks.count * 2 * mib) MiB moved (written and read back) in \(String(format: "%.1f", seconds)) s")
    }

    /// Suspend (`console suspend`) between writing and reading back the first disk, and
    /// `hvhost resume`: the adapter comes back with its mailboxes and round-robin
    /// positions, and the guest reads and verifies everything without booting again.
    func testSuspendAndResumeBetweenWriteAndReadBack() throws {
        try requireBusLogic()
        let mib = 16
        let disk0 = try makeImage("buslogic-susp-0.img", mib: mib)
        let disk1 = try makeImage("buslogic-susp-1.img", mib: mib)
        let log = HostHarness.workDir + "/buslogic-susp.log"
        let file = HostHarness.workDir + "/buslogic-susp.hvsusp"
        let socket = HostHarness.workDir + "/buslogic-susp.sock"
        for path in [log, file, socket] { try? FileManager.default.removeItem(atPath: path) }
        let vmx = HostHarness.vmx("buslogic-susp", guest: "buslogic-disk", extra: [
            "hv.cmdline": "mib=\(mib) qd=4 hold=10", "hv.serial": "file:\(log)",
            "scsi0.present": "TRUE", "scsi0:0.present": "TRUE", "scsi0:0.fileName": disk0,
            "scsi0:1.present": "TRUE", "scsi0:1.fileName": disk1,
        ])
        func serial() -> String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
        var suspend = HostHarness.Result(status: -1, stdout: "", stderr: "", timedOut: false)
        var sawHold = false, state = ""
        let first = HostHarness.hvhostRun(["run", "--console", socket, vmx], timeout: 120) { _ in
            for _ in 0..<500 where !FileManager.default.fileExists(atPath: socket) { usleep(10_000) }
            let deadline = Date().addingTimeInterval(60)
            while Date() < deadline && !sawHold {
                sawHold = serial().contains("buslogic0: target 0 holding 10 s\n")
                if !sawHold { usleep(10_000) }
            }
            guard sawHold else { return }
            state = HostHarness.hvhostRun(["console", "--socket", socket, "device", "buslogic-susp", "scsi0", "state"], timeout: 30).stdout
            suspend = HostHarness.hvhostRun(["console", "--socket", socket, "suspend", "buslogic-susp", file], timeout: 60)
        }
        XCTAssertTrue(sawHold, "the guest never held:\n\(serial())\n\(first.stderr)")
        XCTAssertFalse(first.timedOut, first.stderr)
        // With its only VM suspended the host exits; the console's reply still gets out.
        XCTAssertEqual(suspend.status, 0, suspend.stdout + suspend.stderr)
        XCTAssertTrue(suspend.stdout.hasPrefix("buslogic-susp: suspended to \(file)"), suspend.stdout + suspend.stderr)
        XCTAssertTrue(first.stderr.contains("buslogic-susp: suspended to \(file)"), first.stderr)
        XCTAssertTrue(state.contains(" enabled mailboxes ") && !state.contains("mailboxes none") && state.contains(" inFlight "),
                      "the adapter's console state:\n" + state)
        XCTAssertFalse(serial().contains("verified"), "suspended before reading back:\n\(serial())")

        let second = HostHarness.hvhostRun(["resume", file], timeout: 120)
        let text = serial()
        XCTAssertFalse(second.timedOut, second.stderr)
        XCTAssertTrue(second.stderr.contains("buslogic-susp: resumed from \(file)"), second.stderr)
        XCTAssertTrue(text.contains("buslogic0: target 0 verified \(mib) MiB\n"), text)
        XCTAssertTrue(text.contains("buslogic: all 2 targets ok on 1 adapter"), text)
        XCTAssertTrue(text.contains("EXIT 0"), text)
        XCTAssertEqual(text.components(separatedBy: "rt: entry=").count - 1, 1, "the guest booted again:\n\(text)")
        XCTAssertNil(try checkImage(disk0, target: 0, mib: mib), "target 0 image")
        XCTAssertNil(try checkImage(disk1, target: 1, mib: mib), "target 1 image")
    }
}
