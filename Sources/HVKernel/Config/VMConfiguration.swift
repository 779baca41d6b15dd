import HVHostIO
import HVSched
import HVSupport

/// The validated, typed view of a VM's `.vmx` file.
///
/// Keys follow ESX Server 2.x where ESX has them (`memsize`, `numvcpus`, `ethernetN.*`,
/// `scsiN.*`, `scsiN:M.*`, `svga.*`, `sched.cpu.*`, `sched.mem.*`); project keys start
/// with `hv.` (`hv.kernel`, `hv.cmdline`, `hv.boot`, `hv.firmware`, `hv.firmware.log`, `hv.serial`, `hv.sched.pool`,
/// `hv.cpuid.vmware`, `hv.deviceN.*`). Keys are case-insensitive. Unknown keys are kept
/// (plugins read their own, e.g. `ethernet0.foo`) and are not errors; a known key with
/// a bad value always is, and the error names file:line, key, value and what was expected.
///
/// Defaults worth knowing: `numvcpus` 1; NICs "vlance" on "VM Network" with a generated
/// address; SCSI adapters "buslogic"; disks `persistent` (undoable ones `undoableAction` keep); `svga.present` FALSE (no
/// display unless asked for); CPU shares normal, min 0 %, max 100 %, affinity all,
/// htsharing any; memory shares normal, min 0, max = memsize; boot `pvh`; serial `stdout`;
/// scheduler pool "default"; reset limit 5 resets in 10 s; device calls reported after
/// 100 ms and failing the VM after 5 s.
package struct VMConfiguration: Sendable {
    /// Every entry of the file, including keys this type does not interpret.
    package let file: VMXFile
    /// The `.vmx` path as given.
    package var path: String { file.path }
    /// The absolute directory of the `.vmx` file; relative paths in it resolve here.
    let directory: String

    /// `displayName`, default: the file name without its extension.
    package var displayName: String
    /// `guestOS`, as written.
    var guestOS: String?
    /// `config.version` (accepted, not interpreted).
    var configVersion: String?
    /// `virtualHW.version` (accepted, not interpreted).
    var virtualHardwareVersion: String?

    /// `memsize`: guest RAM in MiB, 4...65536, a multiple of 4.
    package var memoryMiB: Int
    /// `numvcpus`: 1 or 2.
    package var vcpuCount: Int
    /// `sched.cpu.*`.
    var cpuScheduling: CPUSchedulingParameters
    /// `sched.mem.*`.
    var memoryScheduling: MemorySchedulingParameters

    /// `hv.kernel`, `hv.cmdline`, `hv.boot`.
    package var boot: BootConfiguration
    /// `hv.serial`.
    package var serial: SerialSetting
    /// `hv.sched.pool`: the scheduler pool the VM's vCPUs join.
    var schedulerPool: String
    /// `hv.cpuid.vmware`: advertise the VMware hypervisor CPUID signature.
    var advertisesVMwareHypervisor: Bool
    /// `hv.resetLimit`: guest resets within a window that end the VM; nil ("off"): none.
    package var resetLimit: ResetLimit? = .standard
    /// `hv.deviceCallLimit`: how long a vCPU's device call may run before it is reported
    /// and its pCPU slot given back, and before the VM is failed; nil ("off"): unwatched.
    package var deviceCallLimits: DeviceCallWatch.Limits? = .standard
    /// `RemoteDisplay.vnc.*`: the VM's VNC server.
    package var remoteDisplay = RemoteDisplayConfiguration()

    /// Present NICs, by index.
    var networkAdapters: [NetworkAdapterConfiguration]
    /// Present SCSI adapters, by index, with their present disks.
    var scsiAdapters: [SCSIAdapterConfiguration]
    /// The display, when `svga.present` is TRUE.
    var display: DisplayConfiguration?
    /// The device instances to create, in this order: ethernet0...3, scsi0...3, svga,
    /// hv.device0...7 (present ones only).
    package var devices: [DeviceConfiguration]
    /// The distinct virtual switches the NICs connect to, in NIC order.
    var networks: [String]

    /// Guest RAM in bytes.
    var memoryBytes: UInt64 { UInt64(memoryMiB) << 20 }
    /// `hv.kernel`, resolved; nil when the VM boots its firmware.
    package var kernelPath: String? { boot.kernelPath }
    /// `hv.cmdline`, "" when absent.
    package var commandLine: String { boot.commandLine }

    /// Reads, parses and validates the `.vmx` file at `path`; throws every problem
    /// (syntax and values) in file order.
    package init(contentsOf path: String) throws(ConfigErrors) {
        let check = Self.check(contentsOf: path)
        guard let configuration = check.configuration else { throw ConfigErrors(check.problems) }
        self = configuration
    }

    /// Validates a parsed file; throws every problem in file order (problems about
    /// missing keys come last).
    package init(file: VMXFile) throws(ConfigErrors) {
        let check = Self.check(file: file)
        guard let configuration = check.configuration else { throw ConfigErrors(check.problems) }
        self = configuration
    }

    /// Every problem in `file`, in file order (missing required keys last).
    package static func problems(in file: VMXFile) -> [ConfigError] {
        check(file: file).problems
    }

    /// Reads and validates the file at `path`, keeping what is valid (see
    /// `VMConfigurationCheck`): a syntax error on one line does not hide the problems of
    /// the others.
    package static func check(contentsOf path: String) -> VMConfigurationCheck {
        let (file, syntaxProblems) = VMXFile.read(contentsOf: path)
        guard let file else {
            return VMConfigurationCheck(file: nil, problems: syntaxProblems, configuration: nil, devices: [],
                                        boot: nil, memoryMiB: nil)
        }
        return check(file: file, syntaxProblems: syntaxProblems)
    }

    /// Validates `file`; `syntaxProblems` are those `VMXFile.parse` found in it.
    package static func check(file: VMXFile, syntaxProblems: [ConfigError] = []) -> VMConfigurationCheck {
        let v = Validator(file: file)
        let result = v.run()
        let problems = ConfigErrors.inFileOrder(syntaxProblems + v.problems)
        return VMConfigurationCheck(
            file: file, problems: problems, configuration: problems.isEmpty ? result : nil,
            devices: v.validDevices, boot: v.validBoot, memoryMiB: v.validMemoryMiB)
    }

    fileprivate init(file: VMXFile, directory: String, displayName: String, guestOS: String?,
                     configVersion: String?, virtualHardwareVersion: String?, memoryMiB: Int,
                     vcpuCount: Int, cpuScheduling: CPUSchedulingParameters,
                     memoryScheduling: MemorySchedulingParameters, boot: BootConfiguration,
                     serial: SerialSetting, schedulerPool: String, advertisesVMwareHypervisor: Bool,
                     networkAdapters: [NetworkAdapterConfiguration],
                     scsiAdapters: [SCSIAdapterConfiguration], display: DisplayConfiguration?,
                     devices: [DeviceConfiguration], networks: [String]) {
        self.file = file
        self.directory = directory
        self.displayName = displayName
        self.guestOS = guestOS
        self.configVersion = configVersion
        self.virtualHardwareVersion = virtualHardwareVersion
        self.memoryMiB = memoryMiB
        self.vcpuCount = vcpuCount
        self.cpuScheduling = cpuScheduling
        self.memoryScheduling = memoryScheduling
        self.boot = boot
        self.serial = serial
        self.schedulerPool = schedulerPool
        self.advertisesVMwareHypervisor = advertisesVMwareHypervisor
        self.networkAdapters = networkAdapters
        self.scsiAdapters = scsiAdapters
        self.display = display
        self.devices = devices
        self.networks = networks
    }

    /// Any key's value, case-insensitive (including keys not interpreted here).
    func value(forKey key: String) -> String? { file.value(forKey: key) }
    /// Any key's entry, case-insensitive.
    package func entry(forKey key: String) -> VMXFile.Entry? { file.entry(forKey: key) }

    /// The device instance with `prefix` ("ethernet0", "svga", "hv.device2"), if present.
    func device(prefix: String) -> DeviceConfiguration? {
        let p = prefix.lowercased()
        return devices.first { $0.prefix.lowercased() == p }
    }

    /// `hv_sched_params.shares` of each vCPU: the VM's CPU shares divided among its vCPUs.
    var perVCPUShares: UInt32 { cpuScheduling.sharesPerVCPU(vcpus: vcpuCount) }

    // MARK: Limits

    static let memoryRange = 4...65536
    static let vcpuRange = 1...2
    static let networkAdapterIndices = 0...3
    static let scsiAdapterIndices = 0...3
    static let genericDeviceIndices = 0...7
    static let maximumShares = 1_000_000
}

// MARK: - Validation

/// Reads one file's keys into typed values, collecting every problem.
private final class Validator {
    package typealias Entry = VMXFile.Entry
    let file: VMXFile
    let directory: String
    var problems: [ConfigError] = []
    /// What was valid, for the checks that follow (plugins, kernel) when other keys
    /// have problems: devices with a valid model key, the boot settings, memsize.
    private(set) var validDevices: [DeviceConfiguration] = []
    private(set) var validBoot: BootConfiguration?
    private(set) var validMemoryMiB: Int?

    init(file: VMXFile) {
        self.file = file
        self.directory = ConfigFiles.absoluteDirectory(of: file.path)
    }

    // MARK: Reporting

    func report(_ e: Entry, _ problem: String, expected: String) {
        problems.append(ConfigError(path: file.path, line: e.line, key: e.key, value: e.value,
                                    problem: problem, expected: expected))
    }

    func reportMissing(_ key: String, expected: String) {
        // A key whose line has a syntax error is reported there already.
        if file.refusedKeys.contains(key.lowercased()) { return }
        problems.append(ConfigError(path: file.path, line: nil, key: key, problem: "missing",
                                    expected: expected))
    }

    func entry(_ key: String) -> Entry? { file.entry(forKey: key) }

    // MARK: Typed readers (each reports and returns the default on a bad value)

    static let boolExpected = "TRUE or FALSE (also \"1\" or \"0\")"

    func parseBool(_ s: String) -> Bool? {
        switch s.trimmingSpaces.lowercased() {
        case "true", "1": true
        case "false", "0": false
        default: nil
        }
    }

    func bool(_ key: String, default d: Bool) -> Bool {
        guard let e = entry(key) else { return d }
        guard let b = parseBool(e.value) else {
            report(e, "not a boolean", expected: Self.boolExpected)
            return d
        }
        return b
    }

    /// A decimal integer (digits only, no sign); nil for anything else.
    func parseInt(_ s: String) -> Int? {
        let t = s.trimmingSpaces
        guard !t.isEmpty, t.count <= 18, t.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return Int(t)
    }

    func int(_ key: String, in range: ClosedRange<Int>, unit: String, expected: String) -> Int? {
        guard let e = entry(key) else { return nil }
        guard let n = parseInt(e.value) else {
            report(e, "not a whole number", expected: expected)
            return nil
        }
        guard range.contains(n) else {
            report(e, "\(n)\(unit) is out of range", expected: expected)
            return nil
        }
        return n
    }

    static let modelExpected = "a plugin model name of letters, digits, '_', '.', '+' or '-' (e.g. vlance)"

    func isModelName(_ s: String) -> Bool {
        guard let first = s.unicodeScalars.first, s.unicodeScalars.count <= 64 else { return false }
        func ok(_ c: Unicode.Scalar) -> Bool {
            switch c {
            case "a"..."z", "A"..."Z", "0"..."9", "_", ".", "+", "-": true
            default: false
            }
        }
        return first != "." && first != "-" && s.unicodeScalars.allSatisfy(ok)
    }

    /// The model name, `d` when the key is absent, nil (reported) when it is invalid.
    func model(_ key: String, default d: String) -> String? {
        guard let e = entry(key) else { return d }
        let name = e.value.trimmingSpaces
        guard isModelName(name) else {
            report(e, name.isEmpty ? "empty model name" : "not a valid model name", expected: Self.modelExpected)
            return nil
        }
        return name
    }

    func nonEmptyString(_ key: String, default d: String?, expected: String) -> String? {
        guard let e = entry(key) else { return d }
        if e.value.trimmingSpaces.isEmpty {
            report(e, "empty value", expected: expected)
            return d
        }
        return e.value
    }

    func choice<T>(_ key: String, _ options: [(String, T)], default d: T) -> T {
        guard let e = entry(key) else { return d }
        let v = e.value.trimmingSpaces.lowercased()
        if let hit = options.first(where: { $0.0 == v }) { return hit.1 }
        report(e, "unknown value", expected: options.map(\.0).joined(separator: ", ", lastSeparator: " or "))
        return d
    }

    func shares(_ key: String, unitHint: String) -> ShareAllocation {
        guard let e = entry(key) else { return .normal }
        let expected = "low, normal, high or a whole number of shares 1...\(VMConfiguration.maximumShares) (\(unitHint))"
        switch e.value.trimmingSpaces.lowercased() {
        case "low": return .low
        case "normal": return .normal
        case "high": return .high
        default:
            guard let n = parseInt(e.value) else {
                report(e, "not a share level or number", expected: expected)
                return .normal
            }
            guard (1...VMConfiguration.maximumShares).contains(n) else {
                report(e, "\(n) shares is out of range", expected: expected)
                return .normal
            }
            return .custom(UInt32(n))
        }
    }

    /// "50" or "50%", in `range`.
    /// `note` is appended to the out-of-range message (only for values below the range
    /// when `onlyBelowRange`).
    func percent(_ key: String, in range: ClosedRange<Int>, default d: Int, what note: String = "",
                 onlyBelowRange: Bool = false) -> Int {
        guard let e = entry(key) else { return d }
        let expected = "a percentage of one CPU per vCPU, \(range.lowerBound)...\(range.upperBound) (\"50\" or \"50%\")"
        var t = e.value.trimmingSpaces
        if t.hasSuffix("%") { t.removeLast() }
        guard let n = parseInt(t) else {
            report(e, "not a percentage", expected: expected)
            return d
        }
        guard range.contains(n) else {
            let shownNote = !onlyBelowRange || n < range.lowerBound ? note : ""
            report(e, "\(n)% is out of range\(shownNote)", expected: expected)
            return d
        }
        return n
    }

    // MARK: Key patterns

    /// "<head><digits><sep><rest>" → (digits, rest), e.g. ("ethernet", ".") on
    /// "ethernet12.present" → (12, "present").
    static func indexed(_ normalizedKey: String, head: String, separator: Character) -> (Int, String)? {
        guard normalizedKey.hasPrefix(head) else { return nil }
        let tail = normalizedKey.dropFirst(head.count)
        let digits = tail.prefix { $0.isASCII && $0.isNumber }
        guard !digits.isEmpty, digits.count <= 6, let n = Int(digits) else { return nil }
        let after = tail.dropFirst(digits.count)
        guard after.first == separator else { return nil }
        return (n, String(after.dropFirst()))
    }

    /// Reports `.present = TRUE` on an index outside `range` for keys `<head>N.present`.
    func checkIndexRange(head: String, displayHead: String, range: ClosedRange<Int>) {
        for e in file.entries {
            guard let (n, rest) = Self.indexed(e.normalizedKey, head: head, separator: "."),
                  rest == "present", !range.contains(n) else { continue }
            if parseBool(e.value) == false { continue }
            report(e, "\(displayHead)\(n) is not supported",
                   expected: "\(displayHead)\(range.lowerBound)...\(displayHead)\(range.upperBound)")
        }
    }

    // MARK: Whole file

    func run() -> VMConfiguration? {
        // General.
        let displayName = nonEmptyString("displayName", default: ConfigFiles.baseName(file.path),
                                         expected: "a name for the VM") ?? ConfigFiles.baseName(file.path)
        let guestOS = entry("guestOS")?.value
        let configVersion = entry("config.version")?.value
        let hwVersion = entry("virtualHW.version")?.value

        // Memory and CPUs.
        let memExpected = "a multiple of 4 from 4 to 65536 (MiB)"
        var memory = 0
        if entry("memsize") == nil {
            reportMissing("memsize", expected: "the guest memory size in MiB, e.g. memsize = \"256\"")
        } else if let m = int("memsize", in: VMConfiguration.memoryRange, unit: " MiB", expected: memExpected) {
            if m % 4 != 0 {
                report(entry("memsize")!, "\(m) MiB is not a multiple of 4", expected: memExpected)
            } else {
                memory = m
            }
        }
        var vcpus = 1
        if let e = entry("numvcpus") {
            if let n = parseInt(e.value), VMConfiguration.vcpuRange.contains(n) {
                vcpus = n
            } else {
                report(e, "unsupported number of vCPUs", expected: "1 or 2")
            }
        }

        let cpu = cpuScheduling()
        let mem = memoryScheduling(memoryMiB: memory)

        // Project keys.
        let boot = bootConfiguration()
        let serial = serialSink()
        let pool = nonEmptyString("hv.sched.pool", default: "default", expected: "a scheduler pool name") ?? "default"
        let vmwareCPUID = bool("hv.cpuid.vmware", default: false)

        // Devices.
        var devices: [DeviceConfiguration] = []
        let nics = networkAdapters(into: &devices)
        let scsis = scsiAdapters(into: &devices)
        let display = displayAdapter(into: &devices)
        genericDevices(into: &devices)

        var networks: [String] = []
        for nic in nics where !networks.contains(nic.networkName) { networks.append(nic.networkName) }

        validDevices = devices
        validBoot = boot
        validMemoryMiB = memory > 0 ? memory : nil
        var resetLimit: ResetLimit? = .standard
        if let e = entry("hv.resetLimit") {
            if let parsed = ResetLimit.parse(e.value) { resetLimit = parsed }
            else { report(e, "not a reset limit", expected: ResetLimit.expected) }
        }
        var deviceCallLimits: DeviceCallWatch.Limits? = .standard
        if let e = entry("hv.deviceCallLimit") {
            if let parsed = DeviceCallWatch.Limits.parse(e.value) { deviceCallLimits = parsed }
            else { report(e, "not a device call limit", expected: DeviceCallWatch.Limits.expected) }
        }
        let remoteDisplay = remoteDisplay()
        guard problems.isEmpty, let boot else { return nil }
        var configuration = VMConfiguration(
            file: file, directory: directory, displayName: displayName, guestOS: guestOS,
            configVersion: configVersion, virtualHardwareVersion: hwVersion, memoryMiB: memory,
            vcpuCount: vcpus, cpuScheduling: cpu, memoryScheduling: mem, boot: boot, serial: serial,
            schedulerPool: pool, advertisesVMwareHypervisor: vmwareCPUID, networkAdapters: nics,
            scsiAdapters: scsis, display: display, devices: devices, networks: networks)
        configuration.resetLimit = resetLimit
        configuration.deviceCallLimits = deviceCallLimits
        configuration.remoteDisplay = remoteDisplay
        return configuration
    }

    // MARK: sched.*

    func cpuScheduling() -> CPUSchedulingParameters {
        var p = CPUSchedulingParameters()
        p.shares = shares("sched.cpu.shares", unitHint: "normal is 1000 per vCPU")
        p.minPercent = percent("sched.cpu.min", in: 0...100, default: 0)
        // A limit of 0 % would never run the VM (and hv_sched_params.max_pct is 1...100).
        p.maxPercent = percent("sched.cpu.max", in: 1...100, default: 100,
                               what: " (a limit of 0% would never run the VM)", onlyBelowRange: true)
        if p.minPercent > p.maxPercent, let e = entry("sched.cpu.min") {
            report(e, "the reservation \(p.minPercent)% is above sched.cpu.max (\(p.maxPercent)%)",
                   expected: "sched.cpu.min <= sched.cpu.max")
        }
        if let e = entry("sched.cpu.affinity") { p.affinity = affinity(e) }
        p.htSharing = choice("sched.cpu.htsharing",
                             [("any", HTSharing.any), ("internal", .internal), ("none", .none)], default: .any)
        return p
    }

    func affinity(_ e: Entry) -> CPUAffinity {
        let expected = "\"all\" or a comma-separated list of logical CPU numbers 0...63 (ranges like 0-3 allowed)"
        let t = e.value.trimmingSpaces
        if t.lowercased() == "all" { return .all }
        var cpus = Set<Int>()
        for item in t.split(separator: ",", omittingEmptySubsequences: false) {
            let s = String(item).trimmingSpaces
            let bounds = s.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false).map { parseInt(String($0)) }
            guard !s.isEmpty, let lo = bounds.first ?? nil, let hi = bounds.last ?? nil, lo <= hi else {
                report(e, s.isEmpty ? "empty item in the CPU list" : "\"\(s)\" is not a CPU number", expected: expected)
                return .all
            }
            guard hi < 64 else {
                report(e, "CPU \(hi) is beyond the supported 64 logical CPUs", expected: expected)
                return .all
            }
            cpus.formUnion(lo...hi)
        }
        return .cpus(cpus.sorted())
    }

    func memoryScheduling(memoryMiB: Int) -> MemorySchedulingParameters {
        let size = memoryMiB > 0 ? memoryMiB : VMConfiguration.memoryRange.upperBound
        var p = MemorySchedulingParameters(maxMiB: size)
        p.shares = shares("sched.mem.shares", unitHint: "normal is 10 per MiB of memsize")
        let sizeNote = memoryMiB > 0 ? "memsize (\(memoryMiB))" : "memsize"
        if let m = int("sched.mem.min", in: 0...size, unit: " MiB",
                       expected: "a size in MiB from 0 to \(sizeNote)") { p.minMiB = m }
        if let m = int("sched.mem.max", in: 1...size, unit: " MiB",
                       expected: "a size in MiB from 1 to \(sizeNote)") { p.maxMiB = m }
        if p.minMiB > p.maxMiB, let e = entry("sched.mem.min") {
            report(e, "the reservation \(p.minMiB) MiB is above sched.mem.max (\(p.maxMiB) MiB)",
                   expected: "sched.mem.min <= sched.mem.max")
        }
        return p
    }

    // MARK: hv.*

    /// With `hv.kernel`: nil (reported) unless both hv.kernel and hv.boot are valid.
    /// Without it the VM boots its firmware: nil (reported) unless `hv.firmware` (or the
    /// default SeaBIOS image), `hv.firmware.log` and `bios.bootOrder` are valid.
    func bootConfiguration() -> BootConfiguration? {
        let before = problems.count
        let proto = choice("hv.boot", [("pvh", BootProtocol.pvh), ("elf64", .elf64)], default: .pvh)
        let protocolValid = problems.count == before
        let cmdline = entry("hv.cmdline")?.value ?? ""
        guard let e = entry("hv.kernel") else {
            // A kernel line with a syntax error is reported there; do not fall back to firmware.
            if file.refusedKeys.contains("hv.kernel") { return nil }
            return firmwareConfiguration().map(BootConfiguration.init(firmware:))
        }
        // hv.kernel with hv.firmware: the BIOS boots the kernel (handed over by fw_cfg).
        let firmware = entry("hv.firmware") == nil ? nil : firmwareConfiguration()
        if entry("hv.firmware") != nil && firmware == nil { return nil }
        let expected = "the path of an existing guest ELF file, absolute or relative to \(directory)"
        guard !e.value.trimmingSpaces.isEmpty else {
            report(e, "empty path", expected: expected)
            return nil
        }
        let path = HostFile.resolve(e.value, relativeTo: directory)
        guard ConfigFiles.isRegularFile(path) else {
            report(e, "no such file: \(path)", expected: expected)
            return nil
        }
        var initrd: String?
        if let i = entry("hv.initrd") {
            let p = HostFile.resolve(i.value, relativeTo: directory)
            guard !i.value.trimmingSpaces.isEmpty, ConfigFiles.isRegularFile(p) else {
                report(i, i.value.trimmingSpaces.isEmpty ? "empty path" : "no such file: \(p)",
                       expected: "the initrd (Linux) or module (multiboot) file, absolute or relative to \(directory)")
                return nil
            }
            initrd = p
        }
        guard protocolValid else { return nil }
        var boot = BootConfiguration(kernelPath: path, commandLine: cmdline, bootProtocol: proto, initrdPath: initrd)
        boot.firmware = firmware
        return boot
    }

    func firmwareConfiguration() -> FirmwareConfiguration? {
        let before = problems.count
        var firmware = FirmwareConfiguration()
        if let e = entry("hv.firmware") {
            let expected = "the path of an existing BIOS image, absolute or relative to \(directory)"
            let path = HostFile.resolve(e.value, relativeTo: directory)
            if e.value.trimmingSpaces.isEmpty {
                report(e, "empty path", expected: expected)
            } else if !ConfigFiles.isRegularFile(path) {
                report(e, "no such file: \(path)", expected: expected)
            }
            firmware.imagePath = path
        } else if !ConfigFiles.isRegularFile(firmware.imagePath) {
            reportMissing("hv.kernel", expected: "a guest ELF (hv.kernel = \"guest.elf\"), or a BIOS image to boot: "
                          + "hv.firmware = \"bios.bin\" (the default, \(firmware.imagePath), is not installed: apt-get install seabios)")
        }
        if let e = entry("hv.firmware.log") {
            if e.value.trimmingSpaces.isEmpty {
                report(e, "empty path", expected: "a file for the firmware's debug log, absolute or relative to \(directory)")
            }
            firmware.logPath = HostFile.resolve(e.value, relativeTo: directory)
        }
        if let e = entry("bios.bootOrder") { firmware.bootOrder = bootOrder(e) }
        return problems.count == before ? firmware : nil
    }

    /// `bios.bootOrder = "hdd,ethernet0,cdrom"`: up to three devices (the CMOS boot
    /// order the firmware reads has three slots).
    func bootOrder(_ e: Entry) -> [FirmwareBootDevice] {
        let expected = "a comma-separated list of up to 3 of hdd, cdrom, floppy, ethernet0...3 (e.g. \"hdd,cdrom\")"
        var order: [FirmwareBootDevice] = []
        for item in e.value.split(separator: ",", omittingEmptySubsequences: false) {
            let name = String(item).trimmingSpaces.lowercased()
            let device: FirmwareBootDevice
            switch name {
            case "hdd", "disk", "harddisk": device = .hardDisk
            case "cdrom", "cd": device = .cdrom
            case "floppy": device = .floppy
            default:
                guard name.hasPrefix("ethernet"), let n = parseInt(String(name.dropFirst(8))),
                      VMConfiguration.networkAdapterIndices.contains(n) else {
                    report(e, name.isEmpty ? "empty item in the boot order" : "unknown boot device \"\(name)\"", expected: expected)
                    return FirmwareConfiguration.defaultBootOrder
                }
                device = .network(n)
            }
            guard !order.contains(device) else {
                report(e, "\(device) is listed twice", expected: expected)
                return FirmwareConfiguration.defaultBootOrder
            }
            order.append(device)
        }
        guard order.count <= 3 else {
            report(e, "\(order.count) devices", expected: expected)
            return FirmwareConfiguration.defaultBootOrder
        }
        return order
    }

    func serialSink() -> SerialSetting {
        guard let e = entry("hv.serial") else { return .stdout }
        let expected = "stdout, none, file:<path> or unix:<path>"
        let v = e.value.trimmingSpaces
        let lower = v.lowercased()
        switch lower {
        case "stdout": return .stdout
        case "none": return .none
        default: break
        }
        for (scheme, make) in [("file:", SerialSetting.file), ("unix:", SerialSetting.unix)] where lower.hasPrefix(scheme) {
            let p = String(v.dropFirst(scheme.count))
            guard !p.trimmingSpaces.isEmpty else {
                report(e, "missing path after \"\(scheme)\"", expected: expected)
                return .stdout
            }
            let resolved = HostFile.resolve(p, relativeTo: directory)
            if scheme == "unix:" && resolved.utf8.count > 107 {
                report(e, "socket path is \(resolved.utf8.count) bytes long",
                       expected: "a Unix socket path of at most 107 bytes")
                return .stdout
            }
            return make(resolved)
        }
        report(e, "unknown serial sink", expected: expected)
        return .stdout
    }

    // MARK: Devices

    func networkAdapters(into devices: inout [DeviceConfiguration]) -> [NetworkAdapterConfiguration] {
        checkIndexRange(head: "ethernet", displayHead: "ethernet", range: VMConfiguration.networkAdapterIndices)
        var result: [NetworkAdapterConfiguration] = []
        let macExpected = "six two-digit hex octets separated by ':', e.g. 00:50:56:01:02:03"
        let staticExpected = "an address from 00:50:56:00:00:00 to 00:50:56:3F:FF:FF"
        for n in VMConfiguration.networkAdapterIndices {
            let p = "ethernet\(n)"
            let present = bool(p + ".present", default: false)
            var nic = NetworkAdapterConfiguration(index: n)
            let modelName = model(p + ".virtualDev", default: "vlance")
            nic.model = modelName ?? "vlance"
            nic.networkName = nonEmptyString(p + ".networkName", default: "VM Network",
                                             expected: "the name of a virtual switch, e.g. \"VM Network\"") ?? "VM Network"
            nic.addressType = choice(p + ".addressType",
                                     [("generated", MACAddressType.generated), ("static", .static), ("vpx", .vpx)],
                                     default: .generated)
            if let e = entry(p + ".address") {
                if let mac = MACAddress(e.value.trimmingSpaces) {
                    if nic.addressType == .static && !mac.isVMwareStatic {
                        report(e, "\(mac) is outside VMware's static address range", expected: staticExpected)
                    } else {
                        nic.address = mac
                    }
                } else {
                    report(e, "not a MAC address", expected: macExpected)
                }
            } else if nic.addressType == .static, let t = entry(p + ".addressType") {
                report(t, "a static address type needs \(p).address", expected: "\(p).address = \"00:50:56:xx:xx:xx\" (\(staticExpected))")
            }
            if let e = entry(p + ".generatedAddress") {
                if let mac = MACAddress(e.value.trimmingSpaces) {
                    nic.generatedAddress = mac
                } else {
                    report(e, "not a MAC address", expected: macExpected)
                }
            }
            guard present else { continue }
            result.append(nic)
            guard modelName != nil else { continue }
            devices.append(DeviceConfiguration(
                kind: .nic, modelName: nic.model, prefix: p, index: n,
                location: (entry(p + ".virtualDev") ?? entry(p + ".present")!).location,
                networkName: nic.networkName, entries: DeviceConfiguration.entries(of: file, prefix: p)))
        }
        return result
    }

    func scsiAdapters(into devices: inout [DeviceConfiguration]) -> [SCSIAdapterConfiguration] {
        checkIndexRange(head: "scsi", displayHead: "scsi", range: VMConfiguration.scsiAdapterIndices)
        let diskKeys: Set<String> = ["present", "filename", "mode", "undoableaction", "devicetype"]
        let unitExpected = "a unit from 0 to 15 other than 7 (7 is the adapter's own SCSI id)"
        // Units out of range, and unit 7, on any adapter.
        for e in file.entries {
            guard let (_, rest) = Self.indexed(e.normalizedKey, head: "scsi", separator: ":") else { continue }
            let digits = rest.prefix { $0.isASCII && $0.isNumber }
            guard !digits.isEmpty, let unit = Int(digits.prefix(6)),
                  rest.dropFirst(digits.count).first == "." else { continue }
            let sub = String(rest.dropFirst(digits.count + 1))
            guard diskKeys.contains(sub), !SCSIAdapterConfiguration.validUnits.contains(unit) else { continue }
            if sub == "present" && parseBool(e.value) == false { continue }
            if sub == "present" || sub == "filename" {
                report(e, unit == SCSIAdapterConfiguration.adapterUnit
                       ? "unit 7 is reserved for the SCSI adapter itself"
                       : "unit \(unit) does not exist on a SCSI adapter", expected: unitExpected)
            }
        }

        var result: [SCSIAdapterConfiguration] = []
        for n in VMConfiguration.scsiAdapterIndices {
            let p = "scsi\(n)"
            let present = bool(p + ".present", default: false)
            var adapter = SCSIAdapterConfiguration(index: n)
            let modelName = model(p + ".virtualDev", default: "buslogic")
            adapter.model = modelName ?? "buslogic"
            for unit in SCSIAdapterConfiguration.validUnits {
                let d = "\(p):\(unit)"
                let diskPresent = bool(d + ".present", default: false)
                let mode = choice(d + ".mode", DiskMode.allCases.map { ($0.rawValue, $0) }, default: .persistent)
                let undoableAction = choice(d + ".undoableAction", UndoableAction.allCases.map { ($0.rawValue, $0) }, default: .keep)
                let kind = choice(d + ".deviceType", VirtualDiskKind.names, default: .hardDisk)
                let fileEntry = entry(d + ".fileName")
                if let f = fileEntry, f.value.trimmingSpaces.isEmpty {
                    report(f, "empty file name", expected: "the path of the disk, relative to the .vmx directory or absolute")
                }
                guard diskPresent else { continue }
                let presentEntry = entry(d + ".present")!
                if !present {
                    report(presentEntry, "the disk is present but \(p) is not",
                           expected: "\(p).present = \"TRUE\" (or \(d).present = \"FALSE\")")
                }
                guard let f = fileEntry else {
                    report(presentEntry, "the disk has no \(d).fileName",
                           expected: "\(d).fileName = \"disk.vmdk\" (relative to the .vmx directory)")
                    continue
                }
                if mode != .undoable, let a = entry(d + ".undoableAction"),
                   UndoableAction(rawValue: a.value.trimmingSpaces.lowercased()) != nil {
                    report(a, "only undoable disks have a power-off action; this disk is \(mode.rawValue)",
                           expected: "\(d).mode = \"undoable\", or no \(d).undoableAction")
                }
                if kind == .cdromImage, let m = entry(d + ".mode") {
                    report(m, "a CD-ROM image is read-only: disk modes do not apply to it",
                           expected: "no \(d).mode for \(d).deviceType = \"cdrom-image\"")
                }
                guard !f.value.trimmingSpaces.isEmpty else { continue }
                adapter.disks.append(VirtualDiskConfiguration(
                    unit: unit, path: HostFile.resolve(f.value, relativeTo: directory), mode: mode, undoableAction: undoableAction,
                    kind: kind, location: f.location))
            }
            guard present else { continue }
            result.append(adapter)
            guard modelName != nil else { continue }
            devices.append(DeviceConfiguration(
                kind: .scsi, modelName: adapter.model, prefix: p, index: n,
                location: (entry(p + ".virtualDev") ?? entry(p + ".present")!).location,
                disks: adapter.disks, entries: DeviceConfiguration.entries(of: file, prefix: p)))
        }
        return result
    }

    func displayAdapter(into devices: inout [DeviceConfiguration]) -> DisplayConfiguration? {
        let present = bool("svga.present", default: false)
        var display = DisplayConfiguration()
        let modelName = model("svga.virtualDev", default: "svga")
        display.model = modelName ?? "svga"
        let vramMax = 1 << 30
        let vramExpected = "a size in bytes, a multiple of 4096 up to \(vramMax) (e.g. 4194304 for 4 MiB)"
        if let v = int("svga.vramSize", in: 4096...vramMax, unit: " bytes", expected: vramExpected) {
            if v % 4096 != 0 {
                report(entry("svga.vramSize")!, "\(v) bytes is not a multiple of 4096", expected: vramExpected)
            } else {
                display.vramSize = UInt64(v)
            }
        }
        guard present else { return nil }
        guard modelName != nil else { return display }
        devices.append(DeviceConfiguration(
            kind: .display, modelName: display.model, prefix: "svga", index: 0,
            location: (entry("svga.virtualDev") ?? entry("svga.present")!).location,
            entries: DeviceConfiguration.entries(of: file, prefix: "svga")))
        return display
    }

    func genericDevices(into devices: inout [DeviceConfiguration]) {
        checkIndexRange(head: "hv.device", displayHead: "hv.device", range: VMConfiguration.genericDeviceIndices)
        for n in VMConfiguration.genericDeviceIndices {
            let p = "hv.device\(n)"
            let present = bool(p + ".present", default: false)
            let modelEntry = entry(p + ".model")
            var name: String?
            if let m = modelEntry {
                let s = m.value.trimmingSpaces
                if isModelName(s) { name = s } else {
                    report(m, s.isEmpty ? "empty model name" : "not a valid model name", expected: Self.modelExpected)
                }
            }
            guard present else { continue }
            guard let modelEntry else {
                report(entry(p + ".present")!, "the device has no \(p).model",
                       expected: "\(p).model = \"<plugin model name>\", e.g. \"edu\"")
                continue
            }
            guard let name else { continue }
            devices.append(DeviceConfiguration(
                kind: .other, modelName: name, prefix: p, index: n, location: modelEntry.location,
                entries: DeviceConfiguration.entries(of: file, prefix: p)))
        }
    }
}

fileprivate extension String {
    var trimmingSpaces: String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return String(s)
    }
}

extension Array where Element == String {
    fileprivate func joined(separator: String, lastSeparator: String) -> String {
        guard count > 1 else { return first ?? "" }
        return dropLast().joined(separator: separator) + lastSeparator + last!
    }
}

extension Validator {
    // MARK: RemoteDisplay.vnc.*

    func remoteDisplay() -> RemoteDisplayConfiguration {
        var r = RemoteDisplayConfiguration()
        r.enabled = bool("RemoteDisplay.vnc.enabled", default: false)
        if let p = int("RemoteDisplay.vnc.port", in: 0...65535, unit: "",
                       expected: "a TCP port, 0-65535 (5900 is VNC display :0; 0 picks a free port)") {
            r.port = p
        }
        if let e = entry("RemoteDisplay.vnc.ip") {
            let ip = e.value.trimmingSpaces
            if RemoteDisplayConfiguration.isIPv4(ip) { r.address = ip }
            else { report(e, "not an IPv4 address", expected: "an IPv4 address to listen on, e.g. 127.0.0.1 or 0.0.0.0") }
        }
        if let e = entry("RemoteDisplay.vnc.password") {
            let utf8 = e.value.utf8.count
            if (1...8).contains(utf8) { r.password = e.value }
            else { report(e, utf8 == 0 ? "empty password" : "a \(utf8)-byte password (VNC authentication uses 8)",
                          expected: "1 to 8 characters, or no key for a console without a password") }
        }
        return r
    }
}
