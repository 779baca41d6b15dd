import Glibc
import Logging
import Synchronization

/// Host-wide services shared by every VM in one hvhost.
public struct HostServices {
    public let kvm: KVMSystem
    public let switches: SwitchRegistry
    public let diskQueue: DiskIOQueue
    /// Finds the plugin model for a configured device (throws a message naming the
    /// .vmx key and the search path when none provides it).
    public let resolveModel: (DeviceConfiguration) throws -> DeviceModelMatch
    /// The CPU scheduler: pCPU slots, pools and their policies.
    public let scheduler: Scheduler

    /// `scheduler` defaults to one pool "default" of one slot per host CPU running the
    /// built-in fallback policy.
    public init(kvm: KVMSystem, switches: SwitchRegistry, diskQueue: DiskIOQueue,
                scheduler: Scheduler? = nil,
                resolveModel: @escaping (DeviceConfiguration) throws -> DeviceModelMatch) {
        self.kvm = kvm
        self.switches = switches
        self.diskQueue = diskQueue
        self.resolveModel = resolveModel
        // The standard configuration names no plugin policy, so this cannot fail.
        self.scheduler = scheduler ?? (try! Scheduler(logger: Logger(label: "hvhost.sched")))
    }
}

/// One virtual machine: guest RAM, the KVM VM and its vCPU threads, the chipset, the
/// PCI bus with the plugin devices the configuration names, and the VM's clock.
public final class VirtualMachine: @unchecked Sendable {
    public let name: String
    public let configuration: VMConfiguration
    public let memory: GuestMemory
    public let clock = VMClock()
    let timers: TimerQueue
    let portBus = PortIOBus()
    let mmioBus = MMIOBus()
    let chipset: Chipset
    public let pci: PCIHostBridge
    public private(set) var devices: [PluginDevice] = []
    private let backend: KVMVirtualMachine
    private var runners: [VCPURunner] = []
    private let scheduler: Scheduler
    /// The VM's registration with its scheduler pool (`hv.sched.pool`, `sched.cpu.*`);
    /// set at the end of init.
    public private(set) var schedulerVM: SchedulerVM!
    private var unregistered = false
    private let logger: Logger
    public let bootPlan: BootPlan

    private let state = HostLock()
    private var stopReason: VMStopReason?
    private let stopping = Atomic<Bool>(false)
    private var onStop: [(VMStopReason) -> Void] = []

    var isStopping: Bool { stopping.load(ordering: .acquiring) }

    public init(configuration: VMConfiguration, host: HostServices, logger: Logger) throws {
        self.configuration = configuration
        self.name = configuration.displayName
        self.logger = logger
        self.scheduler = host.scheduler
        let image = try ELFImage(contentsOf: configuration.kernelPath)
        memory = try GuestMemory(size: configuration.memoryBytes, name: "\(configuration.displayName)-ram")
        // Without hv.boot the image decides: PVH when it has the note, else 64-bit entry.
        let mode = configuration.entry(forKey: "hv.boot") == nil
            ? nil : BootMode(rawValue: configuration.boot.bootProtocol.rawValue)
        bootPlan = try BootLoader.load(image: image, into: memory, commandLine: configuration.commandLine, mode: mode)
        timers = TimerQueue(clock: clock, name: "\(configuration.displayName)-timers")
        chipset = try Chipset(
            configuration: VirtualMachine.chipsetConfiguration(for: configuration),
            clock: clock, timers: timers)
        try chipset.register(portBus: portBus, mmioBus: mmioBus)
        pci = try PCIHostBridge(portBus: portBus, mmioBus: mmioBus, interrupts: chipset)
        backend = try host.kvm.makeVirtualMachine()
        try backend.map(memory: memory)

        try createDevices(host: host)
        try pci.assignResources()
        for d in devices { try d.realize() }

        let cpuid = CPUIDPolicy(vmwareSignature: configuration.advertisesVMwareHypervisor,
                                vcpuCount: configuration.vcpuCount)
        // The BSP starts at the boot state; APs wait for INIT/SIPI from the BSP's local APIC.
        var vcpus: [VirtualCPU] = []
        for index in 0..<configuration.vcpuCount {
            let vcpu = try backend.makeVCPU(index: index, cpuid: cpuid, lapicBase: Chipset.lapicBase)
            if index == 0 { try vcpu.setRegisters(bootPlan.cpu) }
            vcpus.append(vcpu)
        }
        // Last, so that nothing can fail after the pool has reserved the VM's minimum.
        let registration = try host.scheduler.register(configuration)
        schedulerVM = registration
        runners = vcpus.map {
            VCPURunner(vcpu: $0, vm: self, interrupts: chipset, scheduler: host.scheduler, schedVM: registration)
        }

        chipset.onInterruptPending = { [weak self] vcpu in self?.runner(vcpu)?.notify() }
        chipset.onINIT = { [weak self] vcpu in self?.runner(vcpu)?.receiveINIT() }
        chipset.onSIPI = { [weak self] vcpu, vector in self?.runner(vcpu)?.receiveSIPI(vector: vector) }
        chipset.onDebugExit = { [weak self] value in self?.stop(.debugExit(value)) }
        chipset.onResetRequest = { [weak self] in self?.stop(.guestReset) }
    }

    deinit {
        for d in devices { d.destroy() }
        unregisterFromScheduler()
    }

    private func unregisterFromScheduler() {
        let first: Bool = state.withLock {
            defer { unregistered = true }
            return !unregistered
        }
        if first, let vm = schedulerVM { scheduler.unregister(vm) }
    }

    private func runner(_ index: Int) -> VCPURunner? { index < runners.count ? runners[index] : nil }

    private static let stdinClaimed = Atomic<Bool>(false)

    private static func chipsetConfiguration(for configuration: VMConfiguration) throws -> ChipsetConfiguration {
        ChipsetConfiguration(memorySize: configuration.memoryBytes, vcpuCount: configuration.vcpuCount,
                             serial: try serialSink(for: configuration.serial))
    }

    private static func serialSink(for setting: SerialSetting) throws -> SerialSink? {
        switch setting {
        case .stdout:
            // Several VMs may print to stdout; only the first reads the terminal.
            return TerminalSerialSink(input: !stdinClaimed.exchange(true, ordering: .acquiringAndReleasing))
        case .file(let path): return try FileSerialSink(path: path)
        case .unix(let path): return try UnixSocketSerialSink(path: path)
        case .none: return nil
        }
    }

    private func createDevices(host: HostServices) throws {
        for device in configuration.devices {
            let resolved = try host.resolveModel(device)
            let backends = PluginBackends(switches: host.switches, diskQueue: host.diskQueue) { unit in
                guard let disk = device.disks.first(where: { $0.unit == unit }) else { return nil }
                guard disk.mode == .persistent else {
                    throw VMError("\(disk.location): \(device.prefix):\(unit).mode = \"\(disk.mode.rawValue)\" needs redo logs, which this host does not support yet; use \"persistent\"")
                }
                return try FlatDisk(path: disk.path, readOnly: false)
            }
            let context = PluginDeviceContext(
                vmName: name, prefix: device.prefix, memory: memory, clock: clock, timers: timers, pci: pci,
                configValue: { [path = configuration.path] key in
                    if let v = device.value(forDeviceKey: key) { return v }
                    guard device.kind == .nic, key.lowercased() == "generatedaddress",
                          device.value(forDeviceKey: "address") == nil else { return nil }
                    return VirtualMachine.generatedMAC(seed: path + "/" + device.prefix).description
                },
                logger: logger, backends: backends)
            let instance = PluginDevice(match: resolved, context: context)
            try instance.create()
            devices.append(instance)
        }
    }

    /// A stable address in VMware's 00:50:56 OUI, outside the static range
    /// (00:50:56:00-3F:xx:xx), derived from the VM's config path and the device (FNV-1a).
    static func generatedMAC(seed: String) -> MACAddress {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in seed.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
        return MACAddress(0x00, 0x50, 0x56, 0x80 | UInt8(truncatingIfNeeded: h >> 16) & 0x3F,
                          UInt8(truncatingIfNeeded: h >> 8), UInt8(truncatingIfNeeded: h))
    }

    /// Powers on: starts the timers and the vCPU threads.
    public func start() {
        timers.start()
        for d in devices { d.reset() }
        logger.info("\(name): powered on (\(configuration.memoryMiB) MiB, \(configuration.vcpuCount) vCPU, \(bootPlan.mode) boot)")
        for r in runners { r.start() }
    }

    /// Stops the VM for `reason`; the first reason wins. Callable from any thread.
    public func stop(_ reason: VMStopReason) {
        let callbacks: [(VMStopReason) -> Void]? = state.withLock {
            guard stopReason == nil else { return nil }
            stopReason = reason
            stopping.store(true, ordering: .releasing)
            state.broadcast()
            return onStop
        }
        guard let callbacks else { return }
        for r in runners { r.notify() }
        switch reason {
        case .tripleFault, .failure: logger.error("\(name): \(reason)")
        default: logger.info("\(name): \(reason)")
        }
        for c in callbacks { c(reason) }
    }

    /// VM exits taken by all vCPUs so far.
    public var exitCount: UInt64 { runners.reduce(0) { $0 + $1.vcpu.exitCount } }

    /// "running", or why the VM stopped.
    public var stateDescription: String {
        state.withLock { stopReason.map { "stopped: \($0)" } ?? "running" }
    }

    /// Registers a callback for the stop (runs on the stopping thread).
    public func whenStopped(_ body: @escaping (VMStopReason) -> Void) {
        let already: VMStopReason? = state.withLock {
            if stopReason == nil { onStop.append(body) }
            return stopReason
        }
        if let already { body(already) }
    }

    /// Blocks until the VM stops, joins its threads and returns why it stopped.
    @discardableResult
    public func waitUntilStopped() -> VMStopReason {
        let reason: VMStopReason = state.withLock {
            while stopReason == nil { state.wait() }
            return stopReason!
        }
        for r in runners { r.join() }
        unregisterFromScheduler()
        timers.stop()
        for d in devices { d.destroy() }
        chipset.configuration.serial?.flush()
        chipset.configuration.serial?.close()
        return reason
    }
}
