import HVSupport

/// The VMkernel's SCSI target: one direct-access logical unit (LUN 0) over a
/// `VirtualDisk`, the same for every adapter. It executes one command synchronously on
/// the calling (I/O) thread and answers as a SPC-3/SBC-3 disk does: data, status,
/// fixed-format sense and residual. Commands may run concurrently; the target's own
/// state (started, write cache) is behind a lock, its pending sense in `unitSense`.
package final class SCSIDiskTarget: SCSILogicalUnit, @unchecked Sendable {
    package let disk: VirtualDisk
    private let identity: SCSIUnitIdentity
    /// VPD 80h unit serial number (ASCII).
    package var serial: String { identity.serial }
    /// VPD 83h NAA 5 designator: VMware's OUI and 36 bits derived from the seed.
    package var naaIdentifier: UInt64 { identity.naaIdentifier }

    let unitSense = SCSIUnitSense()
    private let state = HostLock()
    // [state]
    private var stopped = false
    private var writeCacheEnabled = true

    /// Bytes moved between the disk and the initiator's buffer per step.
    static let chunkBytes = 1 << 20
    /// VPD B0h limits, enforced by WRITE SAME and UNMAP.
    static let maxWriteSameBlocks: UInt64 = 0x40_0000
    static let maxUnmapBlocks: UInt64 = 0x40_0000
    static let maxUnmapDescriptors = 64

    /// `seed` names the unit stably across power cycles (e.g. "vm.vmx/scsi0:1"); the
    /// serial number and NAA identifier are derived from it.
    package init(disk: VirtualDisk, seed: String) {
        self.disk = disk
        identity = SCSIUnitIdentity(seed: seed)
    }

    /// Power-on state after a bus or target reset: started, write cache on, and
    /// UNIT ATTENTION (29h/00h) reported on the next command.
    package func reset() {
        unitSense.raise(.powerOnReset)
        state.withLock {
            stopped = false
            writeCacheEnabled = true
        }
    }

    private var blockSize: Int { disk.sectorSize }

    private typealias Opcode = SCSIOpcode
    static let readCapacity16ServiceAction: UInt8 = 0x10

    // MARK: Execution

    package func execute(lun: UInt32, cdb: [UInt8], direction: SCSIDataDirection, data: SCSIDataBuffer) -> SCSIResponse {
        SCSIUnitSense.execute(self, lun: lun, cdb: cdb, direction: direction, data: data)
    }

    func idleSense() -> SCSISense { isStopped ? .notReadyStartRequired : .noSense }

    func command(_ opcode: UInt8, _ cdb: [UInt8], _ io: Exchange) -> SCSIResponse {
        switch opcode {
        case Opcode.testUnitReady:
            return isStopped ? io.check(.notReadyStartRequired) : io.done()
        case Opcode.readCapacity10: return readCapacity10(cdb, io)
        case Opcode.serviceActionIn16:
            // Of SERVICE ACTION IN(16) only READ CAPACITY(16) is implemented.
            guard cdb[1] & 0x1F == Self.readCapacity16ServiceAction else { return io.check(.invalidFieldInCDB) }
            return readCapacity16(cdb, io)
        case Opcode.read6, Opcode.read10, Opcode.read12, Opcode.read16,
             Opcode.write6, Opcode.write10, Opcode.write12, Opcode.write16:
            return readWrite(cdb, io)
        case Opcode.verify10, Opcode.verify16: return verify(cdb, io)
        case Opcode.synchronizeCache10, Opcode.synchronizeCache16: return synchronizeCache(cdb, io)
        case Opcode.startStopUnit: return startStopUnit(cdb, io)
        case Opcode.modeSense6, Opcode.modeSense10: return modeSense(cdb, io)
        case Opcode.modeSelect6, Opcode.modeSelect10: return modeSelect(cdb, io)
        case Opcode.writeSame16: return writeSame16(cdb, io)
        case Opcode.unmap where disk.supportsDiscard: return unmap(cdb, io)
        default: return io.check(.invalidOpcode)
        }
    }

    private var isStopped: Bool { state.withLock { stopped } }

    // MARK: Inquiry, sense, LUNs, capacity

    func standardInquiry() -> [UInt8] {
        var d = [UInt8](repeating: 0x20, count: 36)
        d[0] = 0x00                 // connected direct-access block device
        d[1] = 0x00                 // not removable
        d[2] = 0x05                 // SPC-3
        d[3] = 0x12                 // HiSup, response data format 2
        d[4] = UInt8(d.count - 5)
        d[5] = 0x00
        d[6] = 0x00
        d[7] = 0x02                 // CmdQue: tagged queueing
        d.replaceSubrange(8..<16, with: Array("VMware  ".utf8))
        d.replaceSubrange(16..<32, with: Array("Virtual disk    ".utf8))
        d.replaceSubrange(32..<36, with: Array("1.0 ".utf8))
        return d
    }

    private var vpdPages: [UInt8] {
        disk.supportsDiscard ? [0x00, 0x80, 0x83, 0xB0, 0xB1, 0xB2] : [0x00, 0x80, 0x83, 0xB0, 0xB1]
    }

    /// VPD pages 00h, 80h, 83h, B0h, B1h and (thin) B2h.
    func vpdPage(_ page: UInt8) -> [UInt8]? {
        guard vpdPages.contains(page) else { return nil }
        switch page {
        case 0x00:
            return vpdPages
        case 0x80:
            return Array(serial.utf8)
        case 0x83:
            return identity.deviceIdentification
        case 0xB0:
            // Block limits: WSNZ, and the WRITE SAME / UNMAP limits enforced below.
            var body = [UInt8](repeating: 0, count: 0x3C)
            body[0] = 0x01
            if disk.supportsDiscard {
                body.storeBigEndian(UInt32(Self.maxUnmapBlocks), at: 16)
                body.storeBigEndian(UInt32(Self.maxUnmapDescriptors), at: 20)
                body.storeBigEndian(UInt32(4096 / blockSize), at: 24)   // optimal unmap granularity
            }
            body.storeBigEndian(Self.maxWriteSameBlocks, at: 32)
            return body
        case 0xB1:
            // Block device characteristics: rotation rate and form factor not reported.
            return [UInt8](repeating: 0, count: 0x3C)
        default:
            // 0xB2 logical block provisioning: UNMAP and WRITE SAME(16) unmap, thin.
            return [0x00, 0xC0, 0x02, 0x00]
        }
    }

    private func readCapacity10(_ cdb: [UInt8], _ io: Exchange) -> SCSIResponse {
        // Without PMI the LOGICAL BLOCK ADDRESS must be 0.
        guard cdb[8] & 0x01 != 0 || cdb.bigEndian(at: 2, count: 4) == 0 else { return io.check(.invalidFieldInCDB) }
        var d = [UInt8](repeating: 0, count: 8)
        let last = disk.sectorCount - 1
        d.storeBigEndian(UInt32(min(last, 0xFFFF_FFFF)), at: 0)
        d.storeBigEndian(UInt32(blockSize), at: 4)
        return io.dataIn(d, allocation: d.count)
    }

    private func readCapacity16(_ cdb: [UInt8], _ io: Exchange) -> SCSIResponse {
        guard cdb[14] & 0x01 != 0 || cdb.bigEndian(at: 2, count: 8) == 0 else { return io.check(.invalidFieldInCDB) }
        var d = [UInt8](repeating: 0, count: 32)
        d.storeBigEndian(disk.sectorCount - 1, at: 0)
        d.storeBigEndian(UInt32(blockSize), at: 8)
        // LBPME and LBPRZ: unmapped blocks read as zeros.
        if disk.supportsDiscard { d[14] = 0xC0 }
        return io.dataIn(d, allocation: Int(cdb.bigEndian(at: 10, count: 4)))
    }

    // MARK: Media access

    /// LBA and transfer length of READ/WRITE/VERIFY/SYNCHRONIZE CACHE CDBs.
    private static func lbaAndLength(_ cdb: [UInt8]) -> (lba: UInt64, blocks: UInt64) {
        switch cdb[0] >> 5 {
        case 0:
            let blocks = UInt64(cdb[4])
            return (cdb.bigEndian(at: 1, count: 3) & 0x1F_FFFF, blocks == 0 ? 256 : blocks)
        case 1, 2: return (cdb.bigEndian(at: 2, count: 4), cdb.bigEndian(at: 7, count: 2))
        case 5: return (cdb.bigEndian(at: 2, count: 4), cdb.bigEndian(at: 6, count: 4))
        default: return (cdb.bigEndian(at: 2, count: 8), cdb.bigEndian(at: 10, count: 4))
        }
    }

    private func inRange(lba: UInt64, blocks: UInt64) -> Bool {
        lba <= disk.sectorCount && blocks <= disk.sectorCount - lba
    }

    /// Sense for a failed host I/O: the disk's own refusals map to their SCSI meaning,
    /// anything else is a medium error at `lba`.
    private static func sense(for error: Error, writing: Bool, lba: UInt64) -> SCSISense {
        switch error as? DiskError {
        case .readOnly: return .writeProtected
        case .outOfRange: return .lbaOutOfRange
        default:
            var s: SCSISense = writing ? .writeError : .unrecoveredReadError
            if lba <= 0xFFFF_FFFF { s.information = UInt32(lba) }
            return s
        }
    }

    private func readWrite(_ cdb: [UInt8], _ io: Exchange) -> SCSIResponse {
        let writing = cdb[0] & 0x0F == 0x0A
        let (lba, blocks) = Self.lbaAndLength(cdb)
        // RDPROTECT/WRPROTECT: this disk has no protection information.
        if cdb[0] >> 5 != 0, cdb[1] & 0xE0 != 0 { return io.check(.invalidFieldInCDB) }
        let fua = cdb[0] >> 5 != 0 && cdb[1] & 0x08 != 0
        if isStopped { return io.check(.notReadyStartRequired) }
        guard inRange(lba: lba, blocks: blocks) else { return io.check(.lbaOutOfRange) }
        if writing && disk.isReadOnly { return io.check(.writeProtected) }
        let bytes = blocks * UInt64(blockSize)
        if let refusal = io.phase(bytes: bytes, toInitiator: !writing) { return refusal }
        let total = Int(bytes)
        let chunk = min(total, Self.chunkBytes)
        var bounce = [UInt8](repeating: 0, count: chunk)
        var done = 0
        while done < total {
            let n = min(chunk, total - done)
            let sector = lba + UInt64(done / blockSize)
            let failure: SCSIResponse? = bounce.withUnsafeMutableBytes { raw in
                let piece = UnsafeMutableRawBufferPointer(rebasing: raw[0..<n])
                if writing {
                    do { try io.data.load(into: piece, at: done) } catch { return io.badDMA(moved: done) }
                    do { try disk.write(sector: sector, from: UnsafeRawBufferPointer(piece)) } catch {
                        return io.check(Self.sense(for: error, writing: true, lba: sector), moved: done)
                    }
                } else {
                    do { try disk.read(sector: sector, into: piece) } catch {
                        return io.check(Self.sense(for: error, writing: false, lba: sector), moved: done)
                    }
                    do { try io.data.store(UnsafeRawBufferPointer(piece), at: done) } catch { return io.badDMA(moved: done) }
                }
                return nil
            }
            if let failure { return failure }
            done += n
        }
        if writing && total > 0 && (fua || !state.withLock({ writeCacheEnabled })) {
            do { try disk.flush() } catch { return io.check(Self.sense(for: error, writing: true, lba: lba), moved: done) }
        }
        return io.done(moved: total)
    }

    /// VERIFY(10/16): BYTCHK 0 reads the blocks back from the medium; BYTCHK 1 also
    /// compares them with the data-out buffer (MISCOMPARE on a difference).
    private func verify(_ cdb: [UInt8], _ io: Exchange) -> SCSIResponse {
        let (lba, blocks) = Self.lbaAndLength(cdb)
        let byteCheck = (cdb[1] >> 1) & 0x03
        guard cdb[1] & 0xE0 == 0, byteCheck <= 1 else { return io.check(.invalidFieldInCDB) }
        if isStopped { return io.check(.notReadyStartRequired) }
        guard inRange(lba: lba, blocks: blocks) else { return io.check(.lbaOutOfRange) }
        let total = Int(blocks) * blockSize
        if byteCheck == 1, let refusal = io.phase(bytes: UInt64(total), toInitiator: false) { return refusal }
        let chunk = min(total, Self.chunkBytes)
        var medium = [UInt8](repeating: 0, count: chunk)
        var expected = [UInt8](repeating: 0, count: byteCheck == 1 ? chunk : 0)
        var done = 0
        while done < total {
            let n = min(chunk, total - done)
            let sector = lba + UInt64(done / blockSize)
            do {
                try medium.withUnsafeMutableBytes { try disk.read(sector: sector, into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<n])) }
            } catch {
                return io.check(Self.sense(for: error, writing: false, lba: sector), moved: byteCheck == 1 ? done : 0)
            }
            if byteCheck == 1 {
                do {
                    try expected.withUnsafeMutableBytes { try io.data.load(into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<n]), at: done) }
                } catch { return io.badDMA(moved: done) }
                if let i = (0..<n).first(where: { medium[$0] != expected[$0] }) {
                    var s = SCSISense.miscompare
                    s.information = UInt32(truncatingIfNeeded: done + i)   // offset of the first differing byte
                    return io.check(s, moved: done + n)
                }
            }
            done += n
        }
        return io.done(moved: byteCheck == 1 ? total : 0)
    }

    private func synchronizeCache(_ cdb: [UInt8], _ io: Exchange) -> SCSIResponse {
        let sixteen = cdb[0] == Opcode.synchronizeCache16
        let lba = sixteen ? cdb.bigEndian(at: 2, count: 8) : cdb.bigEndian(at: 2, count: 4)
        let blocks = sixteen ? cdb.bigEndian(at: 10, count: 4) : cdb.bigEndian(at: 7, count: 2)
        guard inRange(lba: lba, blocks: blocks) else { return io.check(.lbaOutOfRange) }
        do { try disk.flush() } catch { return io.check(Self.sense(for: error, writing: true, lba: lba)) }
        return io.done()
    }

    /// START STOP UNIT: START / stop the "medium" (a stopped unit answers media access
    /// with NOT READY); power conditions are accepted without effect; a disk has no
    /// medium to eject.
    private func startStopUnit(_ cdb: [UInt8], _ io: Exchange) -> SCSIResponse {
        let powerCondition = cdb[4] >> 4
        let loej = cdb[4] & 0x02 != 0
        let start = cdb[4] & 0x01 != 0
        guard powerCondition == 0 else { return io.done() }
        guard !loej else { return io.check(.invalidFieldInCDB) }
        if !start {
            // Like a drive spinning down: its cache reaches the medium first.
            do { try disk.flush() } catch { return io.check(Self.sense(for: error, writing: true, lba: 0)) }
        }
        state.withLock { stopped = !start }
        return io.done()
    }

    // MARK: Mode pages

    /// Page control: current, changeable, default (saved values are not supported).
    enum PageControl: UInt8 { case current = 0, changeable = 1, defaults = 2 }

    static let cachingPage: UInt8 = 0x08
    static let controlPage: UInt8 = 0x0A
    static let rigidGeometryPage: UInt8 = 0x04
    static let allPages: UInt8 = 0x3F

    /// One mode page (header included) for `control`; nil for a page this target lacks.
    func modePage(_ code: UInt8, control: PageControl) -> [UInt8]? {
        switch code {
        case Self.rigidGeometryPage:
            var p = [UInt8](repeating: 0, count: 24)
            p[0] = code; p[1] = 0x16
            guard control != .changeable else { return p }
            // 255 heads x 63 sectors per track, as disk BIOSes translate large disks.
            let cylinders = min(disk.sectorCount / (255 * 63), 0xFF_FFFF)
            p[2] = UInt8(truncatingIfNeeded: cylinders >> 16)
            p[3] = UInt8(truncatingIfNeeded: cylinders >> 8)
            p[4] = UInt8(truncatingIfNeeded: cylinders)
            p[5] = 255
            return p
        case Self.cachingPage:
            var p = [UInt8](repeating: 0, count: 20)
            p[0] = code; p[1] = 0x12
            switch control {
            case .current: p[2] = state.withLock { writeCacheEnabled } ? 0x04 : 0
            case .changeable, .defaults: p[2] = 0x04        // WCE
            }
            return p
        case Self.controlPage:
            var p = [UInt8](repeating: 0, count: 12)
            p[0] = code; p[1] = 0x0A
            if control != .changeable { p[3] = 0x10 }       // unrestricted reordering
            return p
        default:
            return nil
        }
    }

    private func modeSense(_ cdb: [UInt8], _ io: Exchange) -> SCSIResponse {
        let ten = cdb[0] == Opcode.modeSense10
        let dbd = cdb[1] & 0x08 != 0
        let longLBA = ten && cdb[1] & 0x10 != 0
        let page = cdb[2] & 0x3F
        let subpage = cdb[3]
        let allocation = ten ? Int(cdb.bigEndian(at: 7, count: 2)) : Int(cdb[4])
        guard let control = PageControl(rawValue: cdb[2] >> 6) else { return io.check(.savingParametersNotSupported) }
        guard subpage == 0 || (page == Self.allPages && subpage == 0xFF) else { return io.check(.invalidFieldInCDB) }
        var pages: [UInt8] = []
        if page == Self.allPages {
            for code in [Self.rigidGeometryPage, Self.cachingPage, Self.controlPage] { pages += modePage(code, control: control)! }
        } else {
            guard let p = modePage(page, control: control) else { return io.check(.invalidFieldInCDB) }
            pages = p
        }
        var descriptor: [UInt8] = []
        if !dbd {
            if longLBA {
                descriptor = [UInt8](repeating: 0, count: 16)
                descriptor.storeBigEndian(disk.sectorCount, at: 0)
                descriptor.storeBigEndian(UInt32(blockSize), at: 12)
            } else {
                descriptor = [UInt8](repeating: 0, count: 8)
                descriptor.storeBigEndian(UInt32(min(disk.sectorCount, 0xFFFF_FFFF)), at: 0)
                descriptor.storeBigEndian(UInt32(blockSize), at: 4)   // byte 4 reserved, 5..7 length
            }
        }
        // Device-specific parameter: WP, and DPOFUA (FUA is honoured).
        let deviceSpecific: UInt8 = (disk.isReadOnly ? 0x80 : 0) | 0x10
        var header: [UInt8]
        if ten {
            header = [0, 0, 0, deviceSpecific, longLBA ? 0x01 : 0, 0, 0, 0]
            header.storeBigEndian(UInt16(descriptor.count), at: 6)
            header.storeBigEndian(UInt16(header.count + descriptor.count + pages.count - 2), at: 0)
        } else {
            header = [UInt8(4 + descriptor.count + pages.count - 1), 0, deviceSpecific, UInt8(descriptor.count)]
        }
        return io.dataIn(header + descriptor + pages, allocation: allocation)
    }

    /// MODE SELECT: the parameter list must describe this disk (512-byte blocks) and
    /// may change only what MODE SENSE reports changeable (the caching page's WCE,
    /// which takes effect); pages sent back unchanged are accepted as they are.
    private func modeSelect(_ cdb: [UInt8], _ io: Exchange) -> SCSIResponse {
        let ten = cdb[0] == Opcode.modeSelect10
        let length = ten ? Int(cdb.bigEndian(at: 7, count: 2)) : Int(cdb[4])
        // SP: parameters cannot be saved. PF must be set for a non-empty list (SCSI-2
        // vendor-specific pages are not understood).
        guard cdb[1] & 0x01 == 0, length == 0 || cdb[1] & 0x10 != 0 else { return io.check(.invalidFieldInCDB) }
        guard length > 0 else { return io.done() }
        if let refusal = io.phase(bytes: UInt64(length), toInitiator: false) { return refusal }
        var list = [UInt8](repeating: 0, count: length)
        do { try list.withUnsafeMutableBytes { try io.data.load(into: $0, at: 0) } } catch { return io.badDMA(moved: 0) }
        let headerLength = ten ? 8 : 4
        guard length >= headerLength else { return io.check(.parameterListLengthError, moved: length) }
        let descriptorLength = ten ? Int(list.bigEndian(at: 6, count: 2)) : Int(list[3])
        let longLBA = ten && list[4] & 0x01 != 0
        guard headerLength + descriptorLength <= length else { return io.check(.parameterListLengthError, moved: length) }
        if descriptorLength > 0 {
            let size = longLBA ? 16 : 8
            guard descriptorLength % size == 0 else { return io.check(.invalidFieldInParameterList, moved: length) }
            var at = headerLength
            while at < headerLength + descriptorLength {
                let blockLength = longLBA ? list.bigEndian(at: at + 12, count: 4) : list.bigEndian(at: at + 5, count: 3)
                guard blockLength == UInt64(blockSize) else { return io.check(.invalidFieldInParameterList, moved: length) }
                at += size
            }
        }
        var newWriteCache: Bool?
        var at = headerLength + descriptorLength
        while at < length {
            guard at + 2 <= length else { return io.check(.parameterListLengthError, moved: length) }
            let code = list[at] & 0x3F
            // SPF (sub-page format): this target has no subpages.
            guard list[at] & 0x40 == 0 else { return io.check(.invalidFieldInParameterList, moved: length) }
            let pageLength = Int(list[at + 1]) + 2
            guard at + pageLength <= length else { return io.check(.parameterListLengthError, moved: length) }
            guard let current = modePage(code, control: .current), let changeable = modePage(code, control: .changeable),
                  current.count == pageLength else {
                return io.check(.invalidFieldInParameterList, moved: length)
            }
            let sent = Array(list[at..<at + pageLength])
            // Byte 0 carries PS (ignored on select); everything not changeable must stay.
            for i in 1..<pageLength where (sent[i] ^ current[i]) & ~changeable[i] != 0 {
                return io.check(.invalidFieldInParameterList, moved: length)
            }
            if code == Self.cachingPage { newWriteCache = sent[2] & 0x04 != 0 }
            at += pageLength
        }
        if let newWriteCache {
            // Turning the write cache off makes every later write write-through; what
            // the cache holds now reaches the medium first.
            if !newWriteCache {
                do { try disk.flush() } catch { return io.check(Self.sense(for: error, writing: true, lba: 0), moved: length) }
            }
            state.withLock { writeCacheEnabled = newWriteCache }
        }
        return io.done(moved: length)
    }

    // MARK: Thin provisioning

    /// WRITE SAME(16): writes one block of data-out to every block of the range; with
    /// UNMAP and an all-zero block the range is deallocated instead (reads as zeros).
    private func writeSame16(_ cdb: [UInt8], _ io: Exchange) -> SCSIResponse {
        let unmapRequested = cdb[1] & 0x08 != 0
        // WRPROTECT, ANCHOR and NDOB are not supported.
        guard cdb[1] & 0xF1 == 0 else { return io.check(.invalidFieldInCDB) }
        let lba = cdb.bigEndian(at: 2, count: 8)
        let blocks = cdb.bigEndian(at: 10, count: 4)
        guard blocks > 0, blocks <= Self.maxWriteSameBlocks else { return io.check(.invalidFieldInCDB) }
        if isStopped { return io.check(.notReadyStartRequired) }
        guard inRange(lba: lba, blocks: blocks) else { return io.check(.lbaOutOfRange) }
        if disk.isReadOnly { return io.check(.writeProtected) }
        if let refusal = io.phase(bytes: UInt64(blockSize), toInitiator: false) { return refusal }
        var block = [UInt8](repeating: 0, count: blockSize)
        do { try block.withUnsafeMutableBytes { try io.data.load(into: $0, at: 0) } } catch { return io.badDMA(moved: 0) }
        do {
            if unmapRequested && disk.supportsDiscard && block.allSatisfy({ $0 == 0 }) {
                try disk.discard(sector: lba, count: blocks)
            } else {
                let perChunk = UInt64(max(1, Self.chunkBytes / blockSize))
                let pattern = Array([[UInt8]](repeating: block, count: Int(min(blocks, perChunk))).joined())
                var done: UInt64 = 0
                while done < blocks {
                    let n = min(perChunk, blocks - done)
                    try pattern.withUnsafeBytes { try disk.write(sector: lba + done, from: UnsafeRawBufferPointer(rebasing: $0[0..<Int(n) * blockSize])) }
                    done += n
                }
            }
            if !state.withLock({ writeCacheEnabled }) { try disk.flush() }
        } catch {
            return io.check(Self.sense(for: error, writing: true, lba: lba), moved: blockSize)
        }
        return io.done(moved: blockSize)
    }

    /// UNMAP: deallocates the ranges of the parameter list's block descriptors, all
    /// checked before any is discarded.
    private func unmap(_ cdb: [UInt8], _ io: Exchange) -> SCSIResponse {
        guard cdb[1] & 0x01 == 0 else { return io.check(.invalidFieldInCDB) }      // ANCHOR
        let length = Int(cdb.bigEndian(at: 7, count: 2))
        guard length > 0 else { return io.done() }
        if isStopped { return io.check(.notReadyStartRequired) }
        if disk.isReadOnly { return io.check(.writeProtected) }
        if let refusal = io.phase(bytes: UInt64(length), toInitiator: false) { return refusal }
        var list = [UInt8](repeating: 0, count: length)
        do { try list.withUnsafeMutableBytes { try io.data.load(into: $0, at: 0) } } catch { return io.badDMA(moved: 0) }
        guard length >= 8 else { return io.check(.parameterListLengthError, moved: length) }
        let descriptorBytes = min(Int(list.bigEndian(at: 2, count: 2)), length - 8) / 16 * 16
        let count = descriptorBytes / 16
        guard count <= Self.maxUnmapDescriptors else { return io.check(.invalidFieldInParameterList, moved: length) }
        var ranges: [(lba: UInt64, blocks: UInt64)] = []
        var totalBlocks: UInt64 = 0
        for i in 0..<count {
            let at = 8 + 16 * i
            let lba = list.bigEndian(at: at, count: 8)
            let blocks = list.bigEndian(at: at + 8, count: 4)
            guard inRange(lba: lba, blocks: blocks) else { return io.check(.lbaOutOfRange, moved: length) }
            totalBlocks += blocks
            guard totalBlocks <= Self.maxUnmapBlocks else { return io.check(.invalidFieldInParameterList, moved: length) }
            if blocks > 0 { ranges.append((lba, blocks)) }
        }
        for r in ranges {
            do { try disk.discard(sector: r.lba, count: r.blocks) } catch {
                return io.check(Self.sense(for: error, writing: true, lba: r.lba), moved: length)
            }
        }
        return io.done(moved: length)
    }
}

/// The initiator's side of one command: its direction and buffer, and the responses
/// that account for what moved (residual = buffer bytes not transferred).
struct Exchange {
    let direction: SCSIDataDirection
    let data: SCSIDataBuffer

    func done(moved: Int = 0) -> SCSIResponse { .good(residual: data.count - moved) }

    func check(_ sense: SCSISense, moved: Int = 0) -> SCSIResponse { .check(sense, residual: data.count - moved) }

    func badDMA(moved: Int) -> SCSIResponse { .host(.badDMA, residual: data.count - moved) }

    /// Refuses a data phase of `bytes` the request cannot carry: the opposite direction,
    /// or a buffer too small (an overrun: nothing moves). Nil when it fits.
    func phase(bytes: UInt64, toInitiator: Bool) -> SCSIResponse? {
        guard bytes > 0 else { return nil }
        switch (direction, toInitiator) {
        case (.fromInitiator, true), (.toInitiator, false): return .host(.dataDirection, residual: data.count)
        default: break
        }
        guard bytes <= UInt64(data.count) else { return .host(.dataOverrun, residual: data.count) }
        return nil
    }

    /// DATA IN of a parameter response: the first `allocation` bytes of `bytes`. A
    /// buffer smaller than that gets what fits and reports the overrun.
    func dataIn(_ bytes: [UInt8], allocation: Int) -> SCSIResponse {
        let n = min(bytes.count, allocation)
        guard n > 0 else { return done() }
        if direction == .fromInitiator { return .host(.dataDirection, residual: data.count) }
        let fits = min(n, data.count)
        do { try bytes.withUnsafeBytes { try data.store(UnsafeRawBufferPointer(rebasing: $0[0..<fits]), at: 0) } } catch {
            return badDMA(moved: 0)
        }
        guard fits == n else { return .host(.dataOverrun, residual: 0) }
        return done(moved: n)
    }
}
