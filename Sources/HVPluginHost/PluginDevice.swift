import Glibc
import HVDevices
import HVHostIO
import HVMemory
import HVSupport
import Logging
import PluginABI

/// What a plugin device instance needs from its VM.
package struct PluginDeviceContext {
    let vmName: String
    /// The .vmx prefix of the device's keys ("ethernet0", "scsi0", "hv.device0").
    package let prefix: String
    let memory: GuestMemory
    package let clock: VMClock
    let timers: TimerQueue
    let pci: PCIHostBridge
    /// Looks up a key relative to `prefix`, case-insensitively.
    let configValue: (String) -> String?
    package let logger: Logger
    let backends: PluginBackends
    /// What the 1.1 device extensions reach; an extension whose resource is nil is not
    /// offered. Relative ROM paths resolve against `configDirectory` (the .vmx's).
    package var legacy: LegacySpace?
    package var display: DisplaySurface?
    package var input: InputRouter?
    package var configDirectory = "."

    package init(vmName: String, prefix: String, memory: GuestMemory, clock: VMClock, timers: TimerQueue,
                pci: PCIHostBridge, configValue: @escaping (String) -> String?, logger: Logger,
                backends: PluginBackends) {
        self.vmName = vmName
        self.prefix = prefix
        self.memory = memory
        self.clock = clock
        self.timers = timers
        self.pci = pci
        self.configValue = configValue
        self.logger = logger
        self.backends = backends
    }
}

struct PluginDeviceError: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}

/// One instance of a plugin device model: owns the `hv_host` handle the plugin sees,
/// the device lock held around every [device] call, the PCI function built from what
/// the plugin declared, its timers, and its backend attachments.
package final class PluginDevice: @unchecked Sendable {
    package let modelName: String
    package let pluginName: String
    package let context: PluginDeviceContext
    let model: UnsafePointer<hv_device_model>
    let ops: UnsafePointer<hv_device_ops>
    /// Held around every call into the plugin unless the model is thread-safe.
    let lock = HostLock(recursive: true)
    /// Guards the host-side bookkeeping (timers, config strings) that services reached
    /// from any thread touch; never held while calling the plugin.
    let resources = HostLock()
    let threadSafe: Bool
    /// The model's declared keys and commands (`device VM DEV CMD`).
    package let declarations: PluginDeclarations
    /// "ethernet0 (model 'vlance', plugin 'Vlance')", for device-call reports.
    private let callName: String

    var instance: OpaquePointer?
    internal(set) package var function: PCIFunction?
    var creating = false
    var timers: [PluginTimer] = []
    var configStrings: [String: UnsafeMutablePointer<CChar>] = [:]
    var netPorts: [PluginNetPort] = []
    package var disks: [PluginDisk] = []
    /// The adapter's bus ("hv.scsi/1"), when the model opened it.
    var scsiBus: PluginSCSIBus?
    /// Undo actions of extension resources (legacy claims, display, input), run before
    /// the destroy op so nothing reaches the instance after it.
    var extensionReleases: [() -> Void] = []
    /// Why an extension refused a request during create(), for create()'s error.
    var createProblems: [String] = []
    package var doorbells: PluginDoorbells?
    var destroyed = false
    /// Receives and disk completions, closed while the VM is paused.
    package let activity = DeviceActivity()
    /// Set by `hvhost plugin-check` before create: counts threads inside the instance.
    package var entryMonitor: DeviceEntryMonitor?

    static let handles = PluginHandleTable<PluginDevice>(magic: 0x4876)
    /// The `hv_host *` handed to the plugin: a handle-table token (it outlives the instance).
    private(set) var handle: OpaquePointer = OpaquePointer(bitPattern: 1)!

    /// The device an `hv_host *` names; nil for NULL, a stale or a foreign handle.
    static func from(_ host: OpaquePointer?) -> PluginDevice? { handles.lookup(host) }

    package init(model: UnsafePointer<hv_device_model>, pluginName: String, context: PluginDeviceContext,
                 declarations: PluginDeclarations = PluginDeclarations()) {
        self.model = model
        self.declarations = declarations
        self.ops = model.pointee.ops
        self.modelName = String(cString: model.pointee.name)
        self.pluginName = pluginName
        self.context = context
        self.threadSafe = model.pointee.flags & HV_DEVICE_THREAD_SAFE != 0
        callName = "\(context.prefix) (model '\(modelName)', plugin '\(pluginName)')"
        handle = Self.handles.register(self)
    }

    /// An instance of the model a catalog lookup found.
    package convenience init(match: DeviceModelMatch, context: PluginDeviceContext) {
        self.init(model: match.model, pluginName: match.pluginName, context: context,
                  declarations: match.info.declarations)
    }

    deinit {
        Self.handles.release(handle)
        for s in configStrings.values { free(s) }
    }

    /// Calls the plugin's create(): it declares identity, BARs, MSI, timers and backends.
    package func create() throws {
        creating = true
        defer { creating = false }
        var out: OpaquePointer?
        let rc = lock.withLock { monitored { model.pointee.create(PluginHostServices.table, handle, &out) } }
        guard rc == 0, let out else {
            quiet()
            freeResources()
            var why = rc == 0 ? "returned no instance" : "failed: \(PluginHostServices.describe(rc))"
            if !createProblems.isEmpty { why += ": " + createProblems.joined(separator: "; ") }
            throw PluginDeviceError(message: "\(context.prefix): device model '\(modelName)' (plugin \(pluginName)) create \(why)")
        }
        instance = out
        if let f = function { try context.pci.attach(f) }
    }

    /// After BARs are assigned, before the first vCPU runs.
    package func realize() throws {
        guard let realize = ops.pointee.realize, let instance else { return }
        let rc = lock.withLock { monitored { realize(instance) } }
        if rc < 0 {
            throw PluginDeviceError(message: "\(context.prefix): '\(modelName)' realize failed: \(PluginHostServices.describe(rc))")
        }
    }

    package func reset() { call(.op("reset")) { ops.pointee.reset?($0) } }

    /// The VM is paused (its vCPUs are out and its timer thread stopped): receives stop
    /// and disk requests in flight complete, then the plugin's pause op runs.
    package func pause() {
        activity.close()
        call { ops.pointee.pause?($0) }
    }

    package func resume() {
        call { ops.pointee.resume?($0) }
        activity.open()
    }

    /// Whether the model can be suspended (it has both saved-state ops).
    /// The model's `state_version`.
    package var stateVersion: UInt32 { model.pointee.state_version }

    package var canSaveState: Bool { ops.pointee.save_state != nil && ops.pointee.load_state != nil }

    /// Quiets the instance, then lets the plugin free it: disk requests in flight finish
    /// (their completions are no longer delivered), ports are detached (which waits out a
    /// receive in flight) and timers cancelled, so after its destroy op nothing calls the
    /// plugin. The timers stay valid handles until that op returns, for its
    /// timer_cancel_wait.
    package func destroy() {
        guard !destroyed else { return }
        lock.withLock { destroyed = true }
        activity.close()
        quiet()
        if let instance { lock.withLock { monitored { ops.pointee.destroy(instance) } } }
        instance = nil
        freeResources()
        Self.handles.release(handle)        // nothing calls the plugin any more; its hv_host is stale
    }

    private func quiet() {
        for t in resources.withLock({ timers }) { t.cancel() }
        doorbells?.stop()
        for p in netPorts { p.detach() }
        netPorts.removeAll()
    }

    private func freeResources() {
        resources.withLock { timers.removeAll() }
        disks.removeAll()
        scsiBus = nil
        let releases = resources.withLock { () -> [() -> Void] in
            defer { extensionReleases.removeAll() }
            return extensionReleases
        }
        for release in releases { release() }
    }

    /// Logs an extension's refusal; during create() it also goes into create()'s error.
    func refuse(_ rc: Int32, _ message: String) -> Int32 {
        context.logger.error("\(context.vmName): \(context.prefix) (\(modelName)): \(message)")
        if creating { createProblems.append(message) }
        return rc
    }


    /// Runs `body` with the instance under the device lock (or without, for thread-safe
    /// models). On a vCPU thread the call, including the wait for the lock, is watched
    /// (``DeviceCallWatch``): `operation` says what it was when it does not return.
    func call(_ operation: DeviceCallSite.Operation = .op("device op"), _ body: (OpaquePointer) -> Void) {
        guard let instance, !destroyed else { return }
        let watch = DeviceCallWatch.current
        watch?.begin(DeviceCallSite(device: callName, operation: operation))
        if threadSafe { monitored { body(instance) } } else { lock.withLock { monitored { body(instance) } } }
        watch?.end()
    }

    /// `body` counted by the entry monitor, when there is one.
    func monitored<R>(_ body: () -> R) -> R {
        guard let m = entryMonitor else { return body() }
        m.enter()
        defer { m.leave() }
        return body()
    }

    // MARK: Commands

    /// Runs the model's command `name` with the operator's words through libffi, under
    /// the device lock ([device]). Refused, without calling the plugin, for an unknown
    /// command, words that do not fit the declared signature, or a paused or destroyed
    /// instance.
    package func runCommand(_ name: String, words: [String]) throws -> CommandOutput {
        guard let command = declarations.command(named: name) else {
            let known = declarations.commands.map(\.signature)
            throw CommandRefusal(message: "\(context.prefix) (\(modelName)) has no command '\(name)'" +
                                 (known.isEmpty ? "; the model declares none" : "; commands: " + known.joined(separator: ", ")))
        }
        let parsed = try command.parse(words)
        var output: CommandOutput?
        let run = { (instance: OpaquePointer) in output = self.monitored { command.call(instance: instance, with: parsed) } }
        if threadSafe {
            if !destroyed, !activity.isClosed, let instance { run(instance) }
        } else {
            lock.withLock { if !destroyed, !activity.isClosed, let instance { run(instance) } }
        }
        guard let output else {
            throw CommandRefusal(message: "\(context.prefix) (\(modelName)) is paused or powered off; try again when it runs")
        }
        return output
    }

    // MARK: BAR access

    /// The BARs the plugin declared with handlers (not RAM BARs): index, size, port I/O.
    package var declaredBARs: [(index: Int, size: UInt64, isIO: Bool)] {
        (function?.barDevices.values.compactMap { $0 as? PluginBAR } ?? [])
            .map { (index: $0.index, size: $0.size, isIO: $0.isIO) }.sorted { $0.index < $1.index }
    }

    /// A guest read of `size` (1, 2, 4 or 8) bytes of `bar` through the plugin's handler.
    package func barRead(bar: Int, offset: UInt64, size: Int) -> UInt64 {
        let mask: UInt64 = size == 8 ? ~0 : (1 << (8 * UInt64(size))) - 1
        guard let handler = function?.barDevices[bar] as? PluginBAR, let read = handler.readHandler else { return mask }
        var value: UInt64 = ~0
        call(.barRead(bar: UInt32(bar), offset: offset, size: size)) { value = read($0, UInt32(bar), offset, UInt32(size)) }
        return value & mask
    }

    package func barWrite(bar: Int, offset: UInt64, size: Int, value: UInt64) {
        guard let handler = function?.barDevices[bar] as? PluginBAR, let write = handler.writeHandler else { return }
        call(.barWrite(bar: UInt32(bar), offset: offset, size: size)) { write($0, UInt32(bar), offset, UInt32(size), value) }
    }

    // MARK: saved state

    /// Asks the plugin for its state; nil when the model cannot save.
    package func saveState() throws -> DeviceStateSection? {
        guard let save = ops.pointee.save_state else { return nil }
        let writer = StateWriter(section: DeviceStateSection(name: modelName, version: model.pointee.state_version))
        var rc: Int32 = 0
        call { rc = save($0, writer.handle) }
        guard rc >= 0 else {
            throw PluginDeviceError(message: "\(context.prefix): '\(modelName)' save_state failed: \(PluginHostServices.describe(rc))")
        }
        return writer.section
    }

    package func loadState(_ section: DeviceStateSection) throws {
        guard let load = ops.pointee.load_state else {
            throw PluginDeviceError(message: "\(context.prefix): '\(modelName)' cannot load state (no load_state op)")
        }
        guard section.name == modelName, section.version <= model.pointee.state_version else {
            throw PluginDeviceError(message: "\(context.prefix): saved state '\(section.name)' v\(section.version) does not fit '\(modelName)' v\(model.pointee.state_version)")
        }
        let reader = StateReader(section: section)
        var rc: Int32 = 0
        call { rc = load($0, reader.handle, section.version) }
        guard rc >= 0 else {
            throw PluginDeviceError(message: "\(context.prefix): '\(modelName)' load_state failed: \(PluginHostServices.describe(rc))")
        }
    }
}

/// A plugin's BAR on the bus: each access is one call of the plugin's handler. The
/// header promises sizes 1, 2, 4 or 8; the remains of an access clipped at the BAR's
/// end read as all ones and are not written.
final class PluginBAR: BusDevice {
    unowned let device: PluginDevice
    let index: Int
    /// Bytes, and whether it is port I/O (what `hvhost plugin-check` reads back).
    let size: UInt64
    let isIO: Bool
    let readHandler: hv_bar_read_fn?
    let writeHandler: hv_bar_write_fn?

    init(device: PluginDevice, index: UInt32, size: UInt64, isIO: Bool, read: hv_bar_read_fn?, write: hv_bar_write_fn?) {
        self.device = device
        self.index = Int(index)
        self.size = size
        self.isIO = isIO
        readHandler = read
        writeHandler = write
    }

    private static func isAccessSize(_ n: Int) -> Bool { n == 1 || n == 2 || n == 4 || n == 8 }

    func read(offset: UInt64, data: UnsafeMutableRawBufferPointer) {
        guard Self.isAccessSize(data.count) else {
            data.initializeMemory(as: UInt8.self, repeating: 0xFF)
            return
        }
        data.storeLittleEndian(device.barRead(bar: index, offset: offset, size: data.count))
    }

    func write(offset: UInt64, data: UnsafeRawBufferPointer) {
        guard Self.isAccessSize(data.count) else { return }
        device.barWrite(bar: index, offset: offset, size: data.count, value: data.littleEndianValue)
    }
}

/// `hv_state_writer *`: collects fields into a section.
final class StateWriter {
    static let handles = PluginHandleTable<StateWriter>(magic: 0x5357)
    var section: DeviceStateSection
    private(set) var handle: OpaquePointer = OpaquePointer(bitPattern: 1)!
    init(section: DeviceStateSection) {
        self.section = section
        handle = Self.handles.register(self)
    }
    deinit { Self.handles.release(handle) }
}

/// `hv_state_reader *`: serves fields of a section.
final class StateReader {
    static let handles = PluginHandleTable<StateReader>(magic: 0x5352)
    let section: DeviceStateSection
    private(set) var handle: OpaquePointer = OpaquePointer(bitPattern: 1)!
    init(section: DeviceStateSection) {
        self.section = section
        handle = Self.handles.register(self)
    }
    deinit { Self.handles.release(handle) }
}

/// `hv_timer *`: a VM-clock timer. The queue never waits for a firing in flight, so the
/// callback re-checks that it is still armed and due. For ordinary models the check and
/// the callback run under the device lock, which every [device] call (including the
/// plugin's own timer_cancel) holds, so a cancel is final. Thread-safe models get the
/// callback with no host lock held; `cancelAndWait` waits such a callback out.
final class PluginTimer {
    unowned let device: PluginDevice
    let callback: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?) -> Void
    let opaque: UnsafeMutableRawPointer?
    private let state = HostLock()
    private var armed = false
    private var deadline: UInt64 = 0
    /// The thread running the callback, while it runs.
    private var runningOn: pthread_t?
    private var timer: DeviceTimer!

    init(device: PluginDevice, callback: @escaping @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?) -> Void,
         opaque: UnsafeMutableRawPointer?) {
        self.device = device
        self.callback = callback
        self.opaque = opaque
        timer = device.context.timers.makeTimer { [weak self] in self?.fire() }
    }

    var handle: OpaquePointer { OpaquePointer(Unmanaged.passUnretained(self).toOpaque()) }

    func arm(at deadline: UInt64) {
        state.withLock {
            armed = true
            self.deadline = deadline
        }
        timer.arm(at: deadline)
    }

    func cancel() {
        state.withLock { armed = false }
        timer.cancel()
    }

    /// Cancels and waits until a callback running on another thread has returned.
    /// False (without waiting) when called from inside this timer's own callback.
    func cancelAndWait() -> Bool {
        cancel()
        return state.withLock {
            if let t = runningOn, pthread_equal(t, pthread_self()) != 0 { return false }
            while runningOn != nil { state.wait() }
            return true
        }
    }

    /// Claims this firing if it is still wanted, and marks the callback running.
    private func claim() -> Bool {
        state.withLock {
            guard armed, device.context.clock.now() >= deadline else { return false }
            armed = false
            runningOn = pthread_self()
            return true
        }
    }

    private func run(_ instance: OpaquePointer) {
        device.monitored { callback(instance, opaque) }
        state.withLock {
            runningOn = nil
            state.broadcast()
        }
    }

    private func fire() {
        if device.threadSafe {
            guard !device.destroyed, let instance = device.instance, claim() else { return }
            run(instance)
            return
        }
        device.lock.withLock {
            guard !device.destroyed, let instance = device.instance, claim() else { return }
            run(instance)
        }
    }
}
