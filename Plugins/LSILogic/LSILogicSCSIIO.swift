import PluginABI
import PluginKit

// SCSI IO requests: the frame and its scatter/gather list become one hv.scsi/1 command;
// its completion becomes a context reply (success) or an address reply (anything else).

/// The hv_scsi_complete_fn every request carries.
let scsiCompletion: hv_scsi_complete_fn = { dev, tag, result in
    guard let device = InstanceHandle.object(dev, as: LSILogicDevice.self), let result else { return }
    device.completed(tag: tag, result: result.pointee)
}

extension LSILogicDevice {
    /// The outcome of walking a request's SGL.
    enum SGLWalk {
        case segments([hv_disk_segment])
        case error(UInt16, String)
    }

    func scsiIO(_ frame: [UInt8], frameAddress: UInt64) {
        let target = frame[MPI.SCSIIO.targetID]
        let busNumber = frame[MPI.SCSIIO.bus]
        let cdbLength = Int(frame[MPI.SCSIIO.cdbLength])
        let control = frame.le32(MPI.SCSIIO.control)
        let dataLength = frame.le32(MPI.SCSIIO.dataLength)
        var request = InFlight(
            msgContext: frame.le32(MPI.Header.msgContext), target: target, bus: busNumber,
            lun: frame[MPI.SCSIIO.lun + 1], cdbLength: UInt8(cdbLength),
            senseLength: frame[MPI.SCSIIO.senseBufferLength], msgFlags: frame[MPI.Header.msgFlags],
            senseAddress: senseBufferHigh | UInt64(frame.le32(MPI.SCSIIO.senseBufferLowAddr)),
            dataLength: dataLength, generation: generation)

        func fail(_ status: UInt16, _ why: String? = nil) {
            if let why { guestError(why) }
            queueReply(.address(scsiReply(request, status: status, scsiStatus: 0,
                                          scsiState: MPI.SCSIState.noSCSIStatus, transferred: 0, senseCount: 0)))
        }

        guard busNumber == 0 else { return fail(MPI.IOCStatus.scsiInvalidBus) }
        guard Int(target) < Int(maxDevices), target != Self.initiatorID else {
            return fail(target == Self.initiatorID ? MPI.IOCStatus.scsiDeviceNotThere : MPI.IOCStatus.scsiInvalidTargetID)
        }
        guard (1...16).contains(cdbLength) else {
            return fail(MPI.IOCStatus.invalidField, "SCSI IO with a CDB length of \(cdbLength)")
        }
        var direction: UInt32
        switch (control >> MPI.SCSIIO.directionShift) & 3 {
        case 0: direction = HV_SCSI_DATA_NONE
        case 1: direction = HV_SCSI_DATA_OUT
        case 2: direction = HV_SCSI_DATA_IN
        default: return fail(MPI.IOCStatus.invalidField, "bidirectional SCSI IO")
        }
        var segments: [hv_disk_segment] = []
        if direction == HV_SCSI_DATA_NONE || dataLength == 0 {
            direction = HV_SCSI_DATA_NONE
            request.dataLength = 0
        } else {
            switch walkSGL(frame: frame, at: frameAddress, dataLength: dataLength) {
            case .segments(let s): segments = s
            case .error(let status, let why): return fail(status, why)
            }
        }
        guard let slot = freeSlots.popLast() else {
            return fail(MPI.IOCStatus.insufficientResources, "more than \(Self.globalCredits) requests outstanding")
        }
        slots[slot] = request

        var req = hv_scsi_request()
        req.struct_size = UInt32(MemoryLayout<hv_scsi_request>.size)
        req.target = UInt32(target)
        req.lun = UInt32(request.lun)
        req.direction = direction
        withUnsafeMutableBytes(of: &req.cdb) { cdb in
            for i in 0..<16 { cdb[i] = i < cdbLength ? frame[MPI.SCSIIO.cdb + i] : 0 }
        }
        req.cdb_len = UInt32(max(cdbLength, 6))
        req.segment_count = UInt32(segments.count)
        req.tag = UInt64(request.generation) << 32 | UInt64(slot)
        req.complete = scsiCompletion
        let rc = segments.withUnsafeBufferPointer { seg -> Int32 in
            req.segments = seg.baseAddress
            return scsiSubmit(bus, &req)
        }
        guard rc == HV_OK else {
            slots[slot] = nil
            freeSlots.append(slot)
            return fail(MPI.IOCStatus.invalidField, "the SCSI layer refused the request (error \(rc))")
        }
    }

    /// Walks simple and chain elements from byte 48 of the frame until `dataLength` bytes
    /// are described. Every buffer (the frame, each chain segment) bounds its elements;
    /// chains and elements are counted so a loop ends in INVALID_SGL. Positions are kept
    /// as offsets into the current buffer, whose end never wraps, so guest addresses
    /// cannot overflow the arithmetic.
    func walkSGL(frame: [UInt8], at frameAddress: UInt64, dataLength: UInt32) -> SGLWalk {
        var segments: [hv_disk_segment] = []
        var bufferBase = frameAddress
        var bufferLength = UInt64(Self.requestFrameBytes)
        var offset = UInt64(MPI.SCSIIO.sgl)
        var chainOffset = UInt64(frame[MPI.Header.chainOffset])
        var remaining = UInt64(dataLength)
        var elements = 0
        var chains = 0
        func short() -> SGLWalk {
            .error(MPI.IOCStatus.invalidSGL, "SGL describes \(UInt64(dataLength) - remaining) of \(dataLength) bytes")
        }
        guard frameAddress <= UInt64.max - bufferLength else {
            return .error(MPI.IOCStatus.invalidSGL, "request frame at the top of the address space")
        }
        while remaining > 0 {
            elements += 1
            guard elements <= Self.maxSGEs else { return .error(MPI.IOCStatus.invalidSGL, "SGL of more than \(Self.maxSGEs) elements") }
            let position = bufferBase + offset
            guard offset + 8 <= bufferLength, let flagsLength = dmaRead32(position) else {
                return .error(MPI.IOCStatus.invalidSGL, "SGL element at 0x\(String(position, radix: 16)) outside its buffer or RAM")
            }
            let wide = flagsLength & MPI.SGE.address64 != 0
            let size: UInt64 = wide ? 12 : 8
            guard offset + size <= bufferLength, let low = dmaRead32(position + 4),
                  let high = wide ? dmaRead32(position + 8) : 0 else {
                return .error(MPI.IOCStatus.invalidSGL, "SGL element at 0x\(String(position, radix: 16)) outside its buffer or RAM")
            }
            let address = UInt64(high) << 32 | UInt64(low)
            switch flagsLength & MPI.SGE.typeMask {
            case MPI.SGE.typeSimple:
                let take = min(UInt64(flagsLength & MPI.SGE.lengthMask), remaining)
                if take > 0 {
                    guard address <= UInt64.max - take else {
                        return .error(MPI.IOCStatus.invalidSGL, "data buffer wraps the address space")
                    }
                    if let last = segments.last, last.gpa + UInt64(last.len) == address,
                       UInt64(last.len) + take <= UInt64(UInt32.max) {
                        segments[segments.count - 1].len += UInt32(take)
                    } else {
                        guard segments.count < Int(HV_SCSI_MAX_SEGMENTS) else {
                            return .error(MPI.IOCStatus.invalidSGL, "SGL of more than \(HV_SCSI_MAX_SEGMENTS) discontiguous segments")
                        }
                        segments.append(hv_disk_segment(gpa: address, len: UInt32(take), reserved: 0))
                    }
                    remaining -= take
                }
                guard remaining > 0 else { return .segments(segments) }
                if flagsLength & MPI.SGE.endOfList != 0 { return short() }
                if flagsLength & MPI.SGE.lastElement != 0 {
                    // The last element of this buffer: a chain element follows at ChainOffset.
                    guard chainOffset != 0 else { return short() }
                    offset = chainOffset * 4
                } else {
                    offset += size
                }
            case MPI.SGE.typeChain:
                chains += 1
                guard chains <= Self.maxChainDepth else {
                    return .error(MPI.IOCStatus.invalidSGL, "SGL of more than \(Self.maxChainDepth) chain elements")
                }
                let length = UInt64(flagsLength & MPI.SGE.chainLengthMask)
                guard length >= 8 else { return .error(MPI.IOCStatus.invalidSGL, "chain element of \(length) bytes") }
                guard address <= UInt64.max - length else {
                    return .error(MPI.IOCStatus.invalidSGL, "chain buffer wraps the address space")
                }
                bufferBase = address
                bufferLength = length
                offset = 0
                chainOffset = UInt64((flagsLength >> MPI.SGE.chainOffsetShift) & 0xFF)
            default:
                return .error(MPI.IOCStatus.invalidSGL, "SGL element type 0x\(String((flagsLength >> 28) & 3, radix: 16))")
            }
        }
        return .segments(segments)
    }

    /// A SCSI IO error reply (function 0x00, 9 dwords).
    func scsiReply(_ r: InFlight, status: UInt16, scsiStatus: UInt8, scsiState: UInt8, transferred: UInt32,
                   senseCount: UInt32) -> [UInt8] {
        var b = [UInt8](repeating: 0, count: MPI.SCSIIO.replyDwords * 4)
        b[0] = r.target
        b[1] = r.bus
        b[MPI.Header.msgLength] = UInt8(MPI.SCSIIO.replyDwords)
        b[MPI.Header.function] = MPI.Function.scsiIO
        b[4] = r.cdbLength
        b[5] = r.senseLength
        b[MPI.Header.msgFlags] = r.msgFlags
        b.put32(MPI.Header.msgContext, r.msgContext)
        b[12] = scsiStatus
        b[13] = scsiState
        b.put16(MPI.Header.iocStatus, status)
        b.put32(0x14, transferred)
        b.put32(0x18, senseCount)
        b.put16(0x20, 0xFFFF)                                // TaskTag unknown
        return b
    }

    /// A completion from the SCSI layer (a host I/O thread).
    func completed(tag: UInt64, result: hv_scsi_result) {
        lock()
        defer { finish() }
        let slot = Int(tag & 0xFFFF_FFFF)
        guard UInt32(tag >> 32) == generation, slot < slots.count, let r = slots[slot] else { return }
        slots[slot] = nil
        freeSlots.append(slot)
        guard state == .operational else { return }

        let transferred = r.dataLength - UInt32(min(result.residual, UInt64(r.dataLength)))
        switch Int32(result.host_status) {
        case Int32(HV_SCSI_HOST_OK):
            break
        case Int32(HV_SCSI_HOST_NO_TARGET):
            queueReply(.address(scsiReply(r, status: MPI.IOCStatus.scsiDeviceNotThere, scsiStatus: 0,
                                          scsiState: MPI.SCSIState.noSCSIStatus, transferred: 0, senseCount: 0)))
            return
        case Int32(HV_SCSI_HOST_ABORTED):
            queueReply(.address(scsiReply(r, status: MPI.IOCStatus.scsiTaskTerminated, scsiStatus: 0,
                                          scsiState: MPI.SCSIState.terminated | MPI.SCSIState.noSCSIStatus,
                                          transferred: transferred, senseCount: 0)))
            return
        case Int32(HV_SCSI_HOST_DATA_DIR), Int32(HV_SCSI_HOST_DATA_OVERRUN):
            queueReply(.address(scsiReply(r, status: MPI.IOCStatus.scsiDataOverrun, scsiStatus: 0,
                                          scsiState: MPI.SCSIState.noSCSIStatus, transferred: 0, senseCount: 0)))
            return
        default:   // HV_SCSI_HOST_BAD_DMA: a data segment is not RAM
            queueReply(.address(scsiReply(r, status: MPI.IOCStatus.scsiIODataError, scsiStatus: 0,
                                          scsiState: MPI.SCSIState.noSCSIStatus, transferred: transferred,
                                          senseCount: 0)))
            return
        }
        if result.status == UInt8(HV_SCSI_STATUS_GOOD) && transferred == r.dataLength && r.msgContext & MPI.addressReplyBit == 0 {
            queueReply(.context(r.msgContext))
            return
        }
        var scsiState: UInt8 = 0
        var senseCount: UInt32 = 0
        if result.status == UInt8(HV_SCSI_STATUS_CHECK_CONDITION) && result.sense_len > 0 {
            let count = min(Int(result.sense_len), Int(r.senseLength), Int(HV_SCSI_SENSE_MAX))
            if count > 0 {
                var sense = [UInt8](repeating: 0, count: count)
                withUnsafeBytes(of: result.sense) { for i in 0..<count { sense[i] = $0[i] } }
                refreshDMA()
                if dmaWrite(r.senseAddress, sense, count) {
                    scsiState |= MPI.SCSIState.autosenseValid
                    senseCount = UInt32(count)
                } else {
                    scsiState |= MPI.SCSIState.autosenseFailed
                }
            }
        }
        let status = transferred < r.dataLength ? MPI.IOCStatus.scsiDataUnderrun : MPI.IOCStatus.success
        queueReply(.address(scsiReply(r, status: status, scsiStatus: result.status, scsiState: scsiState,
                                      transferred: transferred, senseCount: senseCount)))
    }
}
