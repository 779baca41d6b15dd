import Foundation
import XCTest

/// The mpt-disk guest drives the LSILogic plugin (`scsi0.virtualDev = "lsilogic"`) on
/// two targets; afterwards each image file holds exactly the guest's pattern, and
/// nothing past it. The same guest against QEMU's mptsas1068 checks the driver.
final class LSILogicDiskTests: XCTestCase {
    /// guests/mpt-disk's pattern: word w (bytes 8w..8w+7, little endian) of target t.
    static func pattern(seed: UInt64, target: UInt64, word: UInt64) -> UInt64 {
        var z = word &+ (target << 40) &+ seed &* 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Fails unless `path` holds the pattern for its first `mib` MiB and zeros after.
    static func assertImage(_ path: String, target: UInt64, seed: UInt64, mib: Int,
                            file: StaticString = #filePath, line: UInt = #line) {
        guard let data = FileManager.default.contents(atPath: path) else {
            XCTFail("cannot read \(path)", file: file, line: line)
            return
        }
        let written = mib << 20
        data.withUnsafeBytes { raw in
            for w in 0..<(written / 8) {
                let v = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: w * 8, as: UInt64.self))
                if v != pattern(seed: seed, target: target, word: UInt64(w)) {
                    XCTFail("\(path): byte \(w * 8) is not the guest's pattern", file: file, line: line)
                    return
                }
            }
            if let i = raw[written...].firstIndex(where: { $0 != 0 }) {
                XCTFail("\(path): byte \(i) beyond what the guest wrote is not zero", file: file, line: line)
            }
        }
    }

    static func makeImages(_ name: String, sizeMiB: Int) -> [String] {
        (0..<2).map { t in
            let path = HostHarness.workDir + "/\(name)-t\(t).img"
            try? FileManager.default.removeItem(atPath: path)
            FileManager.default.createFile(atPath: path, contents: nil)
            truncate(path, off_t(sizeMiB) << 20)
            return path
        }
    }

    func testGuestWritesAndVerifies64MiBOnTwoTargets() throws {
        try HostHarness.requireHost()
        let images = Self.makeImages("lsi", sizeMiB: 72)
        let vmx = HostHarness.vmx("lsi", guest: "mpt-disk", extra: [
            "hv.cmdline": "mib=64 seed=7",
            "scsi0.present": "TRUE", "scsi0.virtualDev": "lsilogic",
            "scsi0:0.present": "TRUE", "scsi0:0.fileName": images[0],
            "scsi0:1.present": "TRUE", "scsi0:1.fileName": images[1],
        ])
        let r = HostHarness.hvhostRun(["run", vmx], timeout: 120)
        XCTAssertEqual(r.status, 1, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("mpt: found 1000:0030"), r.stdout)
        XCTAssertTrue(r.stdout.contains("mpt: ioc facts msgversion 0x0102"), r.stdout)
        XCTAssertTrue(r.stdout.contains("mpt: target 0 present \"VMware  \""), r.stdout)
        XCTAssertTrue(r.stdout.contains("mpt: target 0 ok 64 MiB"), r.stdout)
        XCTAssertTrue(r.stdout.contains("mpt: target 1 ok 64 MiB"), r.stdout)
        XCTAssertTrue(r.stdout.contains("mpt: done 2 disks"), r.stdout)
        for (t, path) in images.enumerated() { Self.assertImage(path, target: UInt64(t), seed: 7, mib: 64) }
    }

    func testGuestFindsNoDiskOnAnEmptyBus() throws {
        try HostHarness.requireHost()
        let vmx = HostHarness.vmx("lsi-empty", guest: "mpt-disk", extra: [
            "scsi0.present": "TRUE", "scsi0.virtualDev": "lsilogic",
        ])
        let r = HostHarness.hvhostRun(["run", vmx])
        XCTAssertEqual(r.status, (2 << 1) | 1, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("mpt: operational"), r.stdout)
        XCTAssertTrue(r.stdout.contains("mpt: done 0 disks"), r.stdout)
    }

    /// QEMU has no 53C1030, only the SAS1068 (1000:0054) with the same MPI message
    /// protocol. What differs, and what the guest accepts: the device id, MsgVersion
    /// 0x0105, a SAS port (type 0x30, initiator id 8, 8 devices, so targets 0-7), a
    /// 512-byte request frame, and no-data commands need an SGL element (the guest
    /// sends one empty LAST|EOB|EOL element, as mptscsih does).
    func testSameGuestAgainstQEMUMptsas1068() throws {
        let qemu = try HostHarness.requireQEMU()
        let images = Self.makeImages("qemu-mpt", sizeMiB: 72)
        var args = ["-enable-kvm", "-M", "pc", "-m", "64", "-cpu", "max,arch-capabilities=off",
                    "-display", "none", "-no-reboot", "-nodefaults", "-serial", "stdio",
                    "-device", "isa-debug-exit,iobase=0x501,iosize=2", "-kernel", HostHarness.guest("mpt-disk"),
                    "-append", "mib=64 seed=9 targets=8", "-device", "mptsas1068,id=hba"]
        for (t, path) in images.enumerated() {
            args += ["-drive", "file=\(path),if=none,id=d\(t),format=raw,cache=writeback",
                     "-device", "scsi-hd,drive=d\(t),bus=hba.0,scsi-id=\(t)"]
        }
        let r = HostHarness.run(qemu, args, timeout: 120)
        XCTAssertEqual(r.status, 1, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("mpt: found 1000:0054"), r.stdout)
        XCTAssertTrue(r.stdout.contains("mpt: target 0 ok 64 MiB"), r.stdout)
        XCTAssertTrue(r.stdout.contains("mpt: target 1 ok 64 MiB"), r.stdout)
        XCTAssertTrue(r.stdout.contains("mpt: done 2 disks"), r.stdout)
        for (t, path) in images.enumerated() { Self.assertImage(path, target: UInt64(t), seed: 9, mib: 64) }
    }

    /// The adapter's state survives suspend and resume while the guest writes and verifies
    /// in a loop: the passes go on from where they were, without a new boot.
    func testSuspendAndResumeInTheMiddleOfDiskIO() throws {
        try HostHarness.requireHost()
        let dir = HostHarness.workDir + "/lsi-suspend"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let log = dir + "/serial.log", file = dir + "/mpt.hvsusp"
        let socket = dir + "/1.sock", socket2 = dir + "/2.sock"
        let image = Self.makeImages("lsi-susp", sizeMiB: 16)[0]
        let vmx = HostHarness.vmx("lsi-susp", guest: "mpt-disk", extra: [
            "hv.cmdline": "mib=8 seed=3 passes=0 targets=1", "hv.serial": "file:\(log)",
            "scsi0.present": "TRUE", "scsi0.virtualDev": "lsilogic",
            "scsi0:0.present": "TRUE", "scsi0:0.fileName": image,
        ])
        func passes() -> [Int] {
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            // Whole lines only: the log may end in the middle of one.
            return text.split(separator: "\n").compactMap { line in
                let words = line.split(separator: " ")
                guard line.hasPrefix("mpt: target 0 pass "), words.count == 6, words[5] == "ok" else { return nil }
                return Int(words[4])
            }
        }
        func waitFor(_ count: Int) -> Bool {
            let deadline = Date().addingTimeInterval(60)
            while Date() < deadline {
                if passes().count >= count { return true }
                usleep(10_000)
            }
            XCTFail("timed out waiting for \(count) passes: \(passes())")
            return false
        }
        func waitForSocket(_ path: String) { for _ in 0..<500 where !FileManager.default.fileExists(atPath: path) { usleep(10_000) } }

        var suspend = HostHarness.Result(status: -1, stdout: "", stderr: "", timedOut: false)
        var state = ""
        let first = HostHarness.hvhostRun(["run", "--console", socket, vmx], timeout: 90) { _ in
            waitForSocket(socket)
            guard waitFor(2) else { return }
            let reply = HostHarness.hvhostRun(["console", "--socket", socket, "device", "lsi-susp", "scsi0", "state"], timeout: 30)
            state = reply.stdout + reply.stderr
            suspend = HostHarness.hvhostRun(["console", "--socket", socket, "suspend", "lsi-susp", file], timeout: 60)
        }
        XCTAssertEqual(suspend.status, 0, suspend.stdout + suspend.stderr)
        XCTAssertEqual(first.status, 0, first.stderr)
        XCTAssertTrue(state.hasPrefix("ioc operational whoInit 4 handshake idle"), "the adapter's console state:\n" + state)
        let before = passes()
        let second = HostHarness.hvhostRun(["resume", "--console", socket2, file], timeout: 90) { _ in
            waitForSocket(socket2)
            _ = waitFor(before.count + 3)
            _ = HostHarness.hvhostRun(["console", "--socket", socket2, "poweroff", "lsi-susp"], timeout: 60)
        }
        XCTAssertEqual(second.status, 0, second.stderr)
        XCTAssertTrue(second.stderr.contains("lsi-susp: resumed from \(file)"), second.stderr)
        let after = passes()
        XCTAssertGreaterThanOrEqual(after.count, before.count + 3)
        XCTAssertEqual(after, Array(1...after.count), "passes continue without a restart: \(after)")
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        XCTAssertEqual(text.components(separatedBy: "rt: entry=").count - 1, 1, "one boot:\n\(text)")
        Self.assertImage(image, target: 0, seed: 3, mib: 8)
    }
}
