import PluginABI

/// Mailboxes and CCBs.
///
/// 32-bit (extended) mode: outgoing entry {u32 CCB; 3 reserved; u8 action}, incoming
/// entry {u32 CCB; u8 adapter status; u8 target status; reserved; u8 completion}; the
/// incoming mailboxes follow the outgoing ones. CCB: 0 opcode, 1 direction (bits 3-4),
/// 2 CDB length, 3 sense length, 4 data length, 8 data pointer, 14 adapter status,
/// 15 target status, 16 target, 17 LUN, 18 CDB (12 bytes), 36 sense pointer;
/// scatter/gather entries {u32 length; u32 address}.
/// 24-bit mode: entries {u8 action/completion; u24 CCB, big-endian}; CCB 1 = target << 5
/// | out << 4 | in << 3 | LUN, 4 u24 data length, 7 u24 data pointer, 14/15 statuses,
/// 18 CDB, the sense data right after the CDB; S/G entries {u24 length; u24 address}.
extension BusLogicDevice {
    // MARK: outgoing mailboxes

    /// Takes the guest's started outgoing mailboxes, in round-robin order: in strict
    /// round-robin mode only the next one, else the next non-free one of all of them.
    /// At most one pass over the mailboxes per call; stops while the adapter is full.
    func scanOutgoing() {
        let area = mailboxes
        let count = area.count
        guard count > 0 else { return }
        guard busMaster else {
            guestError("mailbox command with bus mastering disabled (PCI command bit 2)")
            return
        }
        var examined: UInt32 = 0
        var taken = 0
        while examined < count {
            if freeSlots.isEmpty || pendingIncoming.count - pendingHead >= Self.maxPendingIncoming {
                scanDeferred = true
                break
            }
            let entry = area.outgoingBase + UInt64(outgoingIndex) * UInt64(area.entrySize)
            guard let e = readBytes(entry, Int(area.entrySize)) else {
                guestError("outgoing mailbox at 0x\(String(entry, radix: 16)) is not RAM")
                break
            }
            let action: UInt8
            let ccb: UInt32
            if case .legacy24 = area {
                action = e[0]
                ccb = UInt32(e[1]) << 16 | UInt32(e[2]) << 8 | UInt32(e[3])
            } else {
                action = e[7]
                ccb = UInt32(e[0]) | UInt32(e[1]) << 8 | UInt32(e[2]) << 16 | UInt32(e[3]) << 24
            }
            examined += 1
            if action == MailboxAction.free {
                if strictRoundRobin { break }
                outgoingIndex = (outgoingIndex + 1) % count
                continue
            }
            // The adapter owns the entry now: hand it back free before acting on it.
            var free: UInt8 = MailboxAction.free
            _ = dmaWrite(entry + (area.entrySize == 8 ? 7 : 0), &free, 1)
            outgoingIndex = (outgoingIndex + 1) % count
            taken += 1
            switch action {
            case MailboxAction.start: startCCB(ccb)
            case MailboxAction.abort: abortCCB(ccb)
            default:
                guestError("outgoing mailbox action 0x\(String(action, radix: 16))")
                post(IncomingEntry(ccb: ccb, adapterStatus: AdapterStatus.invalidOutgoingMailboxAction,
                                   targetStatus: 0, completion: Completion.error))
            }
        }
        if taken > 0 && outgoingAvailableInterrupt { interrupts |= Interrupt.mailboxOutAvailable }
    }

    func resumeScanIfDeferred() {
        guard scanDeferred, !freeSlots.isEmpty,
              pendingIncoming.count - pendingHead < Self.maxPendingIncoming else { return }
        scanDeferred = false
        scanOutgoing()
    }

    /// Abort: the CCB, if still in flight, completes as aborted at host request; an
    /// unknown CCB gets "aborted command not found".
    func abortCCB(_ ccb: UInt32) {
        if let i = slots.firstIndex(where: { $0?.ccb == ccb }) {
            slots[i]!.abortReason = .mailbox
        } else {
            post(IncomingEntry(ccb: ccb, adapterStatus: 0, targetStatus: 0, completion: Completion.abortedNotFound))
        }
    }

    // MARK: CCBs

    /// A CCB as read from guest memory, already validated.
    struct ParsedCCB {
        var opcode: UInt8
        var direction: UInt8
        var cdb: [UInt8]
        var target: UInt32
        var lun: UInt32
        var dataLength: UInt32
        var dataPointer: UInt32
        var senseLength: Int
        var senseAddress: UInt64
    }

    /// Reads and checks the CCB at `ccb`; an adapter status when it is unusable.
    func parseCCB(_ ccb: UInt32) -> Result<ParsedCCB, CCBError> {
        let legacy: Bool
        if case .legacy24 = mailboxes { legacy = true } else { legacy = false }
        guard let b = readBytes(UInt64(ccb), legacy ? 30 : 40) else { return .failure(.unreadable) }
        let opcode = b[0]
        switch opcode {
        case CCBOpcode.initiator, CCBOpcode.initiatorScatterGather, CCBOpcode.initiatorResidual,
             CCBOpcode.initiatorScatterGatherResidual, CCBOpcode.busDeviceReset:
            break
        default:
            return .failure(.status(AdapterStatus.invalidCCBOpcode))
        }
        let cdbLength = Int(b[2])
        let direction, rawSense: UInt8
        let target, lun, dataLength, dataPointer: UInt32
        var senseAddress: UInt64
        if legacy {
            direction = b[1] >> 3 & 3
            target = UInt32(b[1] >> 5)
            lun = UInt32(b[1] & 7)
            dataLength = UInt32(b[4]) << 16 | UInt32(b[5]) << 8 | UInt32(b[6])
            dataPointer = UInt32(b[7]) << 16 | UInt32(b[8]) << 8 | UInt32(b[9])
            senseAddress = UInt64(ccb) + 18 + UInt64(cdbLength)
        } else {
            direction = b[1] >> 3 & 3
            target = UInt32(b[16])
            lun = UInt32(b[17] & (extendedLUN ? 0x1F : 0x07))
            dataLength = le32(b, 4)
            dataPointer = le32(b, 8)
            senseAddress = UInt64(le32(b, 36))
        }
        rawSense = b[3]
        // Sense allocation: 0 means the standard 14 bytes, 1 means no automatic sense.
        let senseLength = rawSense == 0 ? 14 : rawSense == 1 ? 0 : Int(rawSense)
        if senseLength == 0 { senseAddress = 0 }
        if opcode == CCBOpcode.busDeviceReset {
            guard target < HV_SCSI_MAX_TARGETS else { return .failure(.status(AdapterStatus.invalidCCBParameter)) }
            return .success(ParsedCCB(opcode: opcode, direction: DataDirection.none, cdb: [], target: target, lun: lun,
                                      dataLength: 0, dataPointer: 0, senseLength: 0, senseAddress: 0))
        }
        guard (1...12).contains(cdbLength), target < HV_SCSI_MAX_TARGETS else {
            return .failure(.status(AdapterStatus.invalidCCBParameter))
        }
        return .success(ParsedCCB(opcode: opcode, direction: direction, cdb: Array(b[18..<18 + cdbLength]),
                                  target: target, lun: lun, dataLength: dataLength, dataPointer: dataPointer,
                                  senseLength: senseLength, senseAddress: senseAddress))
    }

    enum CCBError: Error {
        case unreadable
        case status(UInt8)
    }

    @inline(__always) func le32(_ b: [UInt8], _ o: Int) -> UInt32 {
        UInt32(b[o]) | UInt32(b[o + 1]) << 8 | UInt32(b[o + 2]) << 16 | UInt32(b[o + 3]) << 24
    }

    /// Fills `segments` from the CCB's data pointer or scatter/gather list: zero-length
    /// entries dropped, contiguous ones merged. nil when the list is malformed, outside
    /// RAM or longer than the adapter's limit.
    func gatherSegments(_ c: ParsedCCB) -> Int? {
        guard c.direction != DataDirection.none, c.dataLength > 0 else { return 0 }
        let sg = c.opcode == CCBOpcode.initiatorScatterGather || c.opcode == CCBOpcode.initiatorScatterGatherResidual
        guard sg else {
            segments[0] = hv_disk_segment(gpa: UInt64(c.dataPointer), len: c.dataLength, reserved: 0)
            return 1
        }
        let legacy: Bool
        if case .legacy24 = mailboxes { legacy = true } else { legacy = false }
        let entrySize = legacy ? 6 : 8
        let length = Int(c.dataLength)
        guard length % entrySize == 0, length / entrySize <= Self.scatterGatherLimit,
              let list = readBytes(UInt64(c.dataPointer), length) else { return nil }
        var n = 0
        for i in 0..<length / entrySize {
            let o = i * entrySize
            let len, addr: UInt32
            if legacy {
                len = UInt32(list[o]) << 16 | UInt32(list[o + 1]) << 8 | UInt32(list[o + 2])
                addr = UInt32(list[o + 3]) << 16 | UInt32(list[o + 4]) << 8 | UInt32(list[o + 5])
            } else {
                len = le32(list, o)
                addr = le32(list, o + 4)
            }
            if len == 0 { continue }
            if n > 0, segments[n - 1].gpa + UInt64(segments[n - 1].len) == UInt64(addr),
               UInt64(segments[n - 1].len) + UInt64(len) <= UInt64(UInt32.max) {
                segments[n - 1].len += len
                continue
            }
            segments[n] = hv_disk_segment(gpa: UInt64(addr), len: len, reserved: 0)
            n += 1
        }
        return n
    }

    /// Starts the CCB at `ccb`: a SCSI command for hv.scsi, or a Bus Device Reset.
    func startCCB(_ ccb: UInt32) {
        let c: ParsedCCB
        switch parseCCB(ccb) {
        case .failure(.unreadable):
            guestError("CCB at 0x\(String(ccb, radix: 16)) is not RAM")
            post(IncomingEntry(ccb: ccb, adapterStatus: AdapterStatus.invalidCCBParameter, targetStatus: 0,
                               completion: Completion.error))
            return
        case .failure(.status(let status)):
            guestError("CCB at 0x\(String(ccb, radix: 16)) rejected with adapter status 0x\(String(status, radix: 16))")
            finishCCB(ccb, adapterStatus: status, targetStatus: 0, completion: Completion.error)
            return
        case .success(let parsed):
            c = parsed
        }
        if c.opcode == CCBOpcode.busDeviceReset {
            for i in slots.indices where slots[i]?.target == c.target { slots[i]!.abortReason = .busDeviceReset }
            deferredResets.append(DeferredReset(target: Int32(c.target), resetTargets: true, ccb: ccb, generation: generation))
            return
        }
        if c.target == Self.adapterID {
            finishCCB(ccb, adapterStatus: AdapterStatus.selectionTimeout, targetStatus: 0, completion: Completion.error)
            return
        }
        guard let count = gatherSegments(c) else {
            guestError("CCB at 0x\(String(ccb, radix: 16)): bad scatter/gather list")
            finishCCB(ccb, adapterStatus: AdapterStatus.invalidCCBParameter, targetStatus: 0, completion: Completion.error)
            return
        }
        var direction = HV_SCSI_DATA_NONE
        if count > 0 {
            switch c.direction {
            case DataDirection.inChecked: direction = HV_SCSI_DATA_IN
            case DataDirection.outChecked: direction = HV_SCSI_DATA_OUT
            default: direction = HV_SCSI_DATA_BY_CDB   // unchecked: the CDB decides
            }
        }
        let slot = freeSlots.removeLast()
        slots[slot] = ActiveRequest(ccb: ccb, target: c.target,
                                    residualCCB: c.opcode == CCBOpcode.initiatorResidual
                                        || c.opcode == CCBOpcode.initiatorScatterGatherResidual,
                                    senseAddress: c.senseAddress, senseLength: c.senseLength, abortReason: .none)
        var req = hv_scsi_request()
        req.struct_size = UInt32(MemoryLayout<hv_scsi_request>.size)
        req.target = c.target
        req.lun = c.lun
        req.direction = direction
        withUnsafeMutableBytes(of: &req.cdb) { dst in
            for (i, v) in c.cdb.enumerated() { dst[i] = v }
        }
        // hv.scsi takes 6..16 bytes; a shorter CDB is zero-padded (its group code says
        // how long it really is).
        req.cdb_len = UInt32(max(c.cdb.count, 6))
        req.segment_count = UInt32(count)
        req.segments = UnsafePointer(segments)
        req.tag = UInt64(generation) << 32 | UInt64(slot)
        req.complete = completion
        let rc = submit(&req)
        if rc != HV_OK {
            slots[slot] = nil
            freeSlots.append(slot)
            finishCCB(ccb, adapterStatus: AdapterStatus.invalidCCBParameter, targetStatus: 0, completion: Completion.error)
        }
    }

    // MARK: completions

    /// hv.scsi completion: on a host I/O thread, without any lock.
    func completed(tag: UInt64, result: UnsafePointer<hv_scsi_result>?) {
        guard lockLive() else { return }
        let slot = Int(tag & 0xFFFF_FFFF)
        guard UInt32(tag >> 32) == generation, slot < slots.count, let r = slots[slot] else {
            finish()
            return
        }
        slots[slot] = nil
        freeSlots.append(slot)
        var adapter = AdapterStatus.normal
        var target = TargetStatus.good
        var completion = Completion.good
        var residual: UInt64 = 0
        if let res = result?.pointee {
            residual = res.residual
            switch UInt32(res.host_status) {
            case HV_SCSI_HOST_OK:
                target = res.status
                if target != TargetStatus.good { completion = Completion.error }
                if target == TargetStatus.checkCondition && r.senseLength > 0 && res.sense_len > 0 {
                    let n = min(r.senseLength, Int(res.sense_len), Int(HV_SCSI_SENSE_MAX))
                    var sense = res.sense
                    let ok = withUnsafeBytes(of: &sense) { dmaWrite(r.senseAddress, $0.baseAddress!, n) }
                    if !ok { adapter = AdapterStatus.autoSenseFailed }
                }
            case HV_SCSI_HOST_NO_TARGET:
                adapter = AdapterStatus.selectionTimeout
                completion = Completion.error
            case HV_SCSI_HOST_DATA_DIR, HV_SCSI_HOST_DATA_OVERRUN:
                adapter = AdapterStatus.dataOverUnderrun
                completion = Completion.error
            case HV_SCSI_HOST_ABORTED:
                completion = Completion.error
                switch r.abortReason {
                case .busDeviceReset: adapter = AdapterStatus.busDeviceReset
                default: adapter = AdapterStatus.hostAdapterReset
                }
            default:
                adapter = AdapterStatus.hardwareFailure
                completion = Completion.error
            }
        } else {
            adapter = AdapterStatus.hardwareFailure
            completion = Completion.error
        }
        if r.abortReason == .mailbox {
            adapter = AdapterStatus.normal
            target = TargetStatus.good
            completion = Completion.abortedByHost
        }
        if r.residualCCB && completion != Completion.abortedByHost {
            writeResidual(r.ccb, UInt32(truncatingIfNeeded: min(residual, UInt64(UInt32.max))))
        }
        finishCCB(r.ccb, adapterStatus: adapter, targetStatus: target, completion: completion)
        resumeScanIfDeferred()
        finish()
    }

    /// A Bus Device Reset CCB ends once abort_all returned for its target.
    func completeBusDeviceReset(_ ccb: UInt32) {
        finishCCB(ccb, adapterStatus: AdapterStatus.normal, targetStatus: TargetStatus.good, completion: Completion.good)
    }

    func writeResidual(_ ccb: UInt32, _ residual: UInt32) {
        if case .legacy24 = mailboxes {
            writeBytes(UInt64(ccb) + 4, [UInt8(residual >> 16 & 0xFF), UInt8(residual >> 8 & 0xFF), UInt8(residual & 0xFF)])
        } else {
            writeBytes(UInt64(ccb) + 4, [UInt8(residual & 0xFF), UInt8(residual >> 8 & 0xFF),
                                         UInt8(residual >> 16 & 0xFF), UInt8(residual >> 24)])
        }
    }

    /// Writes the statuses into the CCB and queues its incoming-mailbox entry.
    func finishCCB(_ ccb: UInt32, adapterStatus: UInt8, targetStatus: UInt8, completion: UInt8) {
        writeBytes(UInt64(ccb) + 14, [adapterStatus, targetStatus])
        post(IncomingEntry(ccb: ccb, adapterStatus: adapterStatus, targetStatus: targetStatus, completion: completion))
    }

    // MARK: incoming mailboxes

    func post(_ entry: IncomingEntry) {
        pendingIncoming.append(entry)
        drainIncoming()
    }

    /// Writes waiting entries into free incoming mailboxes, in order; the completion
    /// code goes last so a driver polling the entry sees it whole.
    func drainIncoming() {
        let area = mailboxes
        let count = area.count
        while pendingHead < pendingIncoming.count {
            guard count > 0 else { pendingIncoming = []; pendingHead = 0; return }
            let entry = area.incomingBase + UInt64(incomingIndex) * UInt64(area.entrySize)
            let codeOffset: UInt64 = area.entrySize == 8 ? 7 : 0
            var code: UInt8 = 0
            guard dmaRead(entry + codeOffset, &code, 1) else {
                guestError("incoming mailbox at 0x\(String(entry, radix: 16)) is not RAM")
                return
            }
            guard code == Completion.free else { break }
            let e = pendingIncoming[pendingHead]
            pendingHead += 1
            if area.entrySize == 8 {
                writeBytes(entry, [UInt8(e.ccb & 0xFF), UInt8(e.ccb >> 8 & 0xFF), UInt8(e.ccb >> 16 & 0xFF),
                                   UInt8(e.ccb >> 24), e.adapterStatus, e.targetStatus, 0])
                writeBytes(entry + 7, [e.completion])
            } else {
                writeBytes(entry + 1, [UInt8(e.ccb >> 16 & 0xFF), UInt8(e.ccb >> 8 & 0xFF), UInt8(e.ccb & 0xFF)])
                writeBytes(entry, [e.completion])
            }
            incomingIndex = (incomingIndex + 1) % count
            interrupts |= Interrupt.mailboxInLoaded
        }
        if pendingHead == pendingIncoming.count {
            pendingIncoming.removeAll(keepingCapacity: true)
            pendingHead = 0
        } else if pendingHead >= Self.maxPendingIncoming {
            // Never fully drained for a long time: drop the written entries now and then.
            pendingIncoming.removeFirst(pendingHead)
            pendingHead = 0
        }
    }
}
