import HVSupport

/// A SCSI target on an adapter's bus: one logical unit (LUN 0) that executes commands
/// synchronously on the calling (I/O) thread. Commands may run concurrently.
package protocol SCSITarget: AnyObject, Sendable {
    /// Executes one command for `lun`. `cdb` holds at least the bytes the adapter gave
    /// (hv_scsi_request.cdb_len of them).
    func execute(lun: UInt32, cdb: [UInt8], direction: SCSIDataDirection, data: SCSIDataBuffer) -> SCSIResponse
    /// Power-on state after a bus or target reset: UNIT ATTENTION (29h/00h) reported on
    /// the next command.
    func reset()
}

/// Operation codes the targets implement (SPC, SBC, MMC).
enum SCSIOpcode {
    static let testUnitReady: UInt8 = 0x00
    static let requestSense: UInt8 = 0x03
    static let read6: UInt8 = 0x08
    static let write6: UInt8 = 0x0A
    static let inquiry: UInt8 = 0x12
    static let modeSelect6: UInt8 = 0x15
    static let modeSense6: UInt8 = 0x1A
    static let startStopUnit: UInt8 = 0x1B
    static let preventAllowMediumRemoval: UInt8 = 0x1E
    static let readCapacity10: UInt8 = 0x25
    static let read10: UInt8 = 0x28
    static let write10: UInt8 = 0x2A
    static let verify10: UInt8 = 0x2F
    static let synchronizeCache10: UInt8 = 0x35
    static let unmap: UInt8 = 0x42
    static let readTOC: UInt8 = 0x43
    static let getConfiguration: UInt8 = 0x46
    static let getEventStatusNotification: UInt8 = 0x4A
    static let modeSelect10: UInt8 = 0x55
    static let modeSense10: UInt8 = 0x5A
    static let read16: UInt8 = 0x88
    static let write16: UInt8 = 0x8A
    static let verify16: UInt8 = 0x8F
    static let synchronizeCache16: UInt8 = 0x91
    static let writeSame16: UInt8 = 0x93
    static let serviceActionIn16: UInt8 = 0x9E
    static let reportLuns: UInt8 = 0xA0
    static let read12: UInt8 = 0xA8
    static let write12: UInt8 = 0xAA

    /// CDB length of an opcode's group (SPC-4 4.2.5.1); nil for groups 3, 6, 7
    /// (reserved / vendor specific), which no target here implements.
    static func cdbLength(opcode: UInt8) -> Int? {
        switch opcode >> 5 {
        case 0: return 6
        case 1, 2: return 10
        case 4: return 16
        case 5: return 12
        default: return nil
        }
    }
}

/// The names a unit gives itself, derived from a seed that names it stably across power
/// cycles (e.g. "vm.vmx/scsi0:1"): a serial number and an NAA 5 designator in VMware's
/// OUI (FNV-1a of the seed).
struct SCSIUnitIdentity {
    /// VPD 80h unit serial number (16 hex digits).
    let serial: String
    /// VPD 83h NAA 5 designator: VMware's OUI and 36 bits of the seed's hash.
    let naaIdentifier: UInt64

    init(seed: String) {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in seed.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
        let hex = String(h, radix: 16, uppercase: true)
        serial = String(repeating: "0", count: 16 - hex.count) + hex
        naaIdentifier = 0x5 << 60 | 0x00_5056 << 36 | (h & 0xF_FFFF_FFFF)
    }

    /// VPD 83h's designators: NAA (binary, LU association) and T10 vendor id (ASCII).
    var deviceIdentification: [UInt8] {
        var naa = [UInt8](repeating: 0, count: 12)
        naa[0] = 0x01; naa[1] = 0x03; naa[3] = 8
        naa.storeBigEndian(naaIdentifier, at: 4)
        let t10 = Array("VMware  ".utf8) + Array(serial.utf8)
        return naa + [0x02, 0x01, 0x00, UInt8(t10.count)] + t10
    }
}

/// What sets one kind of target apart; `SCSIUnitSense.execute` does the rest (CDB form,
/// absent LUNs, REPORT LUNS, REQUEST SENSE, unit attention, deferred sense).
protocol SCSILogicalUnit: SCSITarget {
    var unitSense: SCSIUnitSense { get }
    /// Standard INQUIRY data of LUN 0 (36 bytes; byte 0 is the peripheral type).
    func standardInquiry() -> [UInt8]
    /// The body of VPD page `page` (after its 4-byte header); nil for a page it lacks.
    func vpdPage(_ page: UInt8) -> [UInt8]?
    /// The sense REQUEST SENSE reports when nothing is pending (e.g. NOT READY while
    /// stopped or without a medium).
    func idleSense() -> SCSISense
    /// Every other command of LUN 0, after any unit attention was reported.
    func command(_ opcode: UInt8, _ cdb: [UInt8], _ io: Exchange) -> SCSIResponse
}

/// The sense a logical unit owes its initiator: a pending unit attention and, for an
/// initiator without auto-sense, the sense of the last command that ended in CHECK
/// CONDITION (the next REQUEST SENSE returns it, any other command forgets it).
final class SCSIUnitSense: @unchecked Sendable {
    private let lock = HostLock()
    // [lock]
    private var unitAttention: SCSISense?
    private var deferred: [UInt8]?

    /// Reports `condition` on the next command (a reset clears the deferred sense too).
    func raise(_ condition: SCSISense, clearingDeferred: Bool = true) {
        lock.withLock {
            unitAttention = condition
            if clearingDeferred { deferred = nil }
        }
    }

    private func takeUnitAttention() -> SCSISense? {
        lock.withLock { defer { unitAttention = nil }; return unitAttention }
    }

    /// The SPC command flow shared by every target kind.
    static func execute(_ unit: some SCSILogicalUnit, lun: UInt32, cdb: [UInt8], direction: SCSIDataDirection,
                        data: SCSIDataBuffer) -> SCSIResponse {
        let response = respond(unit, lun: lun, cdb: cdb, io: Exchange(direction: direction, data: data))
        if lun == 0 && cdb.first != SCSIOpcode.requestSense {
            let s = unit.unitSense
            s.lock.withLock { s.deferred = response.status == SCSIStatus.checkCondition ? response.sense : nil }
        }
        return response
    }

    private static func respond(_ unit: some SCSILogicalUnit, lun: UInt32, cdb: [UInt8], io: Exchange) -> SCSIResponse {
        guard let opcode = cdb.first, let length = SCSIOpcode.cdbLength(opcode: opcode) else {
            return io.check(.invalidOpcode)
        }
        // A CDB shorter than its group cannot be parsed; NACA and linked commands are
        // not supported (control byte bits 2 and 0).
        guard cdb.count >= length, cdb[length - 1] & 0x05 == 0 else { return io.check(.invalidFieldInCDB) }
        guard lun == 0 else { return absentLUN(unit, opcode: opcode, cdb: cdb, io: io) }

        // INQUIRY and REPORT LUNS are not affected by a unit attention; REQUEST SENSE
        // reports and clears it; every other command fails with it once.
        switch opcode {
        case SCSIOpcode.inquiry: return inquiry(unit, cdb, io)
        case SCSIOpcode.reportLuns: return reportLuns(cdb, io)
        case SCSIOpcode.requestSense: return requestSense(unit, cdb, io)
        default: break
        }
        if let ua = unit.unitSense.takeUnitAttention() { return io.check(ua) }
        return unit.command(opcode, cdb, io)
    }

    private static func inquiry(_ unit: some SCSILogicalUnit, _ cdb: [UInt8], _ io: Exchange) -> SCSIResponse {
        let allocation = Int(cdb.bigEndian(at: 3, count: 2))
        // Bit 1 is the obsolete CMDDT.
        guard cdb[1] & 0x02 == 0 else { return io.check(.invalidFieldInCDB) }
        let standard = unit.standardInquiry()
        guard cdb[1] & 0x01 != 0 else {
            guard cdb[2] == 0 else { return io.check(.invalidFieldInCDB) }
            return io.dataIn(standard, allocation: allocation)
        }
        guard let body = unit.vpdPage(cdb[2]) else { return io.check(.invalidFieldInCDB) }
        var d: [UInt8] = [standard[0], cdb[2], 0, 0]
        d.storeBigEndian(UInt16(body.count), at: 2)
        return io.dataIn(d + body, allocation: allocation)
    }

    /// A present target's absent LUN: INQUIRY answers "not connected" (qualifier 3),
    /// REQUEST SENSE and REPORT LUNS answer; the rest is LOGICAL UNIT NOT SUPPORTED.
    private static func absentLUN(_ unit: some SCSILogicalUnit, opcode: UInt8, cdb: [UInt8], io: Exchange) -> SCSIResponse {
        switch opcode {
        case SCSIOpcode.inquiry:
            guard cdb[1] & 0x03 == 0, cdb[2] == 0 else { return io.check(.invalidFieldInCDB) }
            var d = unit.standardInquiry()
            d[0] = 0x7F
            return io.dataIn(d, allocation: Int(cdb.bigEndian(at: 3, count: 2)))
        case SCSIOpcode.requestSense:
            return io.dataIn(SCSISense.logicalUnitNotSupported.bytes, allocation: Int(cdb[4]))
        case SCSIOpcode.reportLuns:
            return reportLuns(cdb, io)
        default:
            return io.check(.logicalUnitNotSupported)
        }
    }

    private static func requestSense(_ unit: some SCSILogicalUnit, _ cdb: [UInt8], _ io: Exchange) -> SCSIResponse {
        // DESC: descriptor-format sense is not supported.
        guard cdb[1] & 0x01 == 0 else { return io.check(.invalidFieldInCDB) }
        let s = unit.unitSense
        let pending = s.lock.withLock { () -> [UInt8]? in
            if let d = s.deferred {
                s.deferred = nil
                return d
            }
            defer { s.unitAttention = nil }
            return s.unitAttention?.bytes
        }
        return io.dataIn(pending ?? unit.idleSense().bytes, allocation: Int(cdb[4]))
    }

    private static func reportLuns(_ cdb: [UInt8], _ io: Exchange) -> SCSIResponse {
        let allocation = Int(cdb.bigEndian(at: 6, count: 4))
        guard cdb[2] <= 0x02, allocation >= 4 else { return io.check(.invalidFieldInCDB) }
        // SELECT REPORT 01h asks for well-known LUNs only, of which there are none.
        guard cdb[2] != 0x01 else { return io.dataIn([UInt8](repeating: 0, count: 8), allocation: allocation) }
        var d = [UInt8](repeating: 0, count: 16)
        d.storeBigEndian(UInt32(8), at: 0)      // one LUN: 0
        return io.dataIn(d, allocation: allocation)
    }
}
