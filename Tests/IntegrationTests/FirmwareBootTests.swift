import Foundation
import XCTest

/// Real firmware nobody here wrote (Debian's SeaBIOS) powering on our platform, as an
/// ESX VM without `hv.kernel` does.
final class FirmwareBootTests: XCTestCase {
    static let seabios = "/usr/share/seabios/bios-256k.bin"
    /// CPU seconds hvhost may spend to reach the last phase (QEMU needs ~3.5 s of
    /// wall time on this host's KVM for the same firmware).
    static let cpuBudget = 10.0
    /// What Vlance offers as its boot ROM (Debian ipxe-qemu) when the boot order names it.
    static let pxeROM = "/usr/lib/ipxe/qemu/pxe-pcnet.rom"
    static let vmxnetROM = "/usr/lib/ipxe/qemu/pxe-vmxnet3.rom"

    func requireSeaBIOS() throws {
        try HostHarness.requireHost()
        guard FileManager.default.fileExists(atPath: Self.seabios) else {
            throw XCTSkip("\(Self.seabios) is missing (apt-get install seabios): firmware boot tests skipped")
        }
    }

    static let noBootPhases = FirmwarePhases(phases: [
        .init(name: "reset vector to banner", marker: "SeaBIOS (version"),
        .init(name: "POST to INT 19h", marker: "enter handle_19"),
        .init(name: "boot attempts", marker: "No bootable device"),
    ])

    func assertWithinBudget(_ o: FirmwarePhases.Outcome, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertNil(o.stalled, "\(o.stalled ?? "")\nlog:\n\(o.log.suffix(3000))\nstderr:\n\(o.stderr)", file: file, line: line)
        for r in o.reached {
            print("firmware phase '\(r.phase)': \(String(format: "%.2f", r.wallSeconds)) s wall, \(String(format: "%.2f", r.cpuSeconds)) s CPU")
        }
        if let last = o.reached.last {
            XCTAssertLessThanOrEqual(last.cpuSeconds, Self.cpuBudget, "'\(last.phase)' took \(last.cpuSeconds) s of CPU",
                                     file: file, line: line)
        }
    }

    /// A `.vmx` without `hv.kernel` boots SeaBIOS: its banner and its POST log reach the
    /// 0x402 debug port, and with no disk it ends in "No bootable device".
    func testSeaBIOSReachesNoBootableDevice() throws {
        try requireSeaBIOS()
        let log = HostHarness.workDir + "/seabios-nodisk.log"
        let vmx = HostHarness.writeVMX("seabios-nodisk", [
            "displayName": "seabios-nodisk", "memsize": "64", "hv.firmware.log": log, "hv.serial": "none",
            "bios.bootOrder": "hdd,cdrom",
        ])
        let o = Self.noBootPhases.run(HostHarness.hvhost, ["run", vmx], log: log)
        assertWithinBudget(o)
        XCTAssertFalse(o.log.contains("Running option rom"), "no NIC, no ROM:\n\(o.log)")
        XCTAssertTrue(o.log.contains("Found QEMU fw_cfg"), "fw_cfg found:\n\(o.log)")
        XCTAssertTrue(o.log.contains("qemu/e820: addr 0x0000000000000000 len 0x0000000004000000 [RAM]"), "memory from etc/e820:\n\(o.log)")
        XCTAssertTrue(o.log.contains("PCI: init bdf=00:00.0 id=8086:7190"), o.log)
        XCTAssertTrue(o.log.contains("Found 1 cpu(s)"), o.log)
        XCTAssertTrue(o.log.contains("Booting from Hard Disk..."), o.log)
        XCTAssertEqual(o.status, 0, "powered off by SIGTERM: \(o.stderr)")
    }

    /// The kind of `.vmx` an ESX host writes (no `hv.` keys; a VMDK on an LSI Logic
    /// adapter, a vlance NIC, a boot order) validates and powers on to the BIOS, which
    /// finds the (blank) disk through its own mpt-scsi driver and our LSILogic plugin.
    func testESXStyleVMXValidatesAndPowersOnToTheBIOS() throws {
        try requireSeaBIOS()
        let dir = HostHarness.workDir + "/esx-style"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: dir + "/esx-style.vmdk", contents: Data(count: 4 << 20))
        let esx = """
            config.version = "6"
            virtualHW.version = "3"
            displayName = "esx-style"
            guestOS = "linux"
            memsize = "64"
            scsi0.present = "TRUE"
            scsi0.virtualDev = "lsilogic"
            scsi0:0.present = "TRUE"
            scsi0:0.fileName = "esx-style.vmdk"
            scsi0:0.mode = "persistent"
            ethernet0.present = "TRUE"
            ethernet0.virtualDev = "vlance"
            ethernet0.networkName = "VM Network"
            bios.bootOrder = "hdd,ethernet0,cdrom"

            """
        let vmx = dir + "/esx-style.vmx"
        try esx.write(toFile: vmx, atomically: true, encoding: .utf8)
        let v = HostHarness.hvhostRun(["validate", vmx])
        XCTAssertEqual(v.status, 0, v.stdout + v.stderr)

        // The same file plus only the key that lets the test read the firmware's log.
        let log = dir + "/bios.log"
        let observed = dir + "/esx-style-observed.vmx"
        try (esx + "hv.firmware.log = \"bios.log\"\n").write(toFile: observed, atomically: true, encoding: .utf8)
        // bios.bootOrder reaches the firmware (CMOS 0x3D/0x38): the disk first, then the
        // NIC, whose PXE ROM (iPXE, offered because the order names ethernet0) SeaBIOS ran
        // at POST and now boots. (iPXE goes on to crash under this host's KVM; the test
        // ends at its start.)
        let rom = FileManager.default.fileExists(atPath: Self.pxeROM)
        let o = FirmwarePhases(phases: [
            .init(name: "reset vector to banner", marker: "SeaBIOS (version"),
        ] + (rom ? [.init(name: "NIC boot ROM init", marker: "Running option rom at")] : []) + [
            .init(name: "boot order: hard disk", marker: "Booting from Hard Disk..."),
            .init(name: "blank disk refused", marker: "Boot failed: not a bootable disk"),
            rom ? .init(name: "boot order: ethernet0's ROM", marker: "Booting from ROM...")
                : .init(name: "boot attempts", marker: "No bootable device"),
        ]).run(HostHarness.hvhost, ["run", observed], log: log)
        assertWithinBudget(o)
        XCTAssertTrue(o.log.contains("id=1000:0030"), "the LSI53C1030 on the PCI bus:\n\(o.log)")
        XCTAssertTrue(o.log.contains("id=1022:2000"), "the PCnet on the PCI bus:\n\(o.log)")
    }

    /// SeaBIOS boots a 512-byte MBR (guests/boot/mbr.S) from a disk on our LSILogic
    /// adapter through its own mpt-scsi driver; the MBR prints a line on COM1 and stops
    /// the VM through the debug-exit port.
    func testSeaBIOSBootsAnMBRFromTheLSILogicDisk() throws {
        try bootMBR(name: "mbr-lsilogic", nic: nil)
    }

    /// The same with a vlance NIC second in the boot order: its PXE ROM (iPXE) is offered
    /// and initialised at POST, and the disk still boots first.
    func testDiskBootWithANICBootROMInTheOrder() throws {
        guard FileManager.default.fileExists(atPath: Self.pxeROM) else {
            throw XCTSkip("\(Self.pxeROM) is missing (apt-get install ipxe-qemu): no NIC boot ROM to offer")
        }
        try bootMBR(name: "mbr-with-pxe", nic: "vlance")
    }

    /// The same with a Vmxnet NIC: it offers iPXE's vmxnet3 ROM (pxe-vmxnet3.rom).
    func testDiskBootWithTheVmxnetBootROMInTheOrder() throws {
        guard FileManager.default.fileExists(atPath: Self.vmxnetROM) else {
            throw XCTSkip("\(Self.vmxnetROM) is missing (apt-get install ipxe-qemu): no NIC boot ROM to offer")
        }
        try bootMBR(name: "mbr-with-vmxnet-pxe", nic: "vmxnet")
    }

    /// El Torito: an ISO image (guests/build/eltorito.iso, made by guests/tools/mkeltorito)
    /// on our LSILogic adapter as a CD-ROM drive
    /// (`deviceType = "cdrom-image"`), next to a bootable disk, with the CD first in the
    /// boot order. SeaBIOS's mpt-scsi driver finds a removable type-5 unit, reads the
    /// boot record and catalog by READ(10) of 2048-byte blocks and enters the
    /// no-emulation image (the same boot sector) with the CD's drive number, 0xE0.
    func testSeaBIOSBootsElToritoFromTheLSILogicCDROM() throws {
        try requireSeaBIOS()
        let dir = HostHarness.workDir + "/eltorito"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let mbr = try Data(contentsOf: URL(fileURLWithPath: HostHarness.repoRoot + "/guests/build/mbr.bin"))
        FileManager.default.createFile(atPath: dir + "/disk.vmdk", contents: mbr + Data(count: (1 << 20) - 512))
        let vmx = dir + "/cd.vmx"
        try """
            displayName = "eltorito"
            memsize = "64"
            scsi0.present = "TRUE"
            scsi0.virtualDev = "lsilogic"
            scsi0:0.present = "TRUE"
            scsi0:0.fileName = "disk.vmdk"
            scsi0:1.present = "TRUE"
            scsi0:1.deviceType = "cdrom-image"
            scsi0:1.fileName = "\(HostHarness.repoRoot)/guests/build/eltorito.iso"
            bios.bootOrder = "cdrom,hdd"
            hv.serial = "file:serial.txt"
            hv.firmware.log = "bios.log"

            """.write(toFile: vmx, atomically: true, encoding: .utf8)
        var run = FirmwarePhases(phases: [
            .init(name: "reset vector to banner", marker: "SeaBIOS (version"),
            .init(name: "mpt-scsi finds the CD-ROM drive", marker: "product='Virtual CD-ROM' rev='1.0' type=5 removable=1"),
            .init(name: "POST to the CD", marker: "Booting from DVD/CD..."),
        ])
        run.exitPhase = "boot image to debug exit"
        let o = run.run(HostHarness.hvhost, ["run", vmx], log: dir + "/bios.log")
        assertWithinBudget(o)
        let serial = (try? String(contentsOfFile: dir + "/serial.txt", encoding: .utf8)) ?? ""
        XCTAssertTrue(serial.contains("mbr: booted by the BIOS from drive 0xe0\r\n"), "serial: \(serial)\nlog:\n\(o.log.suffix(2000))")
        XCTAssertEqual(o.status, 99, "debug exit 0x31: \(o.stderr)")
    }

    /// `nic`: the model of a NIC second in the boot order, or none.
    private func bootMBR(name: String, nic: String?) throws {
        try requireSeaBIOS()
        let dir = HostHarness.workDir + "/" + name
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var disk = try Data(contentsOf: URL(fileURLWithPath: HostHarness.repoRoot + "/guests/build/mbr.bin"))
        XCTAssertEqual(disk.count, 512)
        disk.append(Data(count: (4 << 20) - 512))
        FileManager.default.createFile(atPath: dir + "/boot.vmdk", contents: disk)
        let vmx = dir + "/mbr.vmx"
        try """
            displayName = "\(name)"
            memsize = "64"
            scsi0.present = "TRUE"
            scsi0.virtualDev = "lsilogic"
            scsi0:0.present = "TRUE"
            scsi0:0.fileName = "boot.vmdk"
            bios.bootOrder = "\(nic != nil ? "hdd,ethernet0" : "hdd")"
            ethernet0.present = "\(nic != nil ? "TRUE" : "FALSE")"
            ethernet0.virtualDev = "\(nic ?? "vlance")"
            hv.serial = "file:serial.txt"
            hv.firmware.log = "bios.log"

            """.write(toFile: vmx, atomically: true, encoding: .utf8)
        var run = FirmwarePhases(phases: [
            .init(name: "reset vector to banner", marker: "SeaBIOS (version"),
            .init(name: "mpt-scsi finds the adapter", marker: "found mpt-scsi(0030)"),
            .init(name: "mpt-scsi reads the disk's capacity", marker: "0:0 blksize=512 sectors=8192"),
        ] + (nic != nil ? [.init(name: "NIC boot ROM init", marker: "Running option rom at")] : []) + [
            .init(name: "POST to the MBR", marker: "Booting from Hard Disk..."),
        ])
        run.exitPhase = "MBR to debug exit"
        let o = run.run(HostHarness.hvhost, ["run", vmx], log: dir + "/bios.log")
        assertWithinBudget(o)
        let serial = (try? String(contentsOfFile: dir + "/serial.txt", encoding: .utf8)) ?? ""
        XCTAssertTrue(serial.contains("mbr: booted by the BIOS from drive 0x80\r\n"), "serial: \(serial)")
        XCTAssertEqual(o.status, 99, "debug exit 0x31: \(o.stderr)")
        if nic == nil { XCTAssertFalse(o.log.contains("Running option rom"), o.log) }
    }
}
