import HVHostIO
import PluginABI

/// "hv.scsi/1": an HBA plugin hands CDBs and guest segments to the VMkernel's SCSI
/// layer (HVHostIO's SCSIBus with an SCSIDiskTarget per disk and an SCSICDROMTarget per
/// CD-ROM image), which runs them on the disk I/O queue.
extension PluginExtensions {
    static func scsiTable() -> hv_scsi_ext {
        var t = hv_scsi_ext()
        t.struct_size = UInt32(MemoryLayout<hv_scsi_ext>.size)
        t.bus_open = { host, out in
            guard let d = PluginDevice.from(host), let out else { return HV_EINVAL }
            return PluginSCSIBus.open(for: d, into: out)
        }
        t.target_mask = { bus in
            guard let bus else { return 0 }
            return PluginSCSIBus.from(bus).bus.targetMask
        }
        t.submit = { bus, req in
            guard let bus, let req else { return HV_EINVAL }
            return PluginSCSIBus.from(bus).submit(req)
        }
        t.abort_all = { bus, target, reset in
            guard let bus, (-1..<Int32(HV_SCSI_MAX_TARGETS)).contains(target) else { return HV_EINVAL }
            let waited = PluginSCSIBus.from(bus).bus.abortAll(target: target < 0 ? nil : Int(target), reset: reset != 0)
            return waited ? HV_OK : HV_EDEADLK
        }
        return t
    }
}

/// `hv_scsi_bus *`: the targets of one adapter instance, from its `scsiN:T.*` units.
final class PluginSCSIBus {
    unowned let device: PluginDevice
    let bus: SCSIBus

    private init(device: PluginDevice, bus: SCSIBus) {
        self.device = device
        self.bus = bus
    }

    var handle: OpaquePointer { OpaquePointer(Unmanaged.passUnretained(self).toOpaque()) }
    static func from(_ p: OpaquePointer) -> PluginSCSIBus { Unmanaged.fromOpaque(UnsafeRawPointer(p)).takeUnretainedValue() }

    /// bus_open: once per instance, during create(); a second call returns the same bus.
    static func open(for d: PluginDevice, into out: UnsafeMutablePointer<OpaquePointer?>) -> Int32 {
        guard d.model.pointee.kind == HV_DEVICE_KIND_SCSI else {
            return d.refuse(HV_ENOENT, "hv.scsi/1 bus_open: the model is not a SCSI adapter (HV_DEVICE_KIND_SCSI)")
        }
        if let existing = d.scsiBus {
            out.pointee = existing.handle
            return HV_OK
        }
        guard d.creating else { return d.refuse(HV_EPERM, "hv.scsi/1 bus_open is only allowed during create()") }
        var targets: [(any SCSITarget)?] = []
        for unit in 0..<SCSIBus.maxTargets {
            do {
                let seed = "\(d.context.vmName)/\(d.context.prefix):\(unit)"
                targets.append(try d.context.backends.openDisk(unit).map { disk -> any SCSITarget in
                    // An ISO image is a CD-ROM drive with the disc inserted.
                    if let image = disk as? CDROMImage { return SCSICDROMTarget(medium: image, seed: seed) }
                    return SCSIDiskTarget(disk: disk, seed: seed)
                })
            } catch {
                return d.refuse(HV_EIO, "\(d.context.prefix):\(unit): \(error)")
            }
        }
        let b = PluginSCSIBus(device: d, bus: SCSIBus(targets: targets, queue: d.context.backends.diskQueue))
        d.scsiBus = b
        out.pointee = b.handle
        return HV_OK
    }

    /// Validates the request's form (HV_EINVAL, no completion); everything about the
    /// command itself, guest addresses included, is answered in the completion.
    func submit(_ r: UnsafePointer<hv_scsi_request>) -> Int32 {
        let req = r.pointee
        guard req.struct_size >= UInt32(MemoryLayout<hv_scsi_request>.size), let complete = req.complete,
              req.target < HV_SCSI_MAX_TARGETS, (6...HV_SCSI_MAX_CDB).contains(req.cdb_len),
              req.segment_count <= HV_SCSI_MAX_SEGMENTS, req.segment_count == 0 || req.segments != nil
        else { return HV_EINVAL }
        let direction: SCSIDataDirection
        switch req.direction {
        case HV_SCSI_DATA_NONE: direction = .none
        case HV_SCSI_DATA_IN: direction = .toInitiator
        case HV_SCSI_DATA_OUT: direction = .fromInitiator
        case HV_SCSI_DATA_BY_CDB: direction = .byCommand
        default: return HV_EINVAL
        }
        guard direction != .none || req.segment_count == 0 else { return HV_EINVAL }
        var segments: [GuestSegmentBuffer.Segment] = []
        segments.reserveCapacity(Int(req.segment_count))
        var length = 0
        for i in 0..<Int(req.segment_count) {
            let s = req.segments[i]
            guard s.len > 0 else { return HV_EINVAL }
            segments.append(.init(gpa: s.gpa, length: Int(s.len)))
            length += Int(s.len)
        }
        let cdb = withUnsafeBytes(of: req.cdb) { Array($0.prefix(Int(req.cdb_len))) }
        let request = SCSIRequest(target: Int(req.target), lun: req.lun, cdb: cdb, direction: direction,
                                  data: GuestSegmentBuffer(memory: device.context.memory, segments: segments),
                                  dataLength: length)
        let tag = req.tag
        device.activity.beginDiskRequest()
        let queued = bus.submit(request) { [device] response in
            defer { device.activity.endDiskRequest() }
            guard let instance = device.instance, !device.destroyed else { return }
            var result = hv_scsi_result()
            result.struct_size = UInt32(MemoryLayout<hv_scsi_result>.size)
            result.host_status = response.hostStatus.rawValue
            result.status = response.status
            result.residual = response.residual
            let senseCount = min(response.sense.count, Int(HV_SCSI_SENSE_MAX))
            result.sense_len = UInt16(senseCount)
            withUnsafeMutableBytes(of: &result.sense) { $0.copyBytes(from: response.sense.prefix(senseCount)) }
            complete(instance, tag, &result)
        }
        // The queue refuses work once the host is shutting down; no completion will come.
        guard queued else {
            device.activity.endDiskRequest()
            return HV_EIO
        }
        return HV_OK
    }
}
