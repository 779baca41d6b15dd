import HVSupport

/// A CD-ROM drive (peripheral type 5, removable) with an image inserted, answering the
/// MMC commands firmware and guest drivers use: READ(10/12) of 2048-byte blocks, READ
/// CAPACITY, READ TOC (formatted TOC and session info, LBA or MSF), GET CONFIGURATION,
/// polled GET EVENT STATUS NOTIFICATION, the capabilities mode page, and the tray (START
/// STOP UNIT with LoEj, PREVENT ALLOW MEDIUM REMOVAL). A guest that ejects the medium
/// gets NOT READY / MEDIUM NOT PRESENT until it closes the tray again. Writes do not
/// exist on this device type (INVALID COMMAND OPERATION CODE).
package final class SCSICDROMTarget: SCSILogicalUnit, @unchecked Sendable {
    package let medium: VirtualDisk
    private let identity: SCSIUnitIdentity
    let unitSense = SCSIUnitSense()

    private let state = HostLock()
    // [state]
    private var trayOpen = false
    private var removalPrevented = false
    /// The media event GET EVENT STATUS NOTIFICATION reports next (MMC media event codes).
    private var mediaEvent = MediaEvent.none

    enum MediaEvent: UInt8 { case none = 0, newMedia = 2, mediaRemoval = 3 }

    /// Profiles (MMC-6 table 91).
    static let profileCDROM: UInt16 = 0x0008
    static let profileDVDROM: UInt16 = 0x0010
    /// The most 2048-byte blocks a CD holds (80 minutes); larger images are DVDs.
    static let cdCapacityBlocks: UInt64 = 80 * 60 * 75
    static let capabilitiesPage: UInt8 = 0x2A
    /// Bytes moved between the image and the initiator's buffer per step.
    static let chunkBytes = 1 << 20

    /// `medium` must have 2048-byte sectors; `seed` names the unit (serial number).
    package init(medium: VirtualDisk, seed: String) {
        precondition(medium.sectorSize == CDROMImage.blockSize)
        self.medium = medium
        identity = SCSIUnitIdentity(seed: seed)
    }

    /// After a bus or target reset: UNIT ATTENTION next and the medium unlocked; the
    /// tray stays as it was.
    package func reset() {
        unitSense.raise(.powerOnReset)
        state.withLock { removalPrevented = false }
    }

    package func execute(lun: UInt32, cdb: [UInt8], direction: SCSIDataDirection, data: SCSIDataBuffer) -> SCSIResponse {
        SCSIUnitSense.execute(self, lun: lun, cdb: cdb, direction: direction, data: data)
    }

    private var hasMedium: Bool { state.withLock { !trayOpen } }

    func idleSense() -> SCSISense { hasMedium ? .noSense : .mediumNotPresent }

    /// The profile of the inserted medium; 0 without one.
    private var currentProfile: UInt16 {
        guard hasMedium else { return 0 }
        return medium.sectorCount > Self.cdCapacityBlocks ? Self.profileDVDROM : Self.profileCDROM
    }

    func command(_ opcode: UInt8, _ cdb: [UInt8], _ io: Exchange) -> SCSIResponse {
        switch opcode {
        case SCSIOpcode.testUnitReady: return hasMedium ? io.done() : io.check(.mediumNotPresent)
        case SCSIOpcode.readCapacity10: return readCapacity(cdb, io)
        case SCSIOpcode.read10, SCSIOpcode.read12: return read(cdb, io)
        case SCSIOpcode.readTOC: return readTOC(cdb, io)
        case SCSIOpcode.getConfiguration: return getConfiguration(cdb, io)
        case SCSIOpcode.getEventStatusNotification: return eventStatus(cdb, io)
        case SCSIOpcode.modeSense6, SCSIOpcode.modeSense10: return modeSense(cdb, io)
        case SCSIOpcode.startStopUnit: return startStopUnit(cdb, io)
        case SCSIOpcode.preventAllowMediumRemoval:
            state.withLock { removalPrevented = cdb[4] & 0x03 != 0 }
            return io.done()
        default: return io.check(.invalidOpcode)
        }
    }

    // MARK: Identification

    func standardInquiry() -> [UInt8] {
        var d = [UInt8](repeating: 0x20, count: 36)
        d[0] = 0x05                 // CD/DVD device
        d[1] = 0x80                 // removable medium
        d[2] = 0x05                 // SPC-3
        d[3] = 0x02                 // response data format 2
        d[4] = UInt8(d.count - 5)
        d[5] = 0; d[6] = 0; d[7] = 0
        d.replaceSubrange(8..<16, with: Array("VMware  ".utf8))
        d.replaceSubrange(16..<32, with: Array("Virtual CD-ROM  ".utf8))
        d.replaceSubrange(32..<36, with: Array("1.0 ".utf8))
        return d
    }

    private static let vpdPages: [UInt8] = [0x00, 0x80, 0x83]

    func vpdPage(_ page: UInt8) -> [UInt8]? {
        switch page {
        case 0x00: return Self.vpdPages
        case 0x80: return Array(identity.serial.utf8)
        case 0x83: return identity.deviceIdentification
        default: return nil
        }
    }

    // MARK: Medium

    private func readCapacity(_ cdb: [UInt8], _ io: Exchange) -> SCSIResponse {
        guard hasMedium else { return io.check(.mediumNotPresent) }
        guard cdb[8] & 0x01 != 0 || cdb.bigEndian(at: 2, count: 4) == 0 else { return io.check(.invalidFieldInCDB) }
        var d = [UInt8](repeating: 0, count: 8)
        d.storeBigEndian(UInt32(min(medium.sectorCount - 1, 0xFFFF_FFFF)), at: 0)
        d.storeBigEndian(UInt32(CDROMImage.blockSize), at: 4)
        return io.dataIn(d, allocation: d.count)
    }

    private func read(_ cdb: [UInt8], _ io: Exchange) -> SCSIResponse {
        let twelve = cdb[0] == SCSIOpcode.read12
        let lba = cdb.bigEndian(at: 2, count: 4)
        let blocks = twelve ? cdb.bigEndian(at: 6, count: 4) : cdb.bigEndian(at: 7, count: 2)
        guard hasMedium else { return io.check(.mediumNotPresent) }
        guard lba <= medium.sectorCount, blocks <= medium.sectorCount - lba else { return io.check(.lbaOutOfRange) }
        let total = blocks * UInt64(CDROMImage.blockSize)
        if let refusal = io.phase(bytes: total, toInitiator: true) { return refusal }
        var bounce = [UInt8](repeating: 0, count: min(Int(total), Self.chunkBytes))
        var done = 0
        while done < Int(total) {
            let n = min(bounce.count, Int(total) - done)
            let block = lba + UInt64(done / CDROMImage.blockSize)
            let failure: SCSIResponse? = bounce.withUnsafeMutableBytes { raw in
                let piece = UnsafeMutableRawBufferPointer(rebasing: raw[0..<n])
                do { try medium.read(sector: block, into: piece) } catch {
                    var s = SCSISense.unrecoveredReadError
                    s.information = UInt32(truncatingIfNeeded: block)
                    return io.check(s, moved: done)
                }
                do { try io.data.store(UnsafeRawBufferPointer(piece), at: done) } catch { return io.badDMA(moved: done) }
                return nil
            }
            if let failure { return failure }
            done += n
        }
        return io.done(moved: done)
    }

    /// An address in a TOC: the LBA, or with MSF the minute/second/frame of LBA + 150
    /// (the 2-second pregap of track 1).
    private static func address(_ lba: UInt64, msf: Bool) -> [UInt8] {
        guard msf else {
            var a = [UInt8](repeating: 0, count: 4)
            a.storeBigEndian(UInt32(truncatingIfNeeded: lba), at: 0)
            return a
        }
        let frames = min(lba + 150, 99 * 60 * 75 + 59 * 75 + 74)
        return [0, UInt8(frames / (60 * 75)), UInt8(frames / 75 % 60), UInt8(frames % 75)]
    }

    /// READ TOC/PMA/ATIP: one data track (1) from LBA 0 and the lead-out (AAh) at the
    /// capacity; format 0 (formatted TOC) and 1 (multi-session: one session).
    private func readTOC(_ cdb: [UInt8], _ io: Exchange) -> SCSIResponse {
        let msf = cdb[1] & 0x02 != 0
        // Format in byte 2; initiators written for SFF-8020i put it in byte 9's top bits.
        let format = cdb[2] & 0x0F != 0 ? cdb[2] & 0x0F : cdb[9] >> 6
        let track = cdb[6]
        let allocation = Int(cdb.bigEndian(at: 7, count: 2))
        guard hasMedium else { return io.check(.mediumNotPresent) }
        let dataTrack: UInt8 = 0x14          // ADR 1 (Q sub-channel: position), control 4 (data track)
        var body: [UInt8]
        switch format {
        case 0:
            guard track <= 1 || track == 0xAA else { return io.check(.invalidFieldInCDB) }
            body = []
            if track <= 1 { body += [0, dataTrack, 1, 0] + Self.address(0, msf: msf) }
            body += [0, dataTrack, 0xAA, 0] + Self.address(medium.sectorCount, msf: msf)
        case 1:
            body = [0, dataTrack, 1, 0] + Self.address(0, msf: msf)
        default:
            return io.check(.invalidFieldInCDB)
        }
        var header: [UInt8] = [0, 0, 1, 1]      // first and last track (session)
        header.storeBigEndian(UInt16(body.count + 2), at: 0)
        return io.dataIn(header + body, allocation: allocation)
    }

    /// GET CONFIGURATION: the profile list (DVD-ROM, CD-ROM), Core (SCSI interface),
    /// Removable Medium (tray, ejectable, lockable), Random Readable (2048-byte blocks)
    /// and CD Read; RT 0 all from the starting feature, 1 the current ones, 2 just it.
    private func getConfiguration(_ cdb: [UInt8], _ io: Exchange) -> SCSIResponse {
        let rt = cdb[1] & 0x03
        let start = UInt16(cdb.bigEndian(at: 2, count: 2))
        let allocation = Int(cdb.bigEndian(at: 7, count: 2))
        guard rt != 3 else { return io.check(.invalidFieldInCDB) }
        let profile = currentProfile
        let loaded = profile != 0
        func feature(_ code: UInt16, version: UInt8 = 0, persistent: Bool, current: Bool, _ data: [UInt8]) -> (UInt16, Bool, [UInt8]) {
            var f: [UInt8] = [0, 0, version << 2 | (persistent ? 0x02 : 0) | (current ? 0x01 : 0), UInt8(data.count)]
            f.storeBigEndian(code, at: 0)
            return (code, current, f + data)
        }
        var profiles: [UInt8] = []
        for p in [Self.profileDVDROM, Self.profileCDROM] {
            var d: [UInt8] = [0, 0, p == profile ? 0x01 : 0, 0]
            d.storeBigEndian(p, at: 0)
            profiles += d
        }
        var randomReadable = [UInt8](repeating: 0, count: 8)
        randomReadable.storeBigEndian(UInt32(CDROMImage.blockSize), at: 0)
        randomReadable.storeBigEndian(UInt16(1), at: 4)
        let features = [
            feature(0x0000, persistent: true, current: true, profiles),
            feature(0x0001, version: 2, persistent: true, current: true, [0, 0, 0, 1, 0x01, 0, 0, 0]),   // SCSI, DBE
            feature(0x0003, persistent: true, current: true, [0x29, 0, 0, 0]),     // tray, eject, lock
            feature(0x0010, persistent: false, current: loaded, randomReadable),
            feature(0x001E, version: 1, persistent: false, current: loaded, [0, 0, 0, 0]),
        ]
        let chosen = features.filter { code, current, _ in
            switch rt {
            case 0: return code >= start
            case 1: return code >= start && current
            default: return code == start
            }
        }
        var header = [UInt8](repeating: 0, count: 8)
        let body = chosen.flatMap { $0.2 }
        header.storeBigEndian(UInt32(header.count + body.count - 4), at: 0)
        header.storeBigEndian(profile, at: 6)
        return io.dataIn(header + body, allocation: allocation)
    }

    /// GET EVENT STATUS NOTIFICATION, polled only: the media class (a pending new-media
    /// or removal event, then whether a medium is present and the tray open); asked for
    /// other classes only, "no event available".
    private func eventStatus(_ cdb: [UInt8], _ io: Exchange) -> SCSIResponse {
        guard cdb[1] & 0x01 != 0 else { return io.check(.invalidFieldInCDB) }   // asynchronous mode
        let allocation = Int(cdb.bigEndian(at: 7, count: 2))
        let mediaClass: UInt8 = 0x10
        guard cdb[4] & mediaClass != 0 else { return io.dataIn([0, 2, 0x80, mediaClass], allocation: allocation) }
        let (event, open) = state.withLock { () -> (MediaEvent, Bool) in
            defer { mediaEvent = .none }
            return (mediaEvent, trayOpen)
        }
        return io.dataIn([0, 6, 0x04, mediaClass, event.rawValue, open ? 0x01 : 0x02, 0, 0], allocation: allocation)
    }

    /// MODE SENSE: the CD/DVD capabilities and mechanical status page (2Ah), alone or as
    /// all pages; no block descriptors (MMC drives report none). Saved values are not
    /// supported; nothing is changeable.
    private func modeSense(_ cdb: [UInt8], _ io: Exchange) -> SCSIResponse {
        let ten = cdb[0] == SCSIOpcode.modeSense10
        let page = cdb[2] & 0x3F
        let allocation = ten ? Int(cdb.bigEndian(at: 7, count: 2)) : Int(cdb[4])
        guard cdb[2] >> 6 != 3 else { return io.check(.savingParametersNotSupported) }
        guard cdb[3] == 0, page == Self.capabilitiesPage || page == 0x3F else { return io.check(.invalidFieldInCDB) }
        var p = [UInt8](repeating: 0, count: 22)
        p[0] = Self.capabilitiesPage
        p[1] = UInt8(p.count - 2)
        if cdb[2] >> 6 != 1 {
            p[2] = 0x08                                             // reads DVD-ROM
            p[6] = 0x20 | 0x08 | 0x01 | (state.withLock { removalPrevented } ? 0x02 : 0)   // tray, eject, lock (state)
            p.storeBigEndian(UInt16(8467), at: 8)                   // maximum read speed, kB/s (48x CD)
            p.storeBigEndian(UInt16(8467), at: 14)                  // current read speed
        }
        let header: [UInt8] = ten ? [0, UInt8(6 + p.count), 0, 0, 0, 0, 0, 0] : [UInt8(3 + p.count), 0, 0, 0]
        return io.dataIn(header + p, allocation: allocation)
    }

    /// START STOP UNIT: with LoEj, stop ejects the medium (refused while removal is
    /// prevented) and start loads it back (UNIT ATTENTION 28h: it may have changed);
    /// without LoEj the spindle has nothing to do.
    private func startStopUnit(_ cdb: [UInt8], _ io: Exchange) -> SCSIResponse {
        let loej = cdb[4] & 0x02 != 0
        let start = cdb[4] & 0x01 != 0
        guard cdb[4] >> 4 == 0, loej else { return io.done() }
        let outcome = state.withLock { () -> SCSISense? in
            if start {
                guard trayOpen else { return nil }
                trayOpen = false
                mediaEvent = .newMedia
                return .mediumMayHaveChanged
            }
            if removalPrevented { return .mediumRemovalPrevented }
            if !trayOpen {
                trayOpen = true
                mediaEvent = .mediaRemoval
            }
            return nil
        }
        switch outcome {
        case .some(let s) where s == .mediumRemovalPrevented: return io.check(s)
        case .some(let s):
            unitSense.raise(s, clearingDeferred: false)
            return io.done()
        case .none: return io.done()
        }
    }
}
