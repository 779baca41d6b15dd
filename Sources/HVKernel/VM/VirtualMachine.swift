import Glibc
import HVBackendKVM
import HVDevices
import HVHostIO
import HVMemory
import HVPluginHost
import HVSched
import HVSupport
import Logging
import Synchronization

/// Host-wide services shared by every VM in one hvhost.
package struct HostServices {
    let kvm: KVMSystem
    let switches: SwitchRegistry
    let diskQueue: DiskIOQueue
    /// Finds the plugin model for a configured device (throws a message naming the
    /// .vmx key and the search path when none provides it).
    let resolveModel: (DeviceConfiguration) throws -> DeviceModelMatch
    /// The CPU scheduler: pCPU slots, pools and their policies.
    let scheduler: Scheduler
    /// The memory scheduler (budget, admission, targets, page sharing); nil: none.
    let memory: MemoryScheduler?

    /// `scheduler` defaults to one pool "default" of one slot per host CPU running the
    /// built-in fallback policy.
    package init(kvm: KVMSystem, switches: SwitchRegistry, diskQueue: DiskIOQueue,
                scheduler: Scheduler? = nil, memory: MemoryScheduler? = nil,
                resolveModel: @escaping (DeviceConfiguration) throws -> DeviceModelMatch) {
        self.memory = memory
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
///
/// Its devices go through the lifecycle hvplugin.h documents ("Device lifecycle"):
/// power-on (init, then `start`), pause/resume, suspend (`suspend(to:)`), restore
/// (init from a `SavedMachineState`, then `start`), migrate (`Migration/`) and destroy
/// (when it stops).
package final class VirtualMachine: @unchecked Sendable {
    let name: String
    let configuration: VMConfiguration
    let memory: GuestMemory
    package let clock: VMClock
    let timers: TimerQueue
    let portBus = AddressBus()
    let mmioBus = AddressBus()
    let chipset: Chipset
    let pci: PCIHostBridge
    /// Legacy ports and windows devices claimed ("hv.legacy-io/1").
    let legacy: LegacySpace
    /// The screen a display device publishes, for the host's consoles.
    let display = DisplaySurface()
    /// Where the host's consoles send keyboard and pointer events.
    let input = InputRouter()
    /// The screen and input as the remote consoles (VNC, the browser) reach them.
    package let console: RemoteConsole
    /// The VNC server (`RemoteDisplay.vnc.*`); nil unless enabled.
    private(set) package var vncServer: RFBServer?
    private(set) package var devices: [PluginDevice] = []
    let backend: KVMVirtualMachine
    private(set) var runners: [VCPURunner] = []
    /// Keeps the vCPUs out of guest mode while paused.
    let gate = VCPUGate()
    /// The suspend file (or incoming migration) this VM was restored from; nil when it booted.
    let restoredFrom: String?
    /// Whether this VM boots again after its guest reset itself (not a power cycle:
    /// nonpersistent redo logs carry on).
    let bootsAfterGuestReset: Bool
    /// The disks its SCSI adapters opened, in their modes; detached when it stops.
    private let attachedDisks = HostLocked<[AttachedDisk]>([])
    /// The ISO images in its CD-ROM drives; closed with the disks.
    private let cdromImages = HostLocked<[CDROMImage]>([])
    /// VMware's balloon on port 0x5670: the VMkernel's target, the guest's locked pages.
    let balloon: Balloon
    /// Host swap, created at the first swap-out (see VirtualMachine+Reclaim).
    let swap = HostLocked<GuestSwap?>(nil)
    /// The VM's RAM in the host's page sharing, once the memory scheduler took it on.
    let sharing = HostLocked<(scanner: PageSharing, member: PageSharing.Member)?>(nil)
    private let scheduler: Scheduler
    /// The VM's registration with its scheduler pool (`hv.sched.pool`, `sched.cpu.*`);
    /// set at the end of init.
    private(set) var schedulerVM: SchedulerVM!
    private var unregistered = false
    let logger: Logger
    /// How the guest was loaded; nil for a VM restored from a suspend file or one that
    /// boots its firmware.
    let bootPlan: BootPlan?
    /// The BIOS image mapped below 4 GiB, when the VM boots its firmware.
    let firmware: FirmwareImage?

    let state = HostLock()
    var stopReason: VMStopReason?
    /// [state] Paused (or being paused) by `pause`.
    var paused = false
    private let stopping = Atomic<Bool>(false)
    private var onStop: [(VMStopReason) -> Void] = []

    var isStopping: Bool { stopping.load(ordering: .acquiring) }

    /// Builds a VM from its configuration, powered off until `start`; with `snapshot`,
    /// in the state a suspend saved (`configuration` is then the snapshot's).
    package init(configuration: VMConfiguration, host: HostServices, logger: Logger,
                restoring snapshot: (any SavedMachineState)? = nil, afterGuestReset: Bool = false) throws {
        self.configuration = configuration
        self.bootsAfterGuestReset = afterGuestReset
        self.name = configuration.displayName
        self.logger = logger
        self.scheduler = host.scheduler
        restoredFrom = snapshot?.path
        let ramName = "\(configuration.displayName)-ram"
        memory = try snapshot?.restoredMemory(size: configuration.memoryBytes, name: ramName)
            ?? GuestMemory(size: configuration.memoryBytes, name: ramName)
        balloon = Balloon(memory: memory)
        let machine = try snapshot.map { try $0.machine(for: configuration) }
        firmware = try configuration.boot.firmware.map { try FirmwareImage(contentsOf: $0.imagePath) }
        var firmwareKernel: LinuxFirmwareLoad?
        if snapshot != nil {
            bootPlan = nil
            clock = VMClock(pausedAt: machine!.clock)
        } else if let kernelPath = configuration.kernelPath, firmware != nil {
            // The BIOS boots the kernel: fw_cfg hands it over (see `FirmwareHandoff`).
            let image = try KernelImage(contentsOf: kernelPath)
            let initrd = try configuration.boot.initrdPath.map { try HostFile.read($0) }
            firmwareKernel = try image.firmwareLoad(memorySize: configuration.memoryBytes,
                                                    commandLine: configuration.commandLine, initrd: initrd)
            try firmware?.install(into: memory)
            bootPlan = nil
            clock = VMClock()
        } else if let kernelPath = configuration.kernelPath {
            let image = try KernelImage(contentsOf: kernelPath)
            // Without hv.boot the image decides: PVH when it has the note, else 64-bit entry.
            let mode = configuration.entry(forKey: "hv.boot") == nil
                ? nil : BootMode(rawValue: configuration.boot.bootProtocol.rawValue)
            let initrd = try configuration.boot.initrdPath.map { try HostFile.read($0) }
            bootPlan = try image.load(into: memory, commandLine: configuration.commandLine, initrd: initrd, mode: mode)
            clock = VMClock()
        } else {
            // No kernel: the configuration names the firmware.
            try firmware?.install(into: memory)
            bootPlan = nil
            clock = VMClock()
        }
        timers = TimerQueue(clock: clock, name: "\(configuration.displayName)-timers")
        chipset = try Chipset(
            configuration: VirtualMachine.chipsetConfiguration(for: configuration),
            clock: clock, timers: timers)
        try chipset.register(portBus: portBus, mmioBus: mmioBus)
        backend = try host.kvm.makeVirtualMachine()
        pci = try PCIHostBridge(portBus: portBus, mmioBus: mmioBus, interrupts: chipset, mapper: backend)
        legacy = LegacySpace(portBus: portBus, mmioBus: mmioBus)

        console = RemoteConsole(name: configuration.displayName, display: display, input: input,
                                password: configuration.remoteDisplay.password)
        try createDevices(host: host)
        // After the devices: a plugin's keyboard or tablet is offered events first.
        input.attach(ChipsetInput(chipset: chipset, display: display))
        // The windows devices claimed are theirs, not RAM: map memory only now.
        for window in legacy.memoryWindows { memory.exclude(window) }
        try backend.map(memory: memory)
        try firmware?.map(into: backend)
        try pci.assignResources()
        if firmware != nil {
            let config = try FirmwareConfig(contents: firmwareHandoff(kernel: firmwareKernel).items, memory: memory)
            try portBus.register(base: UInt64(FirmwareConfig.portBase), size: FirmwareConfig.portSize,
                                 name: "fw_cfg", device: config)
        }
        if let snapshot {
            let section = try snapshot.section("pci", maxVersion: PCIHostBridge.stateVersion)
            try pci.loadState(section.payload, version: section.version)
        }
        for d in devices { try d.realize() }
        if let snapshot {
            let section = try snapshot.section("chipset", maxVersion: Chipset.stateVersion)
            try chipset.loadState(section.payload, version: section.version)
            if snapshot.sections.contains(where: { $0.name == "balloon" }) {
                let section = try snapshot.section("balloon", maxVersion: Balloon.stateVersion)
                try balloon.loadState(section.payload, context: "\(snapshot.path): section 'balloon'")
            }
            try snapshot.checkDeviceSections(against: devices.map(\.context.prefix))
            for d in devices { try d.loadState(snapshot.deviceState(prefix: d.context.prefix)) }
        }

        let cpuid = CPUIDPolicy(vmwareSignature: configuration.advertisesVMwareHypervisor,
                                vcpuCount: configuration.vcpuCount)
        // The BSP starts at the boot state; APs wait for INIT/SIPI from the BSP's local APIC.
        // A restored vCPU gets its saved state and activity.
        var vcpus: [(VirtualCPU, VCPUActivity?)] = []
        for index in 0..<configuration.vcpuCount {
            let vcpu = try backend.makeVCPU(index: index, cpuid: cpuid, lapicBase: Chipset.lapicBase)
            var activity: VCPUActivity?
            if let snapshot {
                let (saved, state) = try snapshot.vcpu(index)
                do { try vcpu.restoreState(state) } catch {
                    throw SuspendError("\(snapshot.path): vCPU \(index): \(error)")
                }
                activity = saved
            } else if index == 0, let bootPlan {
                try vcpu.setRegisters(bootPlan.cpu)
            } else if index == 0, firmware != nil {
                try vcpu.setRegisters(.resetVector)
            }
            vcpus.append((vcpu, activity))
        }
        let remote = configuration.remoteDisplay
        if remote.enabled {
            do {
                vncServer = try RFBServer(console: console, address: remote.address, port: remote.port)
            } catch {
                throw VMError("\(configuration.path): RemoteDisplay.vnc: \(error)")
            }
        }
        // Last, so that nothing can fail after the pool has reserved the VM's minimum.
        let registration: SchedulerVM
        do { registration = try host.scheduler.register(configuration) } catch {
            vncServer?.stop()
            throw error
        }
        schedulerVM = registration
        runners = vcpus.map {
            VCPURunner(vcpu: $0.0, vm: self, interrupts: chipset, scheduler: host.scheduler, schedVM: registration,
                       activity: $0.1)
        }

        chipset.onInterruptPending = { [weak self] vcpu in self?.runner(vcpu)?.notify() }
        chipset.onINIT = { [weak self] vcpu in self?.runner(vcpu)?.receiveINIT() }
        chipset.onSIPI = { [weak self] vcpu, vector in self?.runner(vcpu)?.receiveSIPI(vector: vector) }
        chipset.onDebugExit = { [weak self] value in self?.stop(.debugExit(value)) }
        chipset.onResetRequest = { [weak self] in self?.stop(.guestReset) }
        chipset.backdoor.setBalloon { [weak balloon] in balloon?.call(&$0) }
        balloon.pageTaken = { [weak self] page in self?.swap.withLock { $0 }?.discard(page: page) }
        balloon.pageRemapped = { [weak self] page in self?.sharing.withLock { $0 }?.member.noteRemapped(page) }
        pci.resetRequest = { [weak self] in self?.stop(.guestReset) }
    }

    deinit {
        for d in devices { d.destroy() }
        // Not a power-off (e.g. power-on failed): redo logs stay as they are.
        detachDisks(poweringOff: false)
        unregisterFromScheduler()
    }

    /// Closes the VM's disks and, at a power-off, applies their modes (a nonpersistent
    /// redo log is deleted, an undoable one kept/committed/discarded). Idempotent.
    private func detachDisks(poweringOff: Bool) {
        for image in cdromImages.withLock({ d in defer { d = [] }; return d }) { image.close() }
        let disks = attachedDisks.withLock { d in defer { d = [] }; return d }
        for disk in disks {
            do {
                try disk.detach(poweringOff: poweringOff)
            } catch {
                logger.error("\(name): \(disk): \(error)")
            }
        }
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
    /// VMs stopped with a vCPU thread stuck in a device call, kept alive for that thread.
    private static let abandoned = HostLocked<[VirtualMachine]>([])

    private static func chipsetConfiguration(for configuration: VMConfiguration) throws -> ChipsetConfiguration {
        var chipset = ChipsetConfiguration(memorySize: configuration.memoryBytes, vcpuCount: configuration.vcpuCount,
                                           serial: try serialSink(for: configuration.serial))
        if let firmware = configuration.boot.firmware {
            chipset.firmwareLog = try firmware.logPath.map { try FileSerialSink(path: $0) }
            chipset.bootOrder = firmware.bootOrder.map {
                switch $0 {
                case .floppy: .floppy
                case .hardDisk: .hardDisk
                case .cdrom: .cdrom
                case .network: .network
                }
            }
        }
        return chipset
    }

    /// What the BIOS learns through fw_cfg: memory, CPUs, the boot order as device
    /// paths (the devices have their PCI slots by now), a serial console when the VM has
    /// COM1 and no display, and the kernel when `hv.kernel` goes through the firmware.
    private func firmwareHandoff(kernel: LinuxFirmwareLoad?) throws -> FirmwareHandoff {
        var handoff = FirmwareHandoff(memorySize: configuration.memoryBytes, vcpuCount: configuration.vcpuCount)
        let slots = devices.compactMap { d -> (DeviceConfiguration, slot: Int)? in
            guard let f = d.function, let c = configuration.devices.first(where: { $0.prefix == d.context.prefix }) else {
                return nil
            }
            return (c, f.slot)
        }
        handoff.bootOrder = FirmwareHandoff.bootOrderPaths(order: configuration.boot.firmware?.bootOrder ?? [],
                                                           devices: slots)
        handoff.serialConsole = configuration.serial != .none && !configuration.devices.contains { $0.kind == .display }
        if let kernel {
            let rom = FirmwareHandoff.linuxBootROMPath
            do { handoff.linuxBootROM = try HostFile.read(rom) } catch {
                throw BootError(file: configuration.kernelPath ?? rom, reason: .linuxBootROMMissing(rom))
            }
            handoff.linux = kernel
        }
        return handoff
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
            let backends = PluginBackends(switches: host.switches, diskQueue: host.diskQueue) { [weak self] unit in
                guard let self, let disk = device.disks.first(where: { $0.unit == unit }) else { return nil }
                if disk.kind == .cdromImage {
                    let image: CDROMImage
                    do { image = try CDROMImage(path: disk.path, owner: "VM '\(self.name)'") } catch {
                        throw VMError("\(disk.location): \(device.prefix):\(unit).fileName: \(error)")
                    }
                    self.cdromImages.withLock { $0.append(image) }
                    return image
                }
                let attached: AttachedDisk
                do {
                    attached = try AttachedDisk(path: disk.path, mode: disk.mode, undoableAction: disk.undoableAction,
                                                owner: "VM '\(self.name)'",
                                                continuing: self.restoredFrom != nil || self.bootsAfterGuestReset)
                } catch {
                    throw VMError("\(disk.location): \(device.prefix):\(unit).fileName: \(error)")
                }
                self.attachedDisks.withLock { $0.append(attached) }
                return attached
            }
            var context = PluginDeviceContext(
                vmName: name, prefix: device.prefix, memory: memory, clock: clock, timers: timers, pci: pci,
                configValue: { [path = configuration.path, firmware = configuration.boot.firmware] key in
                    if let v = device.value(forDeviceKey: key) { return v }
                    if device.kind == .nic, key.lowercased() == "bootrom" {
                        // Without ethernetN.bootRom a NIC offers its boot ROM only when the
                        // firmware's boot order names it: iPXE's ROMs crash under some KVMs
                        // (this host's PVM), and a ROM nobody boots must not break disk boot.
                        return firmware?.bootOrder.contains(.network(device.index)) == true ? "default" : "none"
                    }
                    if device.kind == .display, key.lowercased() == "vgabios" {
                        // Without svga.vgaBios the display offers its VGA BIOS when firmware boots.
                        return firmware != nil ? "default" : "none"
                    }
                    guard device.kind == .nic, key.lowercased() == "generatedaddress",
                          device.value(forDeviceKey: "address") == nil else { return nil }
                    return VirtualMachine.generatedMAC(seed: path + "/" + device.prefix).description
                },
                logger: logger, backends: backends)
            context.legacy = legacy
            context.display = display
            context.input = input
            context.configDirectory = configuration.directory
            let instance = PluginDevice(match: resolved, context: context)
            // No receive reaches the device before its reset (or, restored, its resume).
            instance.activity.close()
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

    /// Powers on: resets the devices (a restored VM: resumes them and its clock), starts
    /// the timers and the vCPU threads.
    package func start() {
        guard !isStopping else { return }
        if let restoredFrom {
            clock.resume()
            for d in devices { d.resume() }
            logger.info("\(name): resumed from \(restoredFrom) (\(configuration.memoryMiB) MiB, \(configuration.vcpuCount) vCPU)")
        } else {
            for d in devices {
                d.reset()
                d.activity.open()
            }
            let boot = bootPlan.map { "\($0.mode) boot" } ?? firmware.map { "firmware \($0.path)" } ?? "?"
            logger.info("\(name): powered on (\(configuration.memoryMiB) MiB, \(configuration.vcpuCount) vCPU, \(boot))")
        }
        timers.start()
        for r in runners { r.start() }
    }

    /// Stops the VM for `reason`; the first reason wins. Callable from any thread.
    package func stop(_ reason: VMStopReason) {
        let callbacks: [(VMStopReason) -> Void]? = state.withLock {
            guard stopReason == nil else { return nil }
            stopReason = reason
            stopping.store(true, ordering: .releasing)
            state.broadcast()
            return onStop
        }
        guard let callbacks else { return }
        gate.release()
        for r in runners { r.notify() }
        switch reason {
        case .tripleFault, .failure: logger.error("\(name): \(reason)")
        default: logger.info("\(name): \(reason)")
        }
        for c in callbacks { c(reason) }
    }

    /// Pages the guest wrote since the previous call (KVM's dirty log of guest RAM), nil
    /// when the log cannot be read.
    func sampleWrittenPages() -> Int? {
        try? backend.takeWrittenPageCount()
    }

    /// Runs `body` with every vCPU out of guest mode (page sharing swaps pages under it).
    func withVCPUsOutOfGuest(_ body: () -> Void) {
        gate.close { for r in runners { r.vcpu.kick() } }
        body()
        gate.open()
    }

    /// Pages of guest RAM its memfd backs now (shared, zero and ballooned pages are holes).
    func residentPages() -> Int {
        var st = stat()
        guard fstat(memory.fd, &st) == 0 else { return 0 }
        return Int(st.st_blocks) * 512 / Int(GuestMemory.pageSize)
    }

    /// VM exits taken by all vCPUs so far.
    package var exitCount: UInt64 { runners.reduce(0) { $0 + $1.vcpu.exitCount } }

    /// "running", "paused", or why the VM stopped.
    var stateDescription: String {
        state.withLock { stopReason.map { "stopped: \($0)" } ?? (paused ? "paused" : "running") }
    }

    /// Registers a callback for the stop (runs on the stopping thread).
    func whenStopped(_ body: @escaping (VMStopReason) -> Void) {
        let already: VMStopReason? = state.withLock {
            if stopReason == nil { onStop.append(body) }
            return stopReason
        }
        if let already { body(already) }
    }

    /// Blocks until the VM stops, joins its threads and returns why it stopped.
    @discardableResult
    package func waitUntilStopped() -> VMStopReason {
        let reason: VMStopReason = state.withLock {
            while stopReason == nil { state.wait() }
            return stopReason!
        }
        // The consoles go first: a reset builds the next incarnation on the same port.
        vncServer?.stop()
        console.disconnectAll()
        let abandoned = runners.filter { !$0.join() }
        unregisterFromScheduler()
        guard abandoned.isEmpty else {
            // A vCPU thread is stuck in a device call, holding that device's lock: the
            // devices are left alone (a destroy or a timer would wait on it for good)
            // and this VM's objects stay alive for the thread, should it ever return.
            timers.stop(waiting: false)
            Self.abandoned.withLock { $0.append(self) }
            chipset.configuration.serial?.flush()
            return reason
        }
        timers.stop()
        for d in devices { d.destroy() }
        // Nothing touches guest RAM any more: the swap file goes.
        swap.withLock { s in s?.close(); s = nil }
        // A guest reset, a suspend or a migration is not a power-off: the VM comes back
        // (or goes on elsewhere) on its redo logs.
        switch reason {
        case .guestReset, .suspended, .migrated: detachDisks(poweringOff: false)
        default: detachDisks(poweringOff: true)
        }
        chipset.configuration.serial?.flush()
        chipset.configuration.serial?.close()
        chipset.configuration.firmwareLog?.flush()
        chipset.configuration.firmwareLog?.close()
        return reason
    }
}
