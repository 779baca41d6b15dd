import Foundation
import Testing
@testable import HVBackendKVM
@testable import HVDevices
@testable import HVHostIO
@testable import HVKernel
@testable import HVMemory
@testable import HVSched
@testable import HVSupport

/// A scratch directory holding a fake guest kernel, shared by the Config tests and
/// removed when the test process exits.
fileprivate enum ConfigFixture {
    static let directory: String = {
        let dir = FileManager.default.temporaryDirectory
            .appendingPathComponent("hv-config-tests-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        try! FileManager.default.createDirectory(atPath: dir + "/guests", withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: dir + "/kernel.elf", contents: Data([0x7f, 0x45, 0x4c, 0x46]))
        _ = FileManager.default.createFile(atPath: dir + "/guests/web.elf", contents: Data([0x7f, 0x45, 0x4c, 0x46]))
        _ = FileManager.default.createFile(atPath: dir + "/bios.bin", contents: Data(count: 0x10000))
        atexit { try? FileManager.default.removeItem(atPath: ConfigFixture.directory) }
        return dir
    }()

    static var vmxPath: String { directory + "/vm.vmx" }

    /// Lines every valid file needs; append them after the lines under test.
    static let required = "memsize = \"64\"\nhv.kernel = \"kernel.elf\""

    static func file(_ text: String) throws(ConfigErrors) -> VMXFile {
        try VMXFile(parsing: text, path: vmxPath)
    }

    static func configuration(_ text: String) throws(ConfigErrors) -> VMConfiguration {
        try VMConfiguration(file: file(text))
    }

    /// `text` plus the required lines.
    static func vm(_ text: String) throws(ConfigErrors) -> VMConfiguration {
        try configuration(text + "\n" + required)
    }

    /// The first error validating `text` (no required lines added), or nil.
    static func error(_ text: String) -> ConfigError? {
        do {
            _ = try configuration(text)
            return nil
        } catch {
            return error.errors.first
        }
    }
}

@Suite struct ConfigVMConfigurationTests {
    private typealias F = ConfigFixture

    static let realistic = """
        #!/usr/bin/vmware
        config.version = "6"
        virtualHW.version = "3"
        displayName = "web01"
        guestOS = "linux"
        memsize = "256"
        numvcpus = "2"
        uuid.bios = "56 4d 12 34 56 78 9a bc-de f0 12 34 56 78 9a bc"

        ethernet0.present = "TRUE"
        ethernet0.virtualDev = "vmxnet"
        ethernet0.networkName = "Production"
        ethernet0.addressType = "static"
        ethernet0.address = "00:50:56:01:02:03"
        ethernet1.present = "TRUE"
        ethernet1.addressType = "generated"
        ethernet1.generatedAddress = "00:0c:29:aa:bb:cc"
        ethernet2.present = "FALSE"

        scsi0.present = "TRUE"
        scsi0.virtualDev = "lsilogic"
        scsi0:0.present = "TRUE"
        scsi0:0.fileName = "web01.vmdk"
        scsi0:0.mode = "persistent"
        scsi0:1.present = "TRUE"
        scsi0:1.fileName = "/vmfs/vmhba0:0:0:5/data.vmdk"
        scsi0:1.deviceType = "scsi-hardDisk"
        floppy0.present = "FALSE"
        Ethernet0.FooBar = "plugin-specific"

        sched.cpu.shares = "high"
        sched.cpu.min = "10%"
        sched.cpu.max = "80"
        sched.cpu.affinity = "0,2-3"
        sched.cpu.htsharing = "internal"
        sched.mem.min = "128"
        sched.mem.shares = "low"

        hv.kernel = "guests/web.elf"   # the test guest
        hv.cmdline = "console=ttyS0 quiet"
        hv.serial = "file:logs/serial.txt"
        hv.cpuid.vmware = "TRUE"
        hv.device0.present = "TRUE"
        hv.device0.model = "edu"
        hv.device0.dmaMask = "0xfffffff"
        """

    @Test func realisticESXFile() throws {
        let c = try F.configuration(Self.realistic)
        let dir = F.directory
        #expect(c.path == F.vmxPath)
        #expect(c.directory == dir)
        #expect(c.displayName == "web01")
        #expect(c.guestOS == "linux")
        #expect(c.configVersion == "6")
        #expect(c.virtualHardwareVersion == "3")
        #expect(c.memoryMiB == 256)
        #expect(c.memoryBytes == 256 << 20)
        #expect(c.vcpuCount == 2)

        #expect(c.networkAdapters.count == 2)
        let nic0 = c.networkAdapters[0]
        #expect(nic0.index == 0 && nic0.prefix == "ethernet0")
        #expect(nic0.model == "vmxnet")
        #expect(nic0.networkName == "Production")
        #expect(nic0.addressType == .static)
        #expect(nic0.address == MACAddress(0x00, 0x50, 0x56, 0x01, 0x02, 0x03))
        let nic1 = c.networkAdapters[1]
        #expect(nic1.model == "vlance")
        #expect(nic1.networkName == "VM Network")
        #expect(nic1.addressType == .generated)
        #expect(nic1.address == nil)
        #expect(nic1.effectiveAddress?.description == "00:0C:29:AA:BB:CC")
        #expect(c.networks == ["Production", "VM Network"])

        #expect(c.scsiAdapters.count == 1)
        let scsi = c.scsiAdapters[0]
        #expect(scsi.model == "lsilogic")
        #expect(scsi.disks.map(\.unit) == [0, 1])
        #expect(scsi.disks[0].path == dir + "/web01.vmdk")
        #expect(scsi.disks[0].mode == .persistent)
        #expect(scsi.disks[0].location == F.vmxPath + ":23")
        #expect(scsi.disks[1].path == "/vmfs/vmhba0:0:0:5/data.vmdk")
        #expect(scsi.disks[1].mode == .persistent)
        #expect(scsi.disks[1].kind == .hardDisk)
        #expect(c.display == nil)

        #expect(c.cpuScheduling.shares == .high)
        #expect(c.cpuScheduling.totalShares(vcpus: c.vcpuCount) == 4000)
        #expect(c.perVCPUShares == 2000)
        #expect(c.cpuScheduling.minPercent == 10)
        #expect(c.cpuScheduling.maxPercent == 80)
        #expect(c.cpuScheduling.affinity == .cpus([0, 2, 3]))
        #expect(c.cpuScheduling.affinity.mask == 0b1101)
        #expect(c.cpuScheduling.htSharing == .internal)
        #expect(c.memoryScheduling.minMiB == 128)
        #expect(c.memoryScheduling.maxMiB == 256)
        #expect(c.memoryScheduling.shares == .low)
        #expect(c.memoryScheduling.totalShares(memoryMiB: 256) == 1280)

        #expect(c.kernelPath == dir + "/guests/web.elf")
        #expect(c.commandLine == "console=ttyS0 quiet")
        #expect(c.boot.bootProtocol == .pvh)
        #expect(c.serial == .file(dir + "/logs/serial.txt"))
        #expect(c.schedulerPool == "default")
        #expect(c.advertisesVMwareHypervisor)

        #expect(c.devices.map(\.prefix) == ["ethernet0", "ethernet1", "scsi0", "hv.device0"])
        #expect(c.devices.map(\.kind) == [.nic, .nic, .scsi, .other])
        #expect(c.devices.map(\.modelName) == ["vmxnet", "vlance", "lsilogic", "edu"])
        let eth0 = try #require(c.device(prefix: "ETHERNET0"))
        #expect(eth0.value(forDeviceKey: "foobar") == "plugin-specific")
        #expect(eth0.value(forDeviceKey: "ADDRESS") == "00:50:56:01:02:03")
        #expect(eth0.networkName == "Production")
        #expect(eth0.location == F.vmxPath + ":11")
        let scsiDev = try #require(c.device(prefix: "scsi0"))
        #expect(scsiDev.value(forDeviceKey: ":0.FileName") == "web01.vmdk")
        #expect(scsiDev.value(forDeviceKey: "virtualDev") == "lsilogic")
        #expect(scsiDev.disks.count == 2)
        #expect(scsiDev.fullKey(forDeviceKey: ":1.mode") == "scsi0:1.mode")
        let edu = try #require(c.device(prefix: "hv.device0"))
        #expect(edu.value(forDeviceKey: "dmamask") == "0xfffffff")
        #expect(edu.entry(forDeviceKey: "dmaMask")?.line == 45)
        #expect(edu.fullKey(forDeviceKey: "dmaMask") == "hv.device0.dmaMask")

        // Unknown keys are kept.
        #expect(c.value(forKey: "UUID.BIOS") == "56 4d 12 34 56 78 9a bc-de f0 12 34 56 78 9a bc")
        #expect(c.value(forKey: "floppy0.present") == "FALSE")
    }

    @Test func readsFromDisk() throws {
        let path = F.directory + "/ondisk.vmx"
        try (F.required + "\r\nnumvcpus = 2\r\n").write(toFile: path, atomically: true, encoding: .utf8)
        let c = try VMConfiguration(contentsOf: path)
        #expect(c.displayName == "ondisk")
        #expect(c.vcpuCount == 2)
    }

    @Test func defaults() throws {
        let c = try F.vm("")
        #expect(c.displayName == "vm")
        #expect(c.vcpuCount == 1)
        #expect(c.memoryMiB == 64)
        #expect(c.guestOS == nil)
        #expect(c.devices.isEmpty)
        #expect(c.networks.isEmpty)
        #expect(c.cpuScheduling == CPUSchedulingParameters(shares: .normal, minPercent: 0, maxPercent: 100,
                                                           affinity: .all, htSharing: .any))
        #expect(c.memoryScheduling == MemorySchedulingParameters(shares: .normal, minMiB: 0, maxMiB: 64))
        #expect(c.perVCPUShares == 1000)
        #expect(c.boot == BootConfiguration(kernelPath: F.directory + "/kernel.elf", commandLine: "", bootProtocol: .pvh))
        #expect(c.serial == .stdout)
        #expect(c.schedulerPool == "default")
        #expect(!c.advertisesVMwareHypervisor)
    }

    // MARK: memsize / numvcpus

    @Test(arguments: [("4", 4), ("65536", 65536), ("  1024 ", 1024)])
    func memsizeAccepted(value: String, mib: Int) throws {
        let c = try F.configuration("memsize = \"\(value)\"\nhv.kernel = \"kernel.elf\"")
        #expect(c.memoryMiB == mib)
    }

    @Test(arguments: [
        ("0", "out of range"), ("65540", "out of range"), ("130", "not a multiple of 4"),
        ("256MB", "not a whole number"), ("-4", "not a whole number"), ("", "not a whole number"),
    ])
    func memsizeRejected(value: String, problem: String) throws {
        let e = try #require(F.error("hv.kernel = \"kernel.elf\"\nmemsize = \"\(value)\""))
        #expect(e.description.hasPrefix("\(F.vmxPath):2: memsize = \"\(value)\": "))
        #expect(e.description.contains(problem))
        #expect(e.description.contains(", expected a multiple of 4 from 4 to 65536 (MiB)"))
    }

    @Test func memsizeMissing() throws {
        let e = try #require(F.error("hv.kernel = \"kernel.elf\""))
        #expect(e.line == nil)
        #expect(e.description.hasPrefix("\(F.vmxPath): memsize: missing, expected"))
    }

    @Test func numvcpus() throws {
        #expect(try F.vm("numvcpus = 2").vcpuCount == 2)
        let e = try #require(F.error("numvcpus = \"4\"\n" + F.required))
        #expect(e.description == "\(F.vmxPath):1: numvcpus = \"4\": unsupported number of vCPUs, expected 1 or 2")
    }

    // MARK: Booleans

    @Test(arguments: [("TRUE", true), ("true", true), ("True", true), ("1", true),
                      ("FALSE", false), ("false", false), ("fAlSe", false), ("0", false), (" TRUE ", true)])
    func booleanSpellings(value: String, expected: Bool) throws {
        let c = try F.vm("ethernet0.present = \"\(value)\"\nhv.cpuid.vmware = \"\(value)\"")
        #expect(c.networkAdapters.isEmpty == !expected)
        #expect(c.advertisesVMwareHypervisor == expected)
    }

    @Test(arguments: ["yes", "on", "2", ""])
    func booleanRejected(value: String) throws {
        let e = try #require(F.error("ethernet0.present = \"\(value)\"\n" + F.required))
        #expect(e.description == "\(F.vmxPath):1: ethernet0.present = \"\(value)\": not a boolean, expected TRUE or FALSE (also \"1\" or \"0\")")
    }

    // MARK: SCSI

    @Test func scsiUnit7Rejected() throws {
        let text = """
            scsi0.present = "TRUE"
            scsi0:7.present = "TRUE"
            scsi0:7.fileName = "disk.vmdk"
            """ + "\n" + F.required
        let e = try #require(F.error(text))
        #expect(e.description.hasPrefix("\(F.vmxPath):2: scsi0:7.present = \"TRUE\": unit 7 is reserved for the SCSI adapter itself"))
        #expect(e.description.contains("expected a unit from 0 to 15 other than 7"))
        let all = VMConfiguration.problems(in: try F.file(text))
        #expect(all.map(\.line) == [2, 3])
        // Declaring unit 7 absent is harmless.
        #expect(try F.vm("scsi0.present = TRUE\nscsi0:7.present = FALSE").scsiAdapters.count == 1)
    }

    @Test func scsiUnitOutOfRange() throws {
        let e = try #require(F.error("scsi1.present = 1\nscsi1:16.present = 1\nscsi1:16.fileName = x.vmdk\n" + F.required))
        #expect(e.line == 2)
        #expect(e.description.contains("unit 16 does not exist"))
    }

    @Test func scsiUnitsAroundSeven() throws {
        let c = try F.vm("""
            scsi0.present = TRUE
            scsi0:15.present = TRUE
            scsi0:15.fileName = "d15.vmdk"
            scsi0:6.present = TRUE
            scsi0:6.fileName = "d6.vmdk"
            scsi0:8.present = TRUE
            scsi0:8.fileName = "d8.vmdk"
            scsi0:9.fileName = "absent.vmdk"
            """)
        #expect(c.scsiAdapters[0].disks.map(\.unit) == [6, 8, 15])
        #expect(c.scsiAdapters[0].model == "buslogic")
    }

    @Test func persistentDiskMode() throws {
        let c = try F.vm("scsi0.present = TRUE\nscsi0:0.present = TRUE\nscsi0:0.fileName = a.vmdk\nscsi0:0.mode = \"PERSISTENT\"")
        #expect(c.scsiAdapters[0].disks[0].mode == .persistent)
        #expect(c.scsiAdapters[0].disks[0].undoableAction == .keep)
    }

    /// Every ESX mode runs now (on redo logs); an undoable disk's power-off action
    /// defaults to keep.
    @Test(arguments: [DiskMode.nonpersistent, .undoable, .append])
    func redoLogDiskModesAreAccepted(mode: DiskMode) throws {
        let c = try F.vm("scsi0.present = TRUE\nscsi0:0.present = TRUE\nscsi0:0.fileName = a.vmdk\nscsi0:0.mode = \"\(mode.rawValue)\"")
        #expect(c.scsiAdapters[0].disks[0].mode == mode)
        #expect(c.scsiAdapters[0].disks[0].undoableAction == .keep)
    }

    @Test(arguments: UndoableAction.allCases)
    func undoableActionIsParsed(action: UndoableAction) throws {
        let c = try F.vm("scsi0.present = TRUE\nscsi0:0.present = TRUE\nscsi0:0.fileName = a.vmdk\nscsi0:0.mode = \"undoable\"\nscsi0:0.undoableAction = \"\(action.rawValue.uppercased())\"")
        #expect(c.scsiAdapters[0].disks[0].undoableAction == action)
    }

    /// A power-off action only means something on an undoable disk; a bad one names the key.
    @Test func undoableActionOnlyOnUndoableDisks() throws {
        let text = "scsi0.present = TRUE\nscsi0:0.present = TRUE\nscsi0:0.fileName = a.vmdk\nscsi0:0.mode = \"append\"\nscsi0:0.undoableAction = \"commit\"\n"
        let e = try #require(F.error(text + F.required))
        #expect(e.description == "\(F.vmxPath):5: scsi0:0.undoableAction = \"commit\": only undoable disks have a power-off action; this disk is append, expected scsi0:0.mode = \"undoable\", or no scsi0:0.undoableAction")
        let bad = try #require(F.error("scsi0.present = TRUE\nscsi0:0.present = TRUE\nscsi0:0.fileName = a.vmdk\nscsi0:0.mode = undoable\nscsi0:0.undoableAction = \"ask\"\n" + F.required))
        #expect(bad.description == "\(F.vmxPath):5: scsi0:0.undoableAction = \"ask\": unknown value, expected keep, commit or discard")
    }

    @Test func diskModeRejected() throws {
        let e = try #require(F.error("scsi0:0.mode = \"independent\"\n" + F.required))
        #expect(e.description == "\(F.vmxPath):1: scsi0:0.mode = \"independent\": unknown value, expected persistent, nonpersistent, undoable or append")
    }

    @Test func cdromImageUnit() throws {
        let vm = try F.vm("scsi0.present = TRUE\nscsi0:1.present = TRUE\nscsi0:1.fileName = \"/isos/boot.iso\"\nscsi0:1.deviceType = \"cdrom-image\"")
        let disk = try #require(vm.scsiAdapters.first?.disks.first)
        #expect(disk.kind == .cdromImage)
        #expect(disk.path == "/isos/boot.iso")
        let raw = try #require(F.error("scsi0:1.deviceType = \"cdrom-raw\"\n" + F.required))
        #expect(raw.description == "\(F.vmxPath):1: scsi0:1.deviceType = \"cdrom-raw\": unknown value, expected scsi-harddisk, disk or cdrom-image")
        let mode = try #require(F.error("scsi0.present = TRUE\nscsi0:1.present = TRUE\nscsi0:1.fileName = a.iso\nscsi0:1.deviceType = cdrom-image\nscsi0:1.mode = nonpersistent\n" + F.required))
        #expect(mode.description.hasPrefix("\(F.vmxPath):5: scsi0:1.mode = \"nonpersistent\": a CD-ROM image is read-only: disk modes do not apply to it"))
    }

    @Test func diskNeedsAdapterAndFileName() throws {
        let e = try #require(F.error("scsi2:0.present = TRUE\nscsi2:0.fileName = a.vmdk\n" + F.required))
        #expect(e.description.hasPrefix("\(F.vmxPath):1: scsi2:0.present = \"TRUE\": the disk is present but scsi2 is not"))
        let e2 = try #require(F.error("scsi0.present = TRUE\nscsi0:3.present = TRUE\n" + F.required))
        #expect(e2.description.hasPrefix("\(F.vmxPath):2: scsi0:3.present = \"TRUE\": the disk has no scsi0:3.fileName"))
    }

    // MARK: Shares

    @Test(arguments: [("low", 500), ("normal", 1000), ("HIGH", 2000), ("1500", 1500)])
    func cpuShares(value: String, perVCPU: UInt32) throws {
        let one = try F.vm("sched.cpu.shares = \"\(value)\"")
        let two = try F.vm("numvcpus = 2\nsched.cpu.shares = \"\(value)\"")
        if UInt32(value) == nil {
            #expect(one.cpuScheduling.totalShares(vcpus: 1) == perVCPU)
            #expect(two.cpuScheduling.totalShares(vcpus: 2) == 2 * perVCPU)
            #expect(two.perVCPUShares == perVCPU)
        } else {
            // An explicit number is the VM's total, divided among its vCPUs.
            #expect(one.cpuScheduling.shares == .custom(perVCPU))
            #expect(two.cpuScheduling.totalShares(vcpus: 2) == perVCPU)
            #expect(two.perVCPUShares == perVCPU / 2)
        }
    }

    @Test(arguments: [("low", 5), ("normal", 10), ("high", 20)])
    func memoryShares(level: String, perMiB: UInt32) throws {
        let c = try F.configuration("memsize = 512\nhv.kernel = kernel.elf\nsched.mem.shares = \(level)")
        #expect(c.memoryScheduling.totalShares(memoryMiB: c.memoryMiB) == perMiB * 512)
        let custom = try F.vm("sched.mem.shares = 7777")
        #expect(custom.memoryScheduling.totalShares(memoryMiB: 64) == 7777)
    }

    @Test(arguments: ["medium", "0", "-5", "1000001", "10.5"])
    func sharesRejected(value: String) throws {
        for key in ["sched.cpu.shares", "sched.mem.shares"] {
            let e = try #require(F.error("\(key) = \"\(value)\"\n" + F.required))
            #expect(e.description.hasPrefix("\(F.vmxPath):1: \(key) = \"\(value)\": "))
            #expect(e.description.contains("expected low, normal, high or a whole number of shares"))
        }
    }

    // MARK: CPU min/max/affinity/htsharing

    @Test func cpuMinMax() throws {
        let c = try F.vm("sched.cpu.min = \"25 %\"\nsched.cpu.max = \"100%\"")
        #expect(c.cpuScheduling.minPercent == 25)
        #expect(c.cpuScheduling.maxPercent == 100)
        let e = try #require(F.error("sched.cpu.max = 40\nsched.cpu.min = 50%\n" + F.required))
        #expect(e.description == "\(F.vmxPath):2: sched.cpu.min = \"50%\": the reservation 50% is above sched.cpu.max (40%), expected sched.cpu.min <= sched.cpu.max")
        let e2 = try #require(F.error("sched.cpu.max = 101\n" + F.required))
        #expect(e2.description.hasPrefix("\(F.vmxPath):1: sched.cpu.max = \"101\": 101% is out of range"))
        let e3 = try #require(F.error("sched.cpu.max = 0\n" + F.required))
        #expect(e3.description.contains("never run"))
        let e4 = try #require(F.error("sched.cpu.min = half\n" + F.required))
        #expect(e4.description.contains("not a percentage"))
    }

    @Test func affinity() throws {
        #expect(try F.vm("sched.cpu.affinity = ALL").cpuScheduling.affinity == .all)
        #expect(try F.vm("sched.cpu.affinity = \"3, 1,1\"").cpuScheduling.affinity == .cpus([1, 3]))
        #expect(try F.vm("sched.cpu.affinity = 63").cpuScheduling.affinity.mask == 1 << 63)
        for bad in ["1,,2", "x", "64", "3-1", "-1"] {
            let e = try #require(F.error("sched.cpu.affinity = \"\(bad)\"\n" + F.required), "\(bad)")
            #expect(e.description.hasPrefix("\(F.vmxPath):1: sched.cpu.affinity = \"\(bad)\": "))
            #expect(e.description.contains("expected \"all\" or a comma-separated list"))
        }
    }

    @Test func htSharing() throws {
        #expect(try F.vm("sched.cpu.htsharing = NONE").cpuScheduling.htSharing == .none)
        #expect(try F.vm("sched.cpu.htsharing = any").cpuScheduling.htSharing.rawValue == 0)
        let e = try #require(F.error("sched.cpu.htsharing = \"all\"\n" + F.required))
        #expect(e.description.hasSuffix("expected any, internal or none"))
    }

    // MARK: Memory min/max

    @Test func memoryMinMax() throws {
        let c = try F.vm("sched.mem.min = 16\nsched.mem.max = 48")
        #expect(c.memoryScheduling.minMiB == 16 && c.memoryScheduling.maxMiB == 48)
        let e = try #require(F.error("sched.mem.max = \"128\"\n" + F.required))
        #expect(e.description == "\(F.vmxPath):1: sched.mem.max = \"128\": 128 MiB is out of range, expected a size in MiB from 1 to memsize (64)")
        let e2 = try #require(F.error("sched.mem.max = 32\nsched.mem.min = 40\n" + F.required))
        #expect(e2.line == 2)
        #expect(e2.description.contains("above sched.mem.max"))
    }

    // MARK: Networking

    @Test func staticMACRange() throws {
        let low = try F.vm("ethernet0.present = TRUE\nethernet0.addressType = static\nethernet0.address = 00:50:56:00:00:00")
        #expect(low.networkAdapters[0].address?.isVMwareStatic == true)
        let high = try F.vm("ethernet0.present = TRUE\nethernet0.addressType = \"Static\"\nethernet0.address = \"00:50:56:3f:ff:ff\"")
        #expect(high.networkAdapters[0].address?.description == "00:50:56:3F:FF:FF")

        let e = try #require(F.error("ethernet0.addressType = static\nethernet0.address = \"00:50:56:40:00:00\"\n" + F.required))
        #expect(e.description == "\(F.vmxPath):2: ethernet0.address = \"00:50:56:40:00:00\": 00:50:56:40:00:00 is outside VMware's static address range, expected an address from 00:50:56:00:00:00 to 00:50:56:3F:FF:FF")
        let e2 = try #require(F.error("ethernet1.addressType = static\nethernet1.address = \"00:0C:29:01:02:03\"\n" + F.required))
        #expect(e2.description.contains("outside VMware's static address range"))

        // A generated address outside the static range is fine.
        let gen = try F.vm("ethernet0.present = TRUE\nethernet0.address = 00:0C:29:01:02:03")
        #expect(gen.networkAdapters[0].address?.description == "00:0C:29:01:02:03")

        let missing = try #require(F.error("ethernet0.present = TRUE\nethernet0.addressType = static\n" + F.required))
        #expect(missing.description.hasPrefix("\(F.vmxPath):2: ethernet0.addressType = \"static\": a static address type needs ethernet0.address"))
    }

    @Test(arguments: ["00:50:56:01:02", "00:50:56:01:02:03:04", "00-50-56-01-02-03", "0:50:56:01:02:03", "00:50:56:01:02:zz", ""])
    func macFormatRejected(value: String) throws {
        let e = try #require(F.error("ethernet0.address = \"\(value)\"\n" + F.required))
        #expect(e.description == "\(F.vmxPath):1: ethernet0.address = \"\(value)\": not a MAC address, expected six two-digit hex octets separated by ':', e.g. 00:50:56:01:02:03")
    }

    @Test func nicModelAndAddressType() throws {
        let e = try #require(F.error("ethernet3.virtualDev = \"e 1000\"\n" + F.required))
        #expect(e.description.hasPrefix("\(F.vmxPath):1: ethernet3.virtualDev = \"e 1000\": not a valid model name"))
        let e2 = try #require(F.error("ethernet0.addressType = \"dhcp\"\n" + F.required))
        #expect(e2.description.hasSuffix("expected generated, static or vpx"))
        let e3 = try #require(F.error("ethernet0.networkName = \"\"\n" + F.required))
        #expect(e3.description.contains("empty value"))
        let vpx = try F.vm("ethernet2.present = TRUE\nethernet2.addressType = VPX\nethernet2.networkName = \"Lab\"")
        #expect(vpx.networkAdapters[0].addressType == .vpx)
        #expect(vpx.networks == ["Lab"])
    }

    @Test func outOfRangeAdapters() throws {
        let e = try #require(F.error("ethernet4.present = TRUE\n" + F.required))
        #expect(e.description == "\(F.vmxPath):1: ethernet4.present = \"TRUE\": ethernet4 is not supported, expected ethernet0...ethernet3")
        let e2 = try #require(F.error("scsi4.present = TRUE\n" + F.required))
        #expect(e2.description.contains("scsi4 is not supported"))
        let e3 = try #require(F.error("hv.device8.present = TRUE\n" + F.required))
        #expect(e3.description.contains("expected hv.device0...hv.device7"))
        // Absent ones are harmless, and their other keys are kept.
        let c = try F.vm("ethernet7.present = FALSE\nethernet7.virtualDev = x")
        #expect(c.value(forKey: "ethernet7.virtualdev") == "x")
    }

    // MARK: Paths

    @Test func relativePathResolution() throws {
        let dir = F.directory
        let c = try F.configuration("""
            memsize = 64
            hv.kernel = "./guests/../kernel.elf"
            scsi0.present = TRUE
            scsi0:0.present = TRUE
            scsi0:0.fileName = "disks//a.vmdk"
            scsi0:1.present = TRUE
            scsi0:1.fileName = "/abs/b.vmdk"
            hv.serial = "unix:run/console.sock"
            """)
        #expect(c.kernelPath == dir + "/guests/../kernel.elf")
        #expect(c.scsiAdapters[0].disks.map(\.path) == [dir + "/disks/a.vmdk", "/abs/b.vmdk"])
        #expect(c.serial == .unix(dir + "/run/console.sock"))
        let abs = try F.configuration("memsize = 64\nhv.kernel = \"\(dir)/guests/web.elf\"")
        #expect(abs.kernelPath == dir + "/guests/web.elf")
    }

    @Test func relativeVMXPathIsMadeAbsolute() throws {
        let c = try VMConfiguration(file: VMXFile(parsing: "memsize = 64\nhv.kernel = \"\(F.directory)/kernel.elf\"\nscsi0.present = 1\nscsi0:0.present = 1\nscsi0:0.fileName = d.vmdk", path: "sub/x.vmx"))
        #expect(c.directory.hasPrefix("/"))
        #expect(c.directory.hasSuffix("/sub"))
        #expect(c.scsiAdapters[0].disks[0].path == c.directory + "/d.vmdk")
        #expect(c.displayName == "x")
    }

    @Test func kernelMustExist() throws {
        let e = try #require(F.error("memsize = 64\nhv.kernel = \"missing.elf\""))
        #expect(e.description.hasPrefix("\(F.vmxPath):2: hv.kernel = \"missing.elf\": no such file: \(F.directory)/missing.elf, expected"))
        let e2 = try #require(F.error("memsize = 64\nhv.kernel = \"guests\""))
        #expect(e2.description.contains("no such file"))
    }

    /// Without hv.kernel the VM boots its firmware, as ESX does: SeaBIOS by default,
    /// hv.firmware to choose, hv.firmware.log for its debug console, bios.bootOrder.
    @Test func firmwareBootWithoutKernel() throws {
        let c = try F.configuration("memsize = 64\nhv.firmware = bios.bin\nhv.firmware.log = fw.log\nbios.bootOrder = \"HDD, ethernet1,cdrom\"")
        #expect(c.kernelPath == nil)
        #expect(c.boot.firmware == FirmwareConfiguration(imagePath: F.directory + "/bios.bin", logPath: F.directory + "/fw.log",
                                                         bootOrder: [.hardDisk, .network(1), .cdrom]))
        let e = try #require(F.error("memsize = 64\nhv.firmware = nope.bin"))
        #expect(e.description.hasPrefix("\(F.vmxPath):2: hv.firmware = \"nope.bin\": no such file: \(F.directory)/nope.bin, expected"))
        // Both: the BIOS boots the kernel (handed over by fw_cfg).
        let both = try F.configuration("memsize = 64\nhv.kernel = kernel.elf\nhv.firmware = bios.bin")
        #expect(both.boot.kernelPath == F.directory + "/kernel.elf" && both.boot.firmware?.imagePath == F.directory + "/bios.bin")
        for bad in ["hdd,hdd", "usb", "hdd,cdrom,floppy,ethernet0", "ethernet4", "hdd,,cdrom"] {
            let e = try #require(F.error("memsize = 64\nhv.firmware = bios.bin\nbios.bootOrder = \"\(bad)\""), "\(bad)")
            #expect(e.key == "bios.bootOrder" && e.description.contains("expected a comma-separated list"), "\(e)")
        }
        if FileManager.default.fileExists(atPath: FirmwareConfiguration.defaultImagePath) {
            let d = try F.configuration("memsize = 64")
            #expect(d.boot.firmware == FirmwareConfiguration())
            #expect(d.boot.firmware?.bootOrder == [.floppy, .hardDisk, .cdrom])
        }
    }

    // MARK: hv.*

    @Test func serialSinks() throws {
        #expect(try F.vm("hv.serial = NONE").serial == .none)
        #expect(try F.vm("hv.serial = stdout").serial == .stdout)
        #expect(try F.vm("hv.serial = \"file:/var/log/vm.log\"").serial == .file("/var/log/vm.log"))
        for bad in ["tcp:1234", "file:", "unix:  "] {
            let e = try #require(F.error("hv.serial = \"\(bad)\"\n" + F.required), "\(bad)")
            #expect(e.description.hasPrefix("\(F.vmxPath):1: hv.serial = \"\(bad)\": "))
            #expect(e.description.hasSuffix("expected stdout, none, file:<path> or unix:<path>"))
        }
        let long = String(repeating: "s", count: 120)
        let e = try #require(F.error("hv.serial = \"unix:/\(long)\"\n" + F.required))
        #expect(e.description.contains("at most 107 bytes"))
    }

    @Test func bootProtocolAndPool() throws {
        let c = try F.vm("hv.boot = ELF64\nhv.sched.pool = \"research\"\nhv.cmdline = \"a=b\"")
        #expect(c.boot.bootProtocol == .elf64)
        #expect(c.schedulerPool == "research")
        #expect(c.commandLine == "a=b")
        let e = try #require(F.error("hv.boot = \"bios\"\n" + F.required))
        #expect(e.description == "\(F.vmxPath):1: hv.boot = \"bios\": unknown value, expected pvh or elf64")
    }

    @Test func genericDevices() throws {
        let e = try #require(F.error("hv.device3.present = TRUE\n" + F.required))
        #expect(e.description.hasPrefix("\(F.vmxPath):1: hv.device3.present = \"TRUE\": the device has no hv.device3.model"))
        let e2 = try #require(F.error("hv.device1.model = \"../evil\"\n" + F.required))
        #expect(e2.description.contains("not a valid model name"))
        let c = try F.vm("hv.device5.model = edu\nhv.device5.present = TRUE\nhv.device5.Latency = 10")
        let d = try #require(c.devices.first)
        #expect(d.kind == .other && d.kind.rawValue == 4 && d.index == 5 && d.modelName == "edu")
        #expect(d.value(forDeviceKey: "LATENCY") == "10")
        #expect(d.value(forDeviceKey: "model") == "edu")
        #expect(d.location == F.vmxPath + ":1")
    }

    @Test func display() throws {
        let c = try F.vm("svga.present = TRUE\nsvga.vramSize = \"16777216\"")
        #expect(c.display == DisplayConfiguration(model: "svga", vramSize: 16 << 20))
        #expect(c.devices.map(\.kind) == [.display])
        let e = try #require(F.error("svga.vramSize = \"1000\"\n" + F.required))
        #expect(e.description.hasPrefix("\(F.vmxPath):1: svga.vramSize = \"1000\": 1000 bytes is out of range"))
        let e2 = try #require(F.error("svga.vramSize = \"5000\"\n" + F.required))
        #expect(e2.description.contains("not a multiple of 4096"))
    }

    // MARK: Devices

    @Test func deviceListOrdering() throws {
        // Written in scrambled order; created in ESX order.
        let c = try F.vm("""
            hv.device7.present = TRUE
            hv.device7.model = "last"
            hv.device0.model = "first-generic"
            hv.device0.present = TRUE
            svga.present = TRUE
            scsi3.present = TRUE
            scsi0.present = TRUE
            scsi0.virtualDev = lsilogic
            ethernet3.present = TRUE
            ethernet3.virtualDev = vmxnet
            ethernet0.present = TRUE
            ethernet1.present = FALSE
            hv.device2.present = FALSE
            hv.device2.model = skipped
            """)
        #expect(c.devices.map(\.prefix) == ["ethernet0", "ethernet3", "scsi0", "scsi3", "svga", "hv.device0", "hv.device7"])
        #expect(c.devices.map(\.kind) == [.nic, .nic, .scsi, .scsi, .display, .other, .other])
        #expect(c.devices.map(\.modelName) == ["vlance", "vmxnet", "lsilogic", "buslogic", "svga", "first-generic", "last"])
        #expect(c.devices.map(\.kind.rawValue) == [1, 1, 2, 2, 3, 4, 4])
        #expect(c.devices.map(\.index) == [0, 3, 0, 3, 0, 0, 7])
    }

    @Test func devicePrefixDoesNotMatchLongerIndex() throws {
        let f = try F.file("ethernet1.present = TRUE\nethernet10.foo = x\nethernet1.foo = y\n" + F.required)
        let c = try VMConfiguration(file: f)
        let d = try #require(c.device(prefix: "ethernet1"))
        #expect(d.value(forDeviceKey: "foo") == "y")
        #expect(d.entries.count == 2)
    }

    // MARK: Error messages

    /// Every validation error names file:line, the key as written, the bad value and
    /// what was expected.
    @Test(arguments: [
        ("memSize", "\"7\""), ("NumVCPUs", "0"), ("ethernet0.Present", "maybe"),
        ("ethernet1.virtualDev", "\"\""), ("ethernet2.addressType", "fixed"),
        ("ethernet0.address", "zz"), ("ethernet0.generatedAddress", "zz"),
        ("scsi0.present", "2"), ("scsi1.virtualDev", "\"a b\""), ("scsi0:7.fileName", "a.vmdk"),
        ("scsi0:1.mode", "readonly"), ("svga.present", "x"), ("svga.vramSize", "big"),
        ("sched.cpu.shares", "lots"), ("sched.cpu.min", "200"), ("sched.cpu.max", "-1"),
        ("sched.cpu.affinity", "a"), ("sched.cpu.htsharing", "some"), ("sched.mem.min", "99999"),
        ("sched.mem.max", "0"), ("sched.mem.shares", "0"), ("hv.kernel", "nope.elf"),
        ("hv.boot", "uefi"), ("hv.serial", "pipe"), ("hv.sched.pool", "\"\""),
        ("hv.cpuid.vmware", "sure"), ("hv.device0.present", "yes"), ("hv.device0.model", "\"\""),
        ("displayName", "\"\""),
    ])
    func errorNamesFileLineKeyValue(key: String, value: String) throws {
        let text = "memsize = 64\n\(key) = \(value)\nhv.kernel = kernel.elf\n"
            .replacingOccurrences(of: "memsize = 64\nmemSize", with: "memSize")
        let line = key == "memSize" ? 1 : 2
        let f = try F.file(key == "hv.kernel" ? "memsize = 64\nhv.kernel = \(value)" : text)
        let problems = VMConfiguration.problems(in: f)
        let e = try #require(problems.first, "\(key) = \(value) was accepted")
        let shownValue = value.hasPrefix("\"") ? String(value.dropFirst().dropLast()) : value
        #expect(e.description.hasPrefix("\(F.vmxPath):\(line): \(key) = \"\(shownValue)\": "), "\(e)")
        #expect(e.description.contains(", expected "), "\(e)")
        #expect(e.line == line && e.key == key)
    }

    @Test func problemsAreListedInFileOrder() throws {
        let f = try F.file("""
            numvcpus = 8
            ethernet0.address = "bad"
            sched.cpu.shares = "lots"
            """)
        let p = VMConfiguration.problems(in: f)
        // No hv.kernel is no problem: the VM boots its firmware.
        #expect(p.map(\.line) == [1, 2, 3, nil])
        #expect(p.compactMap(\.key).suffix(1) == ["memsize"])
        do {
            _ = try VMConfiguration(file: f)
            Issue.record("expected an error")
        } catch {
            #expect(error.errors == p)
        }
    }

    /// Syntax errors and bad values are reported together, in file order; a key whose
    /// line has a syntax error is not reported again as missing.
    @Test func syntaxAndValueProblemsAreReportedTogether() throws {
        let path = F.directory + "/mixed.vmx"
        let text = """
            memsize = "63"
            numvcpus "2"
            hv.kernel = "kernel.elf
            ethernet0.present = "TRUE"
            ethernet0.virtualDev = "bad model"
            scsi0.present = TRUE
            scsi0:0.present = TRUE
            scsi0:0.fileName = a.vmdk
            scsi0:0.undoableAction = "ask"
            sched.cpu.shares = "lots"
            """
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        let check = VMConfiguration.check(contentsOf: path)
        #expect(check.problems.map(\.line) == [1, 2, 3, 5, 9, 10], "\(check.problems)")
        #expect(check.problems.map(\.key) == ["memsize", nil, nil, "ethernet0.virtualDev", "scsi0:0.undoableAction", "sched.cpu.shares"])
        #expect(check.problems.allSatisfy { $0.description.hasPrefix(path + ":") && $0.description.contains(", expected ") })
        #expect(check.configuration == nil)
        #expect(check.memoryMiB == nil && check.boot == nil)
        // The NIC's model is invalid: only the SCSI adapter goes on to the plugin check.
        #expect(check.devices.map(\.prefix) == ["scsi0"])
        do {
            _ = try VMConfiguration(contentsOf: path)
            Issue.record("expected an error")
        } catch {
            #expect(error.errors == check.problems)
        }
    }

    /// What is valid is kept for the checks that follow when other keys are wrong.
    @Test func checkKeepsTheValidParts() throws {
        let f = try F.file("memsize = 64\nhv.kernel = kernel.elf\nhv.cmdline = quiet\nnumvcpus = 9\nhv.device0.present = TRUE\nhv.device0.model = edu")
        let check = VMConfiguration.check(file: f)
        #expect(check.problems.map(\.key) == ["numvcpus"])
        #expect(check.memoryMiB == 64)
        #expect(check.boot == BootConfiguration(kernelPath: F.directory + "/kernel.elf", commandLine: "quiet"))
        #expect(check.devices.map(\.modelName) == ["edu"])
        let badBoot = VMConfiguration.check(file: try F.file("memsize = 64\nhv.kernel = kernel.elf\nhv.boot = uefi"))
        #expect(badBoot.boot == nil && badBoot.problems.map(\.key) == ["hv.boot"])
    }
}
