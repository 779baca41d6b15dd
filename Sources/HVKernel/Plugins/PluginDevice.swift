import Glibc
import Logging
import PluginABI

/// What a plugin device instance needs from its VM.
public struct PluginDeviceContext {
    public let vmName: String
    /// The .vmx prefix of the device's keys ("ethernet0", "scsi0", "hv.device0").
    public let prefix: String
    public let memory: GuestMemory
    public let clock: VMClock
    public let timers: TimerQueue
    public let pci: PCIHostBridge
    /// Looks up a key relative to `prefix`, case-insensitively.
    public let configValue: (String) -> String?
    public let logger: Logger
    public let backends: PluginBackends

    public init(vmName: String, prefix: String, memory: GuestMemory, clock: VMClock, timers: TimerQueue,
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

public struct PluginDeviceError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

/// One instance of a plugin device model: owns the `hv_host` handle the plugin sees,
/// the device lock held around every [device] call, the PCI function built from what
/// the plugin declared, its timers, and its backend attachments.
public final class PluginDevice: PCIBARHandler, @unchecked Sendable {
    public let modelName: String
    public let pluginName: String
    let context: PluginDeviceContext
    let model: UnsafePointer<hv_device_model>
    let ops: UnsafePointer<hv_device_ops>
    /// Held around every call into the plugin unless the model is thread-safe.
    let lock = HostLock(recursive: true)
    /// Guards the host-side bookkeeping (timers, config strings) that services reached
    /// from any thread touch; never held while calling the plugin.
    let resources = HostLock()
    let threadSafe: Bool

    var instance: OpaquePointer?
    public internal(set) var function: PCIFunction?
    var barHandlers: [Int: (read: hv_bar_read_fn?, write: hv_bar_write_fn?)] = [:]
    var creating = false
    var timers: [PluginTimer] = []
    var configStrings: [String: UnsafeMutablePointer<CChar>] = [:]
    var netPorts: [PluginNetPort] = []
    var disks: [PluginDisk] = []
    var destroyed = false

    /// The `hv_host *` handed to the plugin: this object, unretained (it outlives the instance).
    var handle: OpaquePointer { OpaquePointer(Unmanaged.passUnretained(self).toOpaque()) }

    static func from(_ host: OpaquePointer?) -> PluginDevice? {
        guard let host else { return nil }
        return Unmanaged<PluginDevice>.fromOpaque(UnsafeRawPointer(host)).takeUnretainedValue()
    }

    public init(model: UnsafePointer<hv_device_model>, pluginName: String, context: PluginDeviceContext) {
        self.model = model
        self.ops = model.pointee.ops
        self.modelName = String(cString: model.pointee.name)
        self.pluginName = pluginName
        self.context = context
        self.threadSafe = model.pointee.flags & HV_DEVICE_THREAD_SAFE != 0
    }

    /// An instance of the model a catalog lookup found.
    public convenience init(match: DeviceModelMatch, context: PluginDeviceContext) {
        self.init(model: match.model, pluginName: match.pluginName, context: context)
    }

    deinit {
        for s in configStrings.values { free(s) }
    }

    /// Calls the plugin's create(): it declares identity, BARs, MSI, timers and backends.
    public func create() throws {
        creating = true
        defer { creating = false }
        var out: OpaquePointer?
        let rc = lock.withLock { model.pointee.create(PluginHostServices.table, handle, &out) }
        guard rc == 0, let out else {
            releaseResources()
            let why = rc == 0 ? "returned no instance" : "failed: \(PluginHostServices.describe(rc))"
            throw PluginDeviceError(message: "\(context.prefix): device model '\(modelName)' (plugin \(pluginName)) create \(why)")
        }
        instance = out
        if let f = function { try context.pci.attach(f) }
    }

    /// After BARs are assigned, before the first vCPU runs.
    public func realize() throws {
        guard let realize = ops.pointee.realize, let instance else { return }
        let rc = lock.withLock { realize(instance) }
        if rc < 0 {
            throw PluginDeviceError(message: "\(context.prefix): '\(modelName)' realize failed: \(PluginHostServices.describe(rc))")
        }
    }

    public func reset() { call { ops.pointee.reset?($0) } }
    public func pause() { call { ops.pointee.pause?($0) } }
    public func resume() { call { ops.pointee.resume?($0) } }

    /// Quiets the instance before the plugin frees it: timers are cancelled and ports
    /// detached (which waits out a receive in flight), so nothing calls the plugin after
    /// its destroy op.
    public func destroy() {
        guard !destroyed else { return }
        lock.withLock { destroyed = true }
        releaseResources()
        if let instance { lock.withLock { ops.pointee.destroy(instance) } }
        instance = nil
    }

    private func releaseResources() {
        let owned = resources.withLock { () -> [PluginTimer] in
            defer { timers.removeAll() }
            return timers
        }
        for t in owned { t.cancel() }
        for p in netPorts { p.detach() }
        netPorts.removeAll()
        disks.removeAll()
    }

    /// Runs `body` with the instance under the device lock (or without, for thread-safe models).
    func call(_ body: (OpaquePointer) -> Void) {
        guard let instance, !destroyed else { return }
        if threadSafe { body(instance) } else { lock.withLock { body(instance) } }
    }

    // MARK: PCIBARHandler

    public func barRead(bar: Int, offset: UInt64, size: Int) -> UInt64 {
        guard let read = barHandlers[bar]?.read else { return size == 8 ? ~0 : (1 << (8 * UInt64(size))) - 1 }
        var value: UInt64 = ~0
        call { value = read($0, UInt32(bar), offset, UInt32(size)) }
        return size == 8 ? value : value & ((1 << (8 * UInt64(size))) - 1)
    }

    public func barWrite(bar: Int, offset: UInt64, size: Int, value: UInt64) {
        guard let write = barHandlers[bar]?.write else { return }
        call { write($0, UInt32(bar), offset, UInt32(size), value) }
    }

    // MARK: saved state

    /// Asks the plugin for its state; nil when the model cannot save.
    public func saveState() throws -> DeviceStateSection? {
        guard let save = ops.pointee.save_state else { return nil }
        let writer = StateWriter(section: DeviceStateSection(name: modelName, version: model.pointee.state_version))
        var rc: Int32 = 0
        call { rc = save($0, writer.handle) }
        guard rc >= 0 else {
            throw PluginDeviceError(message: "\(context.prefix): '\(modelName)' save_state failed: \(PluginHostServices.describe(rc))")
        }
        return writer.section
    }

    public func loadState(_ section: DeviceStateSection) throws {
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

/// `hv_state_writer *`: collects fields into a section.
final class StateWriter {
    var section: DeviceStateSection
    init(section: DeviceStateSection) { self.section = section }
    var handle: OpaquePointer { OpaquePointer(Unmanaged.passUnretained(self).toOpaque()) }
}

/// `hv_state_reader *`: serves fields of a section.
final class StateReader {
    let section: DeviceStateSection
    init(section: DeviceStateSection) { self.section = section }
    var handle: OpaquePointer { OpaquePointer(Unmanaged.passUnretained(self).toOpaque()) }
}

/// `hv_timer *`: a VM-clock timer. The queue never waits for a firing in flight, so the
/// callback re-checks that it is still armed and due. For ordinary models the check and
/// the callback run under the device lock, which every [device] call (including the
/// plugin's own timer_cancel) holds, so a cancel is final. Thread-safe models get the
/// callback with no host lock held.
final class PluginTimer {
    unowned let device: PluginDevice
    let callback: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?) -> Void
    let opaque: UnsafeMutableRawPointer?
    private let state = HostLock()
    private var armed = false
    private var deadline: UInt64 = 0
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

    /// Claims this firing if it is still wanted.
    private func claim() -> Bool {
        state.withLock {
            guard armed, device.context.clock.now() >= deadline else { return false }
            armed = false
            return true
        }
    }

    private func fire() {
        if device.threadSafe {
            guard !device.destroyed, let instance = device.instance, claim() else { return }
            callback(instance, opaque)
            return
        }
        device.lock.withLock {
            guard !device.destroyed, let instance = device.instance, claim() else { return }
            callback(instance, opaque)
        }
    }
}
