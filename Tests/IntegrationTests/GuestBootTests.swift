import XCTest

/// Boots each test guest under hvhost and checks its serial output and exit status.
final class GuestBootTests: XCTestCase {
    func testHelloPrintsFromKernelAndRing3() throws {
        try HostHarness.requireHost()
        let vmx = HostHarness.vmx("hello", guest: "hello", extra: ["hv.cmdline": "quiet test=1"])
        let r = HostHarness.hvhostRun(["run", vmx])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertTrue(r.stdout.contains("Hello from the hvhost test guest"), r.stdout)
        XCTAssertTrue(r.stdout.contains("hello from ring 3"), r.stdout)
        XCTAssertTrue(r.stdout.contains("memory: 64 MiB"), r.stdout)
        XCTAssertTrue(r.stdout.contains("cmdline: quiet test=1"), r.stdout)
        XCTAssertTrue(r.stdout.contains("rt: entry=pvh32"), r.stdout)
    }

    func testSixtyFourBitEntry() throws {
        try HostHarness.requireHost()
        let vmx = HostHarness.vmx("hello64", guest: "hello", extra: ["hv.boot": "elf64", "memsize": "128"])
        let r = HostHarness.hvhostRun(["run", vmx])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertTrue(r.stdout.contains("rt: entry=long64"), r.stdout)
        XCTAssertTrue(r.stdout.contains("memory: 128 MiB"), r.stdout)
    }

    func testPCIScanSeesHostBridgeISABridgeAndPluginDevice() throws {
        try HostHarness.requireHost()
        let vmx = HostHarness.vmx("pciscan", guest: "pci-scan",
                                  extra: ["hv.device0.present": "TRUE", "hv.device0.model": "edu"])
        let r = HostHarness.hvhostRun(["run", "--plugin-path", HostHarness.pluginDir, vmx])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertTrue(r.stdout.contains("pci 00:00.0 8086:7190 class 0600"), r.stdout)
        XCTAssertTrue(r.stdout.contains("pci 00:01.0 8086:7110 class 0601"), r.stdout)
        XCTAssertTrue(r.stdout.contains("pci 00:02.0 1234:11e8 class 00ff bar0=0xe0000000 (mem32, size 0x100000) irq 10 pin 1"), r.stdout)
        XCTAssertTrue(r.stdout.contains("pci: 3 functions"), r.stdout)
    }

    func testTimerInterruptsMatchTheRTC() throws {
        try HostHarness.requireHost()
        let r = HostHarness.hvhostRun(["run", HostHarness.vmx("timer", guest: "timer")])
        XCTAssertEqual(r.status, 1, "guest judged the tick counts wrong:\n\(r.stdout)\n\(r.stderr)")
        let counts = r.stdout.split(separator: "\n").compactMap { line -> Int? in
            guard line.hasPrefix("pit: ") || line.hasPrefix("lapic: ") else { return nil }
            return Int(line.split(separator: " ")[1])
        }
        XCTAssertEqual(counts.count, 2, r.stdout)
        for c in counts { XCTAssertTrue((160...240).contains(c), "\(c) ticks in 2 s at 100 Hz") }
    }

    func testTripleFaultStopsTheVMWithAMessage() throws {
        try HostHarness.requireHost()
        let r = HostHarness.hvhostRun(["run", HostHarness.vmx("tf", guest: "triple-fault")])
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stdout.contains("about to triple fault"), r.stdout)
        XCTAssertTrue(r.stderr.contains("tf: triple fault"), r.stderr)
    }

    func testCOnlyExamplePluginDrivenByGuest() throws {
        try HostHarness.requireHost()
        let vmx = HostHarness.vmx("edu", guest: "edu", extra: ["hv.device0.present": "TRUE", "hv.device0.model": "edu"])
        let r = HostHarness.hvhostRun(["run", "--plugin-path", HostHarness.pluginDir, vmx])
        XCTAssertEqual(r.status, 1, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("edu: id 0x010000ed"), r.stdout)
        XCTAssertTrue(r.stdout.contains("edu: factorial(10) = 3628800"), r.stdout)
        XCTAssertTrue(r.stdout.contains("raise 0x9abc -> status 0x9abc, acked, calls 3"), r.stdout)
        XCTAssertTrue(r.stdout.contains("edu: ok"), r.stdout)
    }

    func testEduGuestFailsWithoutTheDevice() throws {
        try HostHarness.requireHost()
        let r = HostHarness.hvhostRun(["run", HostHarness.vmx("nodev", guest: "edu")])
        XCTAssertEqual(r.status, (3 << 1) | 1, r.stdout)
    }

    /// The conservative CPUID: no CMPXCHG16B, PCID, x2APIC or TSC-deadline, the hypervisor
    /// bit, and VMware's signature when the config asks for it. (XSAVE/AVX are hidden in
    /// our table too, but KVM's PVM backend reports the host's bits for those.)
    func testConservativeCPUIDAndVMwareSignature() throws {
        try HostHarness.requireHost()
        let plain = HostHarness.hvhostRun(["run", HostHarness.vmx("cpuid", guest: "cpuid")])
        XCTAssertEqual(plain.status, 1, plain.stderr)
        XCTAssertTrue(plain.stdout.contains("hypervisor=1 cx16=0"), plain.stdout)
        XCTAssertTrue(plain.stdout.contains("pcid=0 x2apic=0 tscdeadline=0"), plain.stdout)
        let vmware = HostHarness.hvhostRun(["run", HostHarness.vmx("cpuid-vmw", guest: "cpuid", extra: ["hv.cpuid.vmware": "TRUE"])])
        XCTAssertEqual(vmware.status, 1, vmware.stderr)
        XCTAssertTrue(vmware.stdout.contains("signature \"VMwareVMware\" max leaf 0x40000010"), vmware.stdout)
    }

    /// A guest reset (i8042 0xFE) boots the VM again from its configuration, until the
    /// operator powers it off.
    func testGuestResetBootsTheVMAgain() throws {
        try HostHarness.requireHost()
        let log = HostHarness.workDir + "/reboot.log"
        try? FileManager.default.removeItem(atPath: log)
        let vmx = HostHarness.vmx("reboot", guest: "reboot", extra: ["hv.serial": "file:\(log)", "hv.resetLimit": "off"])
        let r = HostHarness.hvhostRun(["run", vmx]) { p in
            let deadline = Date().addingTimeInterval(20)
            while Date() < deadline {
                let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
                if text.components(separatedBy: "reboot: requesting reset").count > 3 { break }
                usleep(20_000)
            }
            kill(p.processIdentifier, SIGTERM)
        }
        XCTAssertEqual(r.status, 0, r.stderr)
        let text = try String(contentsOfFile: log, encoding: .utf8)
        XCTAssertGreaterThanOrEqual(text.components(separatedBy: "rt: entry=pvh32").count - 1, 3, text)
        XCTAssertTrue(r.stderr.contains("reboot: reset by the guest; booting again (reset 1)"), r.stderr)
        XCTAssertTrue(r.stderr.contains("reboot: powered off"), r.stderr)
    }

    /// A guest that resets at once is stopped as a reset loop after 5 resets within 10 s
    /// (and after the configured number with `hv.resetLimit`), instead of rebooting forever.
    func testAGuestResetLoopPowersTheVMOff() throws {
        try HostHarness.requireHost()
        for (limit, count) in [(nil, 5), ("2/10", 2)] as [(String?, Int)] {
            let log = HostHarness.workDir + "/reset-loop.log"
            try? FileManager.default.removeItem(atPath: log)
            var extra = ["hv.serial": "file:\(log)"]
            if let limit { extra["hv.resetLimit"] = limit }
            let vmx = HostHarness.vmx("reset-loop", guest: "reboot", extra: extra)
            let r = HostHarness.hvhostRun(["run", vmx], timeout: 60)
            XCTAssertFalse(r.timedOut, "the VM kept rebooting: \(r.stderr.suffix(2000))")
            XCTAssertEqual(r.status, 2, r.stderr)
            let text = try String(contentsOfFile: log, encoding: .utf8)
            XCTAssertEqual(text.components(separatedBy: "reboot: requesting reset").count - 1, count, text)
            XCTAssertTrue(r.stderr.contains("reset-loop: failed: guest reset loop: \(count) resets within 10 s (hv.resetLimit \(limit ?? "5/10")); powered off"), r.stderr)
        }
    }
}
