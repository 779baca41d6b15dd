import XCTest

/// The same guest binaries under QEMU: a guest driver that passes against an
/// implementation nobody here wrote checks the guest, and so our devices.
final class QEMUCrossCheckTests: XCTestCase {
    private func qemu(_ guest: String, extra: [String] = [], append: String? = nil) throws -> HostHarness.Result {
        let qemu = try HostHarness.requireQEMU()
        var args = ["-enable-kvm", "-M", "pc", "-m", "64", "-cpu", "max,arch-capabilities=off",
                    "-display", "none", "-no-reboot", "-nodefaults", "-serial", "stdio",
                    "-device", "isa-debug-exit,iobase=0x501,iosize=2", "-kernel", HostHarness.guest(guest)]
        if let append { args += ["-append", append] }
        return HostHarness.run(qemu, args + extra, timeout: 90)
    }

    func testHelloUnderQEMU() throws {
        let r = try qemu("hello", append: "from-qemu")
        XCTAssertEqual(r.status, 1, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("hello from ring 3"), r.stdout)
        XCTAssertTrue(r.stdout.contains("cmdline: from-qemu"), r.stdout)
    }

    func testPCIScanUnderQEMU() throws {
        let r = try qemu("pci-scan", extra: ["-device", "edu"])
        XCTAssertEqual(r.status, 1, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("1234:11e8 class 00ff bar0="), r.stdout)
    }

    func testTimerUnderQEMU() throws {
        let r = try qemu("timer")
        XCTAssertEqual(r.status, 1, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("lapic: "), r.stdout)
    }

    func testTripleFaultUnderQEMU() throws {
        let r = try qemu("triple-fault")
        XCTAssertFalse(r.timedOut)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("about to triple fault"), r.stdout)
    }

    /// QEMU's own edu device passes the same driver our C example plugin passes.
    func testEduDriverAgainstQEMUsEdu() throws {
        let r = try qemu("edu", extra: ["-device", "edu"])
        XCTAssertEqual(r.status, 1, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("edu: ok"), r.stdout)
    }

    func testBurnUnderQEMU() throws {
        let r = try qemu("burn", append: "seconds=2")
        XCTAssertEqual(r.status, 1, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("burn: done"), r.stdout)
    }

    /// The AP start-up sequence (INIT, SIPI, SIPI) and fixed IPIs against QEMU's KVM APIC.
    func testSMPUnderQEMU() throws {
        let r = try qemu("smp", extra: ["-smp", "2"])
        XCTAssertEqual(r.status, 1, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("smp: 2 CPUs, ipi ok, counter 40000"), r.stdout)
    }

    /// The i8042 reset the guest uses really resets a PC: QEMU with -no-reboot exits.
    func testRebootUnderQEMU() throws {
        let r = try qemu("reboot")
        XCTAssertFalse(r.timedOut)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("reboot: requesting reset"), r.stdout)
    }
}
