import Foundation
import PluginABI

/// A host for one BusLogic instance, without the VMkernel: guest RAM in a buffer, INTx
/// as a flag, and an "hv.scsi/1" whose targets are in-memory disks. Submitted requests
/// queue until the test completes them (`completeAll`), so tests control completion
/// order and can have requests in flight. Everything runs on the test thread.
final class MockSCSIHost {
    static let ramSize = 8 << 20
    static let blockSize = 512

    let ram: UnsafeMutableRawPointer
    var irq = false
    var pciCommand: UInt16 = 0x0007
    var identity = hv_pci_identity()
    var bars: [hv_bar_desc] = []
    var legacyRegions: [hv_legacy_region] = []
    /// Ports another device of the VM already has.
    var takenPorts: Set<UInt64> = []
    var disks: [UInt32: [UInt8]] = [:]
    var offerSCSI = true
    var logLines: [String] = []

    struct Queued {
        var target: UInt32
        var lun: UInt32
        var direction: UInt32
        var cdb: [UInt8]
        var segments: [hv_disk_segment]
        var tag: UInt64
        var complete: hv_scsi_complete_fn
    }
    var queue: [Queued] = []
    var submitted = 0
    var abortCalls: [(Int32, Int32)] = []
    /// Targets that reported UNIT ATTENTION after a reset, until their next command.
    var unitAttention: Set<UInt32> = []

    var services = hv_host_services()
    var scsiExt = hv_scsi_ext()
    var legacyExt = hv_legacy_io_ext()
    /// Stable copies of the tables handed to the plugin.
    let servicesTable = UnsafeMutablePointer<hv_host_services>.allocate(capacity: 1)
    let scsiTable = UnsafeMutablePointer<hv_scsi_ext>.allocate(capacity: 1)
    let legacyTable = UnsafeMutablePointer<hv_legacy_io_ext>.allocate(capacity: 1)
    var device: OpaquePointer?
    var model: UnsafePointer<hv_device_model>

    init(model: UnsafePointer<hv_device_model>, disks: [UInt32: Int]) {
        self.model = model
        ram = .allocate(byteCount: Self.ramSize, alignment: 4096)
        ram.initializeMemory(as: UInt8.self, repeating: 0, count: Self.ramSize)
        for (t, blocks) in disks { self.disks[t] = [UInt8](repeating: 0, count: blocks * Self.blockSize) }
        buildTables()
    }

    deinit {
        if let device { model.pointee.ops.pointee.destroy(device) }
        ram.deallocate()
        servicesTable.deallocate()
        scsiTable.deallocate()
        legacyTable.deallocate()
    }

    static func from(_ p: OpaquePointer?) -> MockSCSIHost {
        Unmanaged<MockSCSIHost>.fromOpaque(UnsafeRawPointer(p!)).takeUnretainedValue()
    }

    var handle: OpaquePointer { OpaquePointer(Unmanaged.passUnretained(self).toOpaque()) }

    /// create + reset, as the host does at power-on.
    func create() -> Int32 {
        var out: OpaquePointer?
        servicesTable.initialize(to: services)
        scsiTable.initialize(to: scsiExt)
        legacyTable.initialize(to: legacyExt)
        let rc = model.pointee.create(servicesTable, handle, &out)
        guard rc == HV_OK else { return rc }
        device = out
        model.pointee.ops.pointee.reset(device)
        return rc
    }

    private func buildTables() {
        services.struct_size = UInt32(MemoryLayout<hv_host_services>.size)
        services.abi_version = HV_ABI_VERSION_MAJOR << 16 | HV_ABI_VERSION_MINOR
        services.log = { h, _, msg in MockSCSIHost.from(h).logLines.append(String(cString: msg!)) }
        services.config_get = { _, _ in nil }
        services.pci_set_identity = { h, id in MockSCSIHost.from(h).identity = id!.pointee; return HV_OK }
        services.pci_add_bar = { h, bar in MockSCSIHost.from(h).bars.append(bar!.pointee); return HV_OK }
        services.irq_set_level = { h, level in MockSCSIHost.from(h).irq = level != 0 }
        services.mem_read = { h, gpa, buf, len in
            let m = MockSCSIHost.from(h)
            guard gpa <= UInt64(MockSCSIHost.ramSize), UInt64(len) <= UInt64(MockSCSIHost.ramSize) - gpa else { return HV_EFAULT }
            buf!.copyMemory(from: m.ram + Int(gpa), byteCount: len)
            return HV_OK
        }
        services.mem_write = { h, gpa, buf, len in
            let m = MockSCSIHost.from(h)
            guard gpa <= UInt64(MockSCSIHost.ramSize), UInt64(len) <= UInt64(MockSCSIHost.ramSize) - gpa else { return HV_EFAULT }
            (m.ram + Int(gpa)).copyMemory(from: buf!, byteCount: len)
            return HV_OK
        }
        services.pci_command = { h in MockSCSIHost.from(h).pciCommand }
        services.get_extension = { h, id in
            let m = MockSCSIHost.from(h)
            let name = String(cString: id!)
            if name == HV_EXT_SCSI && m.offerSCSI { return UnsafeRawPointer(m.scsiTable) }
            if name == HV_EXT_LEGACY_IO { return UnsafeRawPointer(m.legacyTable) }
            return nil
        }
        scsiExt.struct_size = UInt32(MemoryLayout<hv_scsi_ext>.size)
        scsiExt.bus_open = { h, bus in bus!.pointee = h; return HV_OK }
        scsiExt.target_mask = { b in
            MockSCSIHost.from(b).disks.keys.reduce(UInt32(0)) { $0 | 1 << $1 }
        }
        scsiExt.submit = { b, r in
            let m = MockSCSIHost.from(b)
            let req = r!.pointee
            guard req.target < HV_SCSI_MAX_TARGETS, (6...16).contains(req.cdb_len), req.direction <= HV_SCSI_DATA_BY_CDB,
                  req.segment_count <= HV_SCSI_MAX_SEGMENTS,
                  (req.direction == HV_SCSI_DATA_NONE) == (req.segment_count == 0) else { return HV_EINVAL }
            let segs = (0..<Int(req.segment_count)).map { req.segments[$0] }
            guard segs.allSatisfy({ $0.len > 0 }) else { return HV_EINVAL }
            let cdb = withUnsafeBytes(of: req.cdb) { Array($0) }   // all 16 bytes: a short CDB reads as zero-padded
            m.queue.append(Queued(target: req.target, lun: req.lun, direction: req.direction, cdb: cdb,
                                  segments: segs, tag: req.tag, complete: req.complete))
            m.submitted += 1
            return HV_OK
        }
        scsiExt.abort_all = { b, target, reset in
            let m = MockSCSIHost.from(b)
            m.abortCalls.append((target, reset))
            let hit = m.queue.filter { target < 0 || $0.target == UInt32(target) }
            m.queue.removeAll { target < 0 || $0.target == UInt32(target) }
            if reset != 0 {
                for t in m.disks.keys where target < 0 || t == UInt32(target) { m.unitAttention.insert(t) }
            }
            for q in hit {
                var r = MockSCSIHost.result(host: HV_SCSI_HOST_ABORTED)
                q.complete(m.device, q.tag, &r)
            }
            return HV_OK
        }
        legacyExt.struct_size = UInt32(MemoryLayout<hv_legacy_io_ext>.size)
        legacyExt.claim = { h, region in
            let m = MockSCSIHost.from(h)
            let r = region!.pointee
            guard !m.takenPorts.contains(r.base) else { return HV_EBUSY }
            m.takenPorts.insert(r.base)
            m.legacyRegions.append(r)
            return HV_OK
        }
    }

    // MARK: completing requests

    static func result(host: UInt32, status: UInt8 = 0, residual: UInt64 = 0, sense: [UInt8] = []) -> hv_scsi_result {
        var r = hv_scsi_result()
        r.struct_size = UInt32(MemoryLayout<hv_scsi_result>.size)
        r.host_status = UInt8(host)
        r.status = status
        r.residual = residual
        r.sense_len = UInt16(sense.count)
        withUnsafeMutableBytes(of: &r.sense) { for (i, b) in sense.enumerated() { $0[i] = b } }
        return r
    }

    static func checkCondition(_ key: UInt8, _ asc: UInt8, _ ascq: UInt8 = 0) -> hv_scsi_result {
        var sense = [UInt8](repeating: 0, count: 18)
        sense[0] = 0x70; sense[2] = key; sense[7] = 10; sense[12] = asc; sense[13] = ascq
        return result(host: HV_SCSI_HOST_OK, status: 2, sense: sense)
    }

    /// Completes every queued request (FIFO), executing it against the disks.
    func completeAll() {
        while !queue.isEmpty {
            let q = queue.removeFirst()
            var r = execute(q)
            q.complete(device, q.tag, &r)
        }
    }

    func execute(_ q: Queued) -> hv_scsi_result {
        guard var disk = disks[q.target] else { return Self.result(host: HV_SCSI_HOST_NO_TARGET) }
        for s in q.segments where s.gpa + UInt64(s.len) > UInt64(MockSCSIHost.ramSize) {
            return Self.result(host: HV_SCSI_HOST_BAD_DMA)
        }
        if q.lun != 0 { return Self.checkCondition(5, 0x25) }
        if unitAttention.remove(q.target) != nil && q.cdb[0] != 0x12 { return Self.checkCondition(6, 0x29) }
        let total = q.segments.reduce(0) { $0 + Int($1.len) }
        var dataIn: [UInt8]?
        let blocks = disk.count / Self.blockSize
        func lbaRange(_ lba: Int, _ count: Int) -> Bool { lba + count <= blocks }
        switch q.cdb[0] {
        case 0x00: break
        case 0x12:
            var inq = [UInt8](repeating: 0x20, count: 36)
            inq[0] = 0; inq[1] = 0; inq[2] = 5; inq[3] = 2; inq[4] = 31; inq[5] = 0; inq[6] = 0; inq[7] = 0x02
            dataIn = Array(inq.prefix(Int(q.cdb[4])))
        case 0x25:
            let last = UInt32(blocks - 1)
            dataIn = [UInt8(last >> 24), UInt8(last >> 16 & 0xFF), UInt8(last >> 8 & 0xFF), UInt8(last & 0xFF), 0, 0, 2, 0]
        case 0x28, 0x2A:
            let lba = Int(q.cdb[2]) << 24 | Int(q.cdb[3]) << 16 | Int(q.cdb[4]) << 8 | Int(q.cdb[5])
            let count = Int(q.cdb[7]) << 8 | Int(q.cdb[8])
            guard lbaRange(lba, count) else { return Self.checkCondition(5, 0x21) }
            let bytes = count * Self.blockSize
            if q.cdb[0] == 0x28 {
                guard q.direction != HV_SCSI_DATA_OUT else { return Self.result(host: HV_SCSI_HOST_DATA_DIR) }
                dataIn = Array(disk[lba * Self.blockSize ..< lba * Self.blockSize + bytes])
            } else {
                guard q.direction != HV_SCSI_DATA_IN else { return Self.result(host: HV_SCSI_HOST_DATA_DIR) }
                guard total >= bytes else { return Self.checkCondition(5, 0x24) }
                var off = lba * Self.blockSize
                var left = bytes
                for s in q.segments where left > 0 {
                    let n = min(Int(s.len), left)
                    for i in 0..<n { disk[off + i] = (ram + Int(s.gpa)).load(fromByteOffset: i, as: UInt8.self) }
                    off += n
                    left -= n
                }
                disks[q.target] = disk
                return Self.result(host: HV_SCSI_HOST_OK, residual: UInt64(total - bytes))
            }
        default:
            return Self.checkCondition(5, 0x20)
        }
        guard let data = dataIn else { return Self.result(host: HV_SCSI_HOST_OK, residual: UInt64(total)) }
        var off = 0
        for s in q.segments where off < data.count {
            let n = min(Int(s.len), data.count - off)
            data[off..<off + n].withUnsafeBytes { (ram + Int(s.gpa)).copyMemory(from: $0.baseAddress!, byteCount: n) }
            off += n
        }
        return Self.result(host: HV_SCSI_HOST_OK, residual: UInt64(total - off))
    }

    // MARK: guest memory helpers

    func poke(_ gpa: Int, _ bytes: [UInt8]) {
        for (i, b) in bytes.enumerated() { ram.storeBytes(of: b, toByteOffset: gpa + i, as: UInt8.self) }
    }

    func peek(_ gpa: Int, _ count: Int) -> [UInt8] {
        (0..<count).map { ram.load(fromByteOffset: gpa + $0, as: UInt8.self) }
    }

    func poke32(_ gpa: Int, _ v: UInt32) {
        poke(gpa, [UInt8(v & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v >> 16 & 0xFF), UInt8(v >> 24)])
    }

    func peek32(_ gpa: Int) -> UInt32 {
        let b = peek(gpa, 4)
        return UInt32(b[0]) | UInt32(b[1]) << 8 | UInt32(b[2]) << 16 | UInt32(b[3]) << 24
    }

    // MARK: register access (BAR0 unless told)

    func read(_ offset: UInt64, size: UInt32 = 1, bar: Int = 0) -> UInt64 {
        bars[bar].read!(device, UInt32(bar), offset, size)
    }

    func write(_ offset: UInt64, _ value: UInt64, size: UInt32 = 1, bar: Int = 0) {
        bars[bar].write!(device, UInt32(bar), offset, size, value)
    }

    func isaRead(_ port: UInt64) -> UInt64? {
        guard let r = legacyRegions.first(where: { $0.base <= port && port < $0.base + $0.size }) else { return nil }
        return r.read!(device, r.opaque, port, 1)
    }

    func isaWrite(_ port: UInt64, _ value: UInt8) {
        guard let r = legacyRegions.first(where: { $0.base <= port && port < $0.base + $0.size }) else { return }
        r.write!(device, r.opaque, port, 1, UInt64(value))
    }

    var status: UInt8 { UInt8(read(0)) }
    var interruptRegister: UInt8 { UInt8(read(2)) }
}
