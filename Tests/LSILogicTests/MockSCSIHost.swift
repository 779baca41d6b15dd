import Foundation
import PluginABI

/// A VMkernel stand-in for one LSILogic instance: guest RAM, INTx, PCI command, BAR
/// handlers and an "hv.scsi/1" bus with in-memory disks. Completions are held until the
/// test calls `drain()` (never from inside submit, as the extension promises), so every
/// test is deterministic; `abort_all` ends held requests of its target first.
final class MockSCSIHost {
    static let sectorSize = 512

    let ram: UnsafeMutableRawPointer
    let ramSize: Int
    var pciCommand: UInt16 = 0x0007
    var irqLevel = false
    var irqChanges = 0
    var logs: [String] = []
    var barHandlers: [UInt32: hv_bar_desc] = [:]
    var identity = hv_pci_identity()
    /// Disks by target (LUN 0).
    var disks: [Int: [UInt8]] = [:]
    var unitAttention: Set<Int> = []
    var held: [(req: HeldRequest, tag: UInt64, complete: hv_scsi_complete_fn)] = []
    var aborts: [(target: Int32, reset: Int32)] = []
    var submitted = 0
    let lock = NSLock()

    struct HeldRequest {
        var target: Int
        var lun: Int
        var direction: UInt32
        var cdb: [UInt8]
        var segments: [hv_disk_segment]
    }

    var device: OpaquePointer?
    var model: UnsafePointer<hv_device_model>?

    init(ramSize: Int = 8 << 20, targets: [Int: Int] = [0: 1 << 20, 1: 1 << 20]) {
        self.ramSize = ramSize
        ram = .allocate(byteCount: ramSize, alignment: 4096)
        ram.initializeMemory(as: UInt8.self, repeating: 0, count: ramSize)
        for (t, size) in targets { disks[t] = [UInt8](repeating: 0, count: size) }
    }

    deinit {
        if let model, let device { model.pointee.ops.pointee.destroy(device) }
        ram.deallocate()
    }

    var handle: OpaquePointer { OpaquePointer(Unmanaged.passUnretained(self).toOpaque()) }
    static func from(_ p: OpaquePointer?) -> MockSCSIHost { Unmanaged<MockSCSIHost>.fromOpaque(UnsafeRawPointer(p!)).takeUnretainedValue() }

    // MARK: guest memory helpers

    func write(_ bytes: [UInt8], at gpa: UInt64) { bytes.withUnsafeBytes { (ram + Int(gpa)).copyMemory(from: $0.baseAddress!, byteCount: bytes.count) } }
    func read(_ gpa: UInt64, _ count: Int) -> [UInt8] { Array(UnsafeRawBufferPointer(start: ram + Int(gpa), count: count)) }
    func put32(_ v: UInt32, at gpa: UInt64) { (ram + Int(gpa)).storeBytes(of: v.littleEndian, as: UInt32.self) }
    func get32(_ gpa: UInt64) -> UInt32 { UInt32(littleEndian: (ram + Int(gpa)).loadUnaligned(as: UInt32.self)) }

    func inRAM(_ gpa: UInt64, _ len: Int) -> Bool { len >= 0 && gpa <= UInt64(ramSize) && UInt64(len) <= UInt64(ramSize) - gpa }

    // MARK: the SCSI target

    /// Runs held commands and calls their completions, in order.
    func drain() {
        while true {
            lock.lock()
            guard !held.isEmpty else { lock.unlock(); return }
            let h = held.removeFirst()
            lock.unlock()
            var result = execute(h.req)
            h.complete(device, h.tag, &result)
        }
    }

    func execute(_ r: HeldRequest) -> hv_scsi_result {
        var res = hv_scsi_result()
        res.struct_size = UInt32(MemoryLayout<hv_scsi_result>.size)
        let total = r.segments.reduce(0) { $0 + Int($1.len) }
        res.residual = UInt64(total)
        guard var disk = disks[r.target] else { res.host_status = UInt8(HV_SCSI_HOST_NO_TARGET); return res }
        for s in r.segments where !inRAM(s.gpa, Int(s.len)) { res.host_status = UInt8(HV_SCSI_HOST_BAD_DMA); return res }
        func check(_ key: UInt8, _ asc: UInt8) {
            res.status = UInt8(HV_SCSI_STATUS_CHECK_CONDITION)
            res.sense_len = 18
            withUnsafeMutableBytes(of: &res.sense) { $0[0] = 0x70; $0[2] = key; $0[7] = 10; $0[12] = asc }
        }
        func dataIn(_ bytes: [UInt8]) {
            var off = 0
            for s in r.segments where off < bytes.count {
                let n = min(Int(s.len), bytes.count - off)
                write(Array(bytes[off..<off + n]), at: s.gpa)
                off += n
            }
            res.residual = UInt64(total - off)
        }
        func gather(_ count: Int) -> [UInt8] {
            var out: [UInt8] = []
            for s in r.segments where out.count < count { out += read(s.gpa, min(Int(s.len), count - out.count)) }
            return out
        }
        if r.lun != 0 && r.cdb[0] != 0x12 { check(0x05, 0x25); return res }
        if unitAttention.contains(r.target) && r.cdb[0] != 0x12 {
            unitAttention.remove(r.target)
            check(0x06, 0x29)
            return res
        }
        let sectors = disk.count / Self.sectorSize
        switch r.cdb[0] {
        case 0x00: break                                          // TEST UNIT READY
        case 0x12:                                                // INQUIRY
            var inq = [UInt8](repeating: 0, count: 36)
            inq[0] = r.lun == 0 ? 0x00 : 0x7F
            inq[2] = 5; inq[3] = 2; inq[4] = 31
            for (i, b) in "VMware  Virtual disk    1.0 ".utf8.enumerated() { inq[8 + i] = b }
            let alloc = Int(r.cdb[3]) << 8 | Int(r.cdb[4])
            dataIn(Array(inq.prefix(alloc)))
        case 0x25:                                                // READ CAPACITY(10)
            let last = UInt32(sectors - 1)
            dataIn([UInt8(last >> 24), UInt8((last >> 16) & 0xFF), UInt8((last >> 8) & 0xFF), UInt8(last & 0xFF), 0, 0, 2, 0])
        case 0x28, 0x2A:                                          // READ(10) / WRITE(10)
            let lba = Int(r.cdb[2]) << 24 | Int(r.cdb[3]) << 16 | Int(r.cdb[4]) << 8 | Int(r.cdb[5])
            let count = Int(r.cdb[7]) << 8 | Int(r.cdb[8])
            guard lba + count <= sectors else { check(0x05, 0x21); return res }
            let bytes = count * Self.sectorSize
            let wantDir = r.cdb[0] == 0x28 ? HV_SCSI_DATA_IN : HV_SCSI_DATA_OUT
            guard bytes == 0 || r.direction == wantDir else { res.host_status = UInt8(HV_SCSI_HOST_DATA_DIR); return res }
            if r.cdb[0] == 0x28 {
                dataIn(Array(disk[lba * Self.sectorSize..<lba * Self.sectorSize + bytes]))
            } else {
                let data = gather(bytes)
                disk.replaceSubrange(lba * Self.sectorSize..<lba * Self.sectorSize + data.count, with: data)
                disks[r.target] = disk
                res.residual = UInt64(total - data.count)
            }
        default:
            check(0x05, 0x20)                                     // INVALID COMMAND OPERATION CODE
        }
        return res
    }

    // MARK: the C tables

    static let scsiExt: UnsafePointer<hv_scsi_ext> = {
        var x = hv_scsi_ext()
        x.struct_size = UInt32(MemoryLayout<hv_scsi_ext>.size)
        x.bus_open = { host, bus in bus?.pointee = host; return HV_OK }
        x.target_mask = { bus in
            MockSCSIHost.from(bus).disks.keys.reduce(UInt32(0)) { $0 | 1 << UInt32($1) }
        }
        x.submit = { bus, req in
            let h = MockSCSIHost.from(bus)
            guard let r = req?.pointee, r.target < 16, (6...16).contains(r.cdb_len), r.direction <= 2,
                  r.segment_count <= HV_SCSI_MAX_SEGMENTS, let complete = r.complete else { return HV_EINVAL }
            let segs = (0..<Int(r.segment_count)).map { r.segments[$0] }
            if segs.contains(where: { $0.len == 0 }) || (r.direction == HV_SCSI_DATA_NONE && !segs.isEmpty) { return HV_EINVAL }
            let cdb = withUnsafeBytes(of: r.cdb) { Array($0) }
            h.lock.lock()
            h.held.append((HeldRequest(target: Int(r.target), lun: Int(r.lun), direction: r.direction, cdb: cdb, segments: segs),
                           r.tag, complete))
            h.submitted += 1
            h.lock.unlock()
            return HV_OK
        }
        x.abort_all = { bus, target, reset in
            let h = MockSCSIHost.from(bus)
            h.lock.lock()
            h.aborts.append((target, reset))
            let ended = h.held.filter { target < 0 || $0.req.target == Int(target) }
            h.held.removeAll { target < 0 || $0.req.target == Int(target) }
            if reset != 0 {
                for t in h.disks.keys where target < 0 || t == Int(target) { h.unitAttention.insert(t) }
            }
            h.lock.unlock()
            for e in ended {
                var res = hv_scsi_result()
                res.struct_size = UInt32(MemoryLayout<hv_scsi_result>.size)
                res.host_status = UInt8(HV_SCSI_HOST_ABORTED)
                res.residual = UInt64(e.req.segments.reduce(0) { $0 + Int($1.len) })
                e.complete(h.device, e.tag, &res)
            }
            return HV_OK
        }
        let p = UnsafeMutablePointer<hv_scsi_ext>.allocate(capacity: 1)
        p.initialize(to: x)
        return UnsafePointer(p)
    }()

    static let services: UnsafePointer<hv_host_services> = {
        var s = hv_host_services()
        s.struct_size = UInt32(MemoryLayout<hv_host_services>.size)
        s.abi_version = (HV_ABI_VERSION_MAJOR << 16) | HV_ABI_VERSION_MINOR
        s.log = { host, _, msg in MockSCSIHost.from(host).logs.append(String(cString: msg!)) }
        s.config_get = { _, _ in nil }
        s.pci_set_identity = { host, id in MockSCSIHost.from(host).identity = id!.pointee; return HV_OK }
        s.pci_add_bar = { host, bar in MockSCSIHost.from(host).barHandlers[bar!.pointee.index] = bar!.pointee; return HV_OK }
        s.irq_set_level = { host, level in
            let h = MockSCSIHost.from(host)
            h.irqLevel = level != 0
            h.irqChanges += 1
        }
        s.mem_read = { host, gpa, buf, len in
            let h = MockSCSIHost.from(host)
            guard h.inRAM(gpa, len) else { return HV_EFAULT }
            buf!.copyMemory(from: h.ram + Int(gpa), byteCount: len)
            return HV_OK
        }
        s.mem_write = { host, gpa, buf, len in
            let h = MockSCSIHost.from(host)
            guard h.inRAM(gpa, len) else { return HV_EFAULT }
            (h.ram + Int(gpa)).copyMemory(from: buf!, byteCount: len)
            return HV_OK
        }
        s.pci_command = { host in MockSCSIHost.from(host).pciCommand }
        s.get_extension = { _, id in
            guard let id, String(cString: id) == HV_EXT_SCSI else { return nil }
            return UnsafeRawPointer(MockSCSIHost.scsiExt)
        }
        let p = UnsafeMutablePointer<hv_host_services>.allocate(capacity: 1)
        p.initialize(to: s)
        return UnsafePointer(p)
    }()

    // MARK: the plugin

    /// `libLSILogic.so` next to the test bundle (`.build/<triple>/debug`).
    static let pluginPath: String = {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? ""
        return URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("libLSILogic.so").path
    }()

    static func loadModel() throws -> UnsafePointer<hv_device_model> {
        guard let lib = dlopen(pluginPath, RTLD_NOW) else {
            throw NSError(domain: "LSILogicTests", code: 1, userInfo: [NSLocalizedDescriptionKey: "\(pluginPath): \(String(cString: dlerror()))"])
        }
        typealias Entry = @convention(c) () -> UnsafePointer<hv_plugin_entry>
        let entry = unsafeBitCast(dlsym(lib, HV_PLUGIN_ENTRY_SYMBOL)!, to: Entry.self)()
        let factory = entry.pointee.get_factory(HV_FACTORY_DEVICE)!.assumingMemoryBound(to: hv_device_factory.self)
        return factory.pointee.models[0]!
    }

    func create() throws {
        let model = try Self.loadModel()
        self.model = model
        var dev: OpaquePointer?
        let rc = model.pointee.create(Self.services, handle, &dev)
        guard rc == HV_OK, let dev else { throw NSError(domain: "LSILogicTests", code: Int(rc)) }
        device = dev
        model.pointee.ops.pointee.reset(dev)
    }

    // MARK: register access (BAR1, the memory BAR Linux uses)

    func readReg(_ offset: UInt64, bar: UInt32 = 1, size: UInt32 = 4) -> UInt32 {
        UInt32(truncatingIfNeeded: barHandlers[bar]!.read(device, bar, offset, size))
    }

    func writeReg(_ offset: UInt64, _ value: UInt32, bar: UInt32 = 1, size: UInt32 = 4) {
        barHandlers[bar]!.write(device, bar, offset, size, UInt64(value))
    }
}
