import HVHostIO
import HVMemory
import PluginABI

/// The VMkernel backends a plugin device can attach to.
package struct PluginBackends {
    package let switches: SwitchRegistry
    package let diskQueue: DiskIOQueue
    /// Opens the disk of unit `unit` of the device (e.g. scsi0:1); nil when not present.
    let openDisk: (Int) throws -> VirtualDisk?

    package init(switches: SwitchRegistry, diskQueue: DiskIOQueue, openDisk: @escaping (Int) throws -> VirtualDisk?) {
        self.switches = switches
        self.diskQueue = diskQueue
        self.openDisk = openDisk
    }
}

/// `hv_net_port *`: a device's port on a virtual switch.
final class PluginNetPort {
    let port: VirtualPort
    let virtualSwitch: VirtualSwitch
    /// The device's guest memory, where `send_guest` gathers frames from.
    let memory: GuestMemory
    static let handles = PluginHandleTable<PluginNetPort>(magic: 0x4E50)
    private(set) var handle: OpaquePointer = OpaquePointer(bitPattern: 1)!
    init(port: VirtualPort, virtualSwitch: VirtualSwitch, memory: GuestMemory) {
        self.port = port
        self.virtualSwitch = virtualSwitch
        self.memory = memory
        handle = Self.handles.register(self)
    }
    deinit { Self.handles.release(handle) }
    /// The port an `hv_net_port *` names; nil for NULL, a stale or a foreign handle.
    static func from(_ p: OpaquePointer?) -> PluginNetPort? { handles.lookup(p) }
    func detach() { virtualSwitch.removePort(port) }
}

/// `hv_disk *`: a device's handle on a virtual disk; requests run on the disk queue.
package final class PluginDisk {
    unowned let device: PluginDevice
    let disk: VirtualDisk
    static let handles = PluginHandleTable<PluginDisk>(magic: 0x444B)
    private(set) var handle: OpaquePointer = OpaquePointer(bitPattern: 1)!
    init(device: PluginDevice, disk: VirtualDisk) {
        self.device = device
        self.disk = disk
        handle = Self.handles.register(self)
    }
    deinit { Self.handles.release(handle) }
    /// The disk an `hv_disk *` names; nil for NULL, a stale or a foreign handle.
    static func from(_ p: OpaquePointer?) -> PluginDisk? { handles.lookup(p) }

    /// Validates and queues a request; nil result means queued, else the HV_E* code.
    func submit(_ req: hv_disk_request) -> Int32 {
        guard req.struct_size >= UInt32(MemoryLayout<hv_disk_request>.size), let complete = req.complete else { return HV_EINVAL }
        let memory = device.context.memory
        var segments: [(gpa: UInt64, len: Int)] = []
        var total = 0
        if req.op != HV_DISK_FLUSH {
            guard req.segment_count > 0, req.segment_count <= 1024, let segs = req.segments else { return HV_EINVAL }
            for i in 0..<Int(req.segment_count) {
                let s = segs[i]
                guard s.len > 0, memory.contains(s.gpa, length: Int(s.len)) else { return HV_EINVAL }
                segments.append((s.gpa, Int(s.len)))
                total += Int(s.len)
            }
            let sectorSize = disk.sectorSize
            guard total % sectorSize == 0, total <= 64 << 20 else { return HV_EINVAL }
            let count = UInt64(total / sectorSize)
            guard req.sector <= disk.sectorCount, count <= disk.sectorCount - req.sector else { return HV_EINVAL }
        }
        switch req.op {
        case HV_DISK_READ, HV_DISK_FLUSH: break
        case HV_DISK_WRITE: if disk.isReadOnly { return HV_EPERM }
        default: return HV_EINVAL
        }
        let op = req.op, sector = req.sector, tag = req.tag
        let byteCount = total, ranges = segments
        device.activity.beginDiskRequest()
        let queued = device.context.backends.diskQueue.submit { [device, disk] in
            defer { device.activity.endDiskRequest() }
            var result = Int64(byteCount)
            do {
                var buffer = [UInt8](repeating: 0, count: byteCount)
                switch op {
                case HV_DISK_READ:
                    try buffer.withUnsafeMutableBytes { try disk.read(sector: sector, into: $0) }
                    var at = 0
                    for s in ranges {
                        try buffer.withUnsafeBytes { try memory.write(at: s.gpa, from: UnsafeRawBufferPointer(rebasing: $0[at..<at + s.len])) }
                        at += s.len
                    }
                case HV_DISK_WRITE:
                    var at = 0
                    for s in ranges {
                        try buffer.withUnsafeMutableBytes { try memory.read(at: s.gpa, into: UnsafeMutableRawBufferPointer(rebasing: $0[at..<at + s.len])) }
                        at += s.len
                    }
                    try buffer.withUnsafeBytes { try disk.write(sector: sector, from: $0) }
                default:
                    try disk.flush()
                    result = 0
                }
            } catch {
                device.context.logger.warning("\(device.context.prefix): disk I/O failed: \(error)")
                result = Int64(-((error as? DiskError)?.errnoValue ?? -HV_EIO))
            }
            if let instance = device.instance, !device.destroyed { complete(instance, tag, result) }
        }
        // The queue refuses work once the host is shutting down; no completion will come.
        guard queued else {
            device.activity.endDiskRequest()
            return HV_EIO
        }
        return HV_OK
    }
}

extension PluginHostServices {
    static func installBackendServices(_ t: inout hv_host_services) {
        t.net_attach = { host, client, out in
            guard let d = PluginDevice.from(host), let client, let out else { return HV_EINVAL }
            guard client.pointee.struct_size >= UInt32(MemoryLayout<hv_net_client>.size),
                  let receive = client.pointee.receive else { return HV_EINVAL }
            guard d.netPorts.isEmpty else { return HV_EEXIST }
            let linkChanged = client.pointee.link_changed
            let mac = withUnsafeBytes(of: client.pointee.mac) { Array($0) }
            let name = d.context.configValue("networkname") ?? "VM Network"
            let registry = d.context.backends.switches
            // Two vNICs with one MAC would confuse every switch's learning: refuse, as ESX does.
            if let clash = registry.switches.lazy.flatMap(\.ports).first(where: { $0.mac.array == mac }) {
                d.context.logger.error("\(d.context.prefix): MAC address \(clash.mac) is already used by \(clash)")
                return HV_EBUSY
            }
            let (sw, vlan) = registry.attachment(forNetwork: name)
            let port = sw.makePort(
                name: "\(d.context.vmName).\(d.context.prefix)", mac: mac, vlan: vlan,
                receive: { [weak d] frame in
                    // [net-rx]: on the port's receive thread, a [device] call; a paused or
                    // destroyed device takes nothing.
                    guard let d, d.activity.beginReceive() else { return .dropped }
                    defer { d.activity.endReceive() }
                    var rc = HV_EIO
                    d.call { rc = receive($0, frame.baseAddress, frame.count) }
                    switch rc {
                    case HV_OK: return .taken
                    case HV_EAGAIN: return .full
                    default: return .dropped
                    }
                },
                linkChanged: { [weak d] up in
                    guard let d, let instance = d.instance, !d.destroyed, d.activity.beginReceive() else { return }
                    defer { d.activity.endReceive() }
                    linkChanged?(instance, up ? 1 : 0)
                })
            do {
                port.setShaping(try ShapingParameters(vmxKeys: d.context.configValue, prefix: d.context.prefix))
            } catch {
                d.context.logger.error("\(d.context.prefix): \(error)")
                sw.removePort(port)
                return HV_EINVAL
            }
            let p = PluginNetPort(port: port, virtualSwitch: sw, memory: d.context.memory)
            d.netPorts.append(p)
            out.pointee = p.handle
            return HV_OK
        }
        t.net_send = { port, frame, len in
            guard let p = PluginNetPort.from(port), let frame, len >= 0 else { return HV_EINVAL }
            switch p.port.send(UnsafeRawBufferPointer(start: frame, count: len)) {
            case .sent: return HV_OK
            case .invalidLength: return HV_EINVAL
            case .linkDown: return HV_EAGAIN
            }
        }
        t.net_link_up = { port in
            guard let p = PluginNetPort.from(port) else { return 0 }
            return p.port.isLinkUp ? 1 : 0
        }
        t.disk_open = { host, unit, out in
            guard let d = PluginDevice.from(host), let out else { return HV_EINVAL }
            do {
                guard let disk = try d.context.backends.openDisk(Int(unit)) else { return HV_ENOENT }
                let handle = PluginDisk(device: d, disk: disk)
                d.disks.append(handle)
                out.pointee = handle.handle
                return HV_OK
            } catch {
                d.context.logger.error("\(d.context.prefix):\(unit): \(error)")
                return HV_EIO
            }
        }
        t.disk_info = { disk, info in
            guard let handle = PluginDisk.from(disk), let info,
                  info.pointee.struct_size >= UInt32(MemoryLayout<hv_disk_info>.size) else { return HV_EINVAL }
            let d = handle.disk
            info.pointee.sector_size = UInt32(d.sectorSize)
            info.pointee.sectors = d.sectorCount
            info.pointee.read_only = d.isReadOnly ? 1 : 0
            return HV_OK
        }
        t.disk_submit = { disk, req in
            guard let handle = PluginDisk.from(disk), let req else { return HV_EINVAL }
            return handle.submit(req.pointee)
        }
    }
}

extension ShapingParameters {
    /// Outbound shaping from `ethernetN.shaping.average` / `.peak` (bits per second) and
    /// `.burst` (bytes); nil when none is set. Peak defaults to the average, burst to
    /// 100 ms of the peak rate (at least one frame).
    init?(vmxKeys value: (String) -> String?, prefix: String) throws {
        let keys = ["average", "peak", "burst"].map { "shaping." + $0 }
        guard keys.contains(where: { value($0) != nil }) else { return nil }
        func number(_ key: String) throws -> UInt64? {
            guard let text = value(key) else { return nil }
            guard let n = UInt64(text) else {
                throw SwitchConfigurationError("\(prefix).\(key) = \"\(text)\": expected a whole number (\(key.hasSuffix("burst") ? "bytes" : "bits per second"))")
            }
            return n
        }
        guard let average = try number(keys[0]) else {
            throw SwitchConfigurationError("\(prefix).shaping.peak/.burst need \(prefix).shaping.average (bits per second)")
        }
        let peak = try number(keys[1]) ?? average
        let burst = try number(keys[2]) ?? max(1518, peak / 80)
        do {
            try self.init(averageBitsPerSecond: average, peakBitsPerSecond: peak, burstBytes: burst)
        } catch {
            throw SwitchConfigurationError("\(prefix): \(error)")
        }
    }
}
