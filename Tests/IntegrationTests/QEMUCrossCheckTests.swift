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

    /// QEMU's -kernel loads the same PVH ELF32 and multiboot images (its Linux loader runs
    /// the bzImage's real-mode setup code, which the probe does not have).
    func testKernelFormatsUnderQEMU() throws {
        let qemu = try HostHarness.requireQEMU()
        let initrd = HostHarness.workDir + "/qemu-module"
        try "qemu-module".write(toFile: initrd, atomically: true, encoding: .utf8)
        for (image, extra, line) in [
            ("kformat-pvh32.elf", [String](), "kformat: pvh32 magic ok cmdline=from-qemu"),
            ("kformat-multiboot.elf", ["-initrd", initrd], "kformat: multiboot magic ok mem_lower=639"),
        ] {
            let r = HostHarness.run(qemu, ["-enable-kvm", "-M", "pc", "-m", "64", "-display", "none", "-no-reboot",
                                           "-nodefaults", "-serial", "stdio", "-device", "isa-debug-exit,iobase=0x501,iosize=2",
                                           "-kernel", HostHarness.repoRoot + "/guests/build/" + image,
                                           "-append", "from-qemu"] + extra, timeout: 90)
            XCTAssertEqual(r.status, 1, image + ": " + r.stdout + r.stderr)
            XCTAssertTrue(r.stdout.contains(line), r.stdout)
            XCTAssertTrue(r.stdout.contains("kformat: ok"), r.stdout)
        }
    }

    /// The El Torito image FirmwareBootTests boots from our CD-ROM drive boots QEMU's
    /// scsi-cd on its mptsas1068 through the same SeaBIOS driver: the image is sound,
    /// so a failure there is ours.
    func testElToritoImageUnderQEMU() throws {
        let qemu = try HostHarness.requireQEMU()
        let iso = HostHarness.repoRoot + "/guests/build/eltorito.iso"
        let r = HostHarness.run(qemu, ["-enable-kvm", "-M", "pc", "-m", "64", "-display", "none", "-no-reboot",
                                       "-nodefaults", "-serial", "stdio", "-device", "isa-debug-exit,iobase=0x501,iosize=2",
                                       "-device", "mptsas1068,id=hba",
                                       "-drive", "if=none,id=cd,file=\(iso),format=raw,media=cdrom,readonly=on",
                                       "-device", "scsi-cd,drive=cd,bus=hba.0,bootindex=0"], timeout: 90)
        XCTAssertEqual(r.status, 99, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("mbr: booted by the BIOS from drive 0xe0"), r.stdout)
    }
}
