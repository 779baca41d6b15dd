import PluginABI

// Request messages other than SCSI IO: how they arrive (doorbell handshake or request
// FIFO), the IOC and port facts, IOC INIT, PORT ENABLE, events and task management.

extension LSILogicDevice {
    /// Where a reply goes: back through the doorbell (a handshake request) or into the
    /// reply post FIFO (a request frame).
    enum ReplyPath { case doorbell, fifo }

    // MARK: arrival

    /// A request the host wrote through the doorbell.
    func handshakeRequest(_ frame: [UInt8]) {
        let function = frame[MPI.Header.function]
        // Task management answers in the reply FIFO even when its request came through
        // the doorbell (the driver waits for the final doorbell interrupt, then for the
        // reply as for any other request).
        if function == MPI.Function.scsiTaskManagement {
            doorbellInterrupt = true
            taskManagement(frame)
            return
        }
        if function == MPI.Function.scsiIO {
            reply(defaultReply(frame, status: MPI.IOCStatus.invalidFunction), via: .doorbell)
            return
        }
        process(frame, via: .doorbell)
    }

    /// The host posted a request frame's address to the request FIFO.
    func postRequest(_ mfa: UInt32) {
        guard state == .operational else {
            fault(MPI.IOCStatus.invalidState, "request posted in IOC state \(state)")
            return
        }
        refreshDMA()
        let address = hostMFAHigh | UInt64(mfa)
        guard let header = dmaRead(address, MPI.Header.size) else {
            fault(MPI.IOCStatus.internalError, "request frame 0x\(String(address, radix: 16)) is not guest RAM (or bus mastering is off)")
            return
        }
        let function = header[MPI.Header.function]
        let size = Self.requestSize(function)
        guard size > 0 else {
            // An unknown function: the header is all a reply needs.
            reply(defaultReply(header, status: MPI.IOCStatus.invalidFunction), via: .fifo)
            return
        }
        guard let frame = dmaRead(address, size) else {
            fault(MPI.IOCStatus.internalError, "request frame 0x\(String(address, radix: 16)) runs out of guest RAM")
            return
        }
        switch function {
        case MPI.Function.scsiIO: scsiIO(frame, frameAddress: address)
        case MPI.Function.scsiTaskManagement: taskManagement(frame)
        default: process(frame, via: .fifo)
        }
    }

    /// Bytes of a request of `function` (the SCSI IO size stops before the SGL), or 0
    /// for functions this IOC does not implement.
    static func requestSize(_ function: UInt8) -> Int {
        switch function {
        case MPI.Function.scsiIO: return MPI.SCSIIO.sgl
        case MPI.Function.scsiTaskManagement: return 0x34
        case MPI.Function.iocInit: return 0x2C
        case MPI.Function.iocFacts, MPI.Function.portFacts, MPI.Function.portEnable,
             MPI.Function.eventNotification: return 12
        case MPI.Function.eventAck: return 20
        case MPI.Function.config: return 0x28
        default: return 0
        }
    }

    /// The shortest request of `function` this IOC accepts (IOC INIT without its host
    /// page buffer, as SeaBIOS sends it; CONFIG with a 32-bit page buffer element).
    static func minimumSize(_ function: UInt8) -> Int {
        switch function {
        case MPI.Function.iocInit: return 0x18
        case MPI.Function.config: return 0x24
        default: return requestSize(function)
        }
    }

    /// Dispatches a request other than SCSI IO and task management.
    func process(_ frame: [UInt8], via path: ReplyPath) {
        let function = frame[MPI.Header.function]
        let size = Self.minimumSize(function)
        guard size > 0 else {
            reply(defaultReply(frame, status: MPI.IOCStatus.invalidFunction), via: path)
            return
        }
        guard frame.count >= size else {
            guestError("function 0x\(String(function, radix: 16)) request of \(frame.count) bytes (needs \(size))")
            reply(defaultReply(frame, status: MPI.IOCStatus.invalidField), via: path)
            return
        }
        switch function {
        case MPI.Function.iocFacts: reply(iocFacts(frame), via: path)
        case MPI.Function.portFacts: reply(portFacts(frame), via: path)
        case MPI.Function.iocInit: reply(iocInit(frame), via: path)
        case MPI.Function.portEnable:
            var r = defaultReply(frame, status: state == .operational ? MPI.IOCStatus.success : MPI.IOCStatus.invalidState)
            r[6] = frame[6]
            if state == .operational { portEnabled = true }
            reply(r, via: path)
        case MPI.Function.eventNotification: eventNotification(frame, via: path)
        case MPI.Function.eventAck: reply(defaultReply(frame, status: MPI.IOCStatus.success), via: path)
        case MPI.Function.config: reply(config(frame), via: path)
        default: reply(defaultReply(frame, status: MPI.IOCStatus.invalidFunction), via: path)
        }
    }

    // MARK: replies

    /// A 5-dword reply echoing the request's function, MsgFlags and MsgContext.
    func defaultReply(_ request: [UInt8], status: UInt16, dwords: Int = 5) -> [UInt8] {
        var r = [UInt8](repeating: 0, count: dwords * 4)
        r[MPI.Header.msgLength] = UInt8(dwords)
        r[MPI.Header.function] = request[MPI.Header.function]
        r[MPI.Header.msgFlags] = request.count > MPI.Header.msgFlags ? request[MPI.Header.msgFlags] : 0
        if request.count >= MPI.Header.size { r.put32(MPI.Header.msgContext, request.le32(MPI.Header.msgContext)) }
        r.put16(MPI.Header.iocStatus, status)
        return r
    }

    func reply(_ bytes: [UInt8], via path: ReplyPath) {
        switch path {
        case .fifo:
            queueReply(.address(bytes))
        case .doorbell:
            var words: [UInt16] = []
            words.reserveCapacity(bytes.count / 2)
            for i in stride(from: 0, to: bytes.count, by: 2) { words.append(bytes.le16(i)) }
            handshake = .replying(words: words, index: 0)
            doorbellInterrupt = true
        }
    }

    // MARK: facts, init, port enable

    func iocFacts(_ request: [UInt8]) -> [UInt8] {
        var r = defaultReply(request, status: MPI.IOCStatus.success, dwords: 20)
        r.put16(0x00, 0x0102)                               // MsgVersion: MPI 1.2
        r.put16(0x04, 0x0A00)                               // HeaderVersion
        r[0x14] = UInt8(Self.maxChainDepth)
        r[0x15] = whoInit
        r[0x16] = UInt8(Self.requestFrameBytes / 4)          // BlockSize (dwords)
        r.put16(0x18, UInt16(Self.replyQueueDepth))
        r.put16(0x1A, UInt16(Self.requestFrameBytes / 4))    // RequestFrameSize (dwords)
        r.put16(0x1C, 0x0103)                               // pre-1.2 FWVersion
        r.put16(0x1E, 0x0108)                               // ProductID: SCSI initiator, 1030 family
        r.put32(0x20, UInt32(truncatingIfNeeded: hostMFAHigh >> 32))
        r.put16(0x24, UInt16(Self.globalCredits))
        r[0x26] = 1                                         // NumberOfPorts
        r[0x27] = eventsOn ? 1 : 0                          // EventState
        r.put32(0x28, UInt32(truncatingIfNeeded: senseBufferHigh >> 32))
        r.put16(0x2C, UInt16(truncatingIfNeeded: replyFrameSize))
        r[0x2E] = maxDevices
        r[0x2F] = maxBuses
        r.put32(0x34, 0x0000_0001)                           // IOCCapabilities: high-priority queue
        r.put32(0x38, 0x0103_2900)                           // FWVersion 1.3.41.0
        r.put16(0x3C, UInt16(Self.globalCredits))            // HighPriorityQueueDepth
        return r
    }

    func portFacts(_ request: [UInt8]) -> [UInt8] {
        let port = request[6]
        var r = defaultReply(request, status: port == 0 ? MPI.IOCStatus.success : MPI.IOCStatus.invalidField, dwords: 10)
        r[6] = port
        guard port == 0 else { return r }
        r[0x15] = 0x01                                      // PortType: SCSI
        r.put16(0x16, UInt16(Self.maxTargets))              // MaxDevices
        r.put16(0x18, UInt16(Self.initiatorID))             // PortSCSIID
        r.put16(0x1A, 0x0008)                               // ProtocolFlags: initiator
        return r
    }

    func iocInit(_ request: [UInt8]) -> [UInt8] {
        let frameSize = Int(request.le16(0x0C))
        var status = MPI.IOCStatus.success
        if state != .ready && state != .operational {
            status = MPI.IOCStatus.invalidState
        } else if frameSize == 0 || frameSize % 4 != 0 {
            status = MPI.IOCStatus.invalidField
        } else if request[6] > 1 {
            status = MPI.IOCStatus.invalidField              // MaxBuses: one bus
        } else {
            whoInit = request[0]
            replyFrameSize = frameSize
            maxDevices = request[5] == 0 || request[5] > Self.maxTargets ? UInt8(Self.maxTargets) : request[5]
            maxBuses = 1
            hostMFAHigh = UInt64(request.le32(0x10)) << 32
            senseBufferHigh = UInt64(request.le32(0x14)) << 32
            state = .operational
        }
        var r = defaultReply(request, status: status)
        r[0] = whoInit
        r[4] = request[4]
        r[5] = maxDevices
        r[6] = maxBuses
        return r
    }

    // MARK: events

    func eventNotification(_ request: [UInt8], via path: ReplyPath) {
        eventsOn = request[0] & 1 != 0
        eventContext = request.le32(MPI.Header.msgContext)
        reply(eventReply(MPI.Event.eventChange, data: [UInt32(request[0] & 1)]), via: path)
    }

    /// An EVENT NOTIFICATION reply: the continuation flag keeps the request active for
    /// the events that follow.
    func eventReply(_ event: UInt32, data: [UInt32]) -> [UInt8] {
        let dwords = 7 + data.count
        var r = [UInt8](repeating: 0, count: dwords * 4)
        r.put16(0, UInt16(data.count))                      // EventDataLength
        r[MPI.Header.msgLength] = UInt8(dwords)
        r[MPI.Header.function] = MPI.Function.eventNotification
        r[MPI.Header.msgFlags] = MPI.continuationReply
        r.put32(MPI.Header.msgContext, eventContext)
        r.put32(0x14, event)
        for (i, d) in data.enumerated() { r.put32(0x1C + 4 * i, d) }
        return r
    }

    func postEvent(_ event: UInt32, data: [UInt32]) {
        guard eventsOn, state == .operational else { return }
        queueReply(.address(eventReply(event, data: data)))
    }

    // MARK: task management

    /// SCSI TASK MANAGEMENT. hv.scsi/1 ends requests per target, so an abort of one task
    /// ends every request in flight on that target (the others complete TERMINATED and a
    /// driver retries them). The reply follows the abort (see `finish`).
    func taskManagement(_ frame: [UInt8]) {
        guard frame.count >= Self.requestSize(MPI.Function.scsiTaskManagement) else {
            reply(defaultReply(frame, status: MPI.IOCStatus.invalidField), via: .fifo)
            return
        }
        let target = frame[0], busNumber = frame[1], type = frame[5]
        var r = defaultReply(frame, status: MPI.IOCStatus.success, dwords: 6)
        r[0] = target
        r[1] = busNumber
        r[5] = type
        guard state == .operational else {
            r.put16(MPI.Header.iocStatus, MPI.IOCStatus.invalidState)
            reply(r, via: .fifo)
            return
        }
        let needsTarget = type != MPI.TaskType.resetBus
        if needsTarget {
            if busNumber != 0 {
                r.put16(MPI.Header.iocStatus, MPI.IOCStatus.scsiInvalidBus)
                reply(r, via: .fifo)
                return
            }
            if Int(target) >= Self.maxTargets || target == Self.initiatorID {
                r.put16(MPI.Header.iocStatus, MPI.IOCStatus.scsiInvalidTargetID)
                reply(r, via: .fifo)
                return
            }
        }
        let inFlight = slots.reduce(0) { n, s in
            guard let s else { return n }
            return n + (!needsTarget || s.target == target ? 1 : 0)
        }
        r.put32(0x14, UInt32(inFlight))                      // TerminationCount
        switch type {
        case MPI.TaskType.abortTask:
            let task = frame.le32(0x30)
            let found = slots.contains { $0?.msgContext == task && $0?.target == target }
            guard found else {
                r.put32(0x14, 0)
                reply(r, via: .fifo)
                return
            }
            deferredAborts.append(DeferredAbort(target: Int32(target), reset: false, reply: r, busResetEvent: false))
        case MPI.TaskType.abortTaskSet, MPI.TaskType.clearTaskSet:
            deferredAborts.append(DeferredAbort(target: Int32(target), reset: false, reply: r, busResetEvent: false))
        case MPI.TaskType.targetReset, MPI.TaskType.logicalUnitReset:
            deferredAborts.append(DeferredAbort(target: Int32(target), reset: true, reply: r, busResetEvent: false))
        case MPI.TaskType.resetBus:
            deferredAborts.append(DeferredAbort(target: -1, reset: true, reply: r, busResetEvent: true))
        case MPI.TaskType.queryTask:
            let task = frame.le32(0x30)
            let found = slots.contains { $0?.msgContext == task && $0?.target == target }
            r[4] = found ? MPI.TaskResponse.succeeded : MPI.TaskResponse.complete
            r.put32(0x14, 0)
            reply(r, via: .fifo)
        default:
            r[4] = MPI.TaskResponse.notSupported
            r.put32(0x14, 0)
            reply(r, via: .fifo)
        }
    }
}
