import PluginABI

/// Saved state, section "buslogic" version 1. Fields:
///   flags (u8: diagnostic pending 0x01, command invalid 0x02, interrupts enabled 0x04,
///   strict round robin 0x08, extended LUN CCBs 0x10, outgoing-available interrupt 0x20,
///   outgoing mailboxes waiting 0x40), interrupts (u8), isaPort (u8),
///   command (bytes: in progress 0/1, opcode, parameters expected, parameters...),
///   reply (bytes), replyRead (u32), and the lengths of the byte fields
///   (commandLength, replyLength, pendingLength: u32; an empty field is not written),
///   mailboxMode (u8: 0 none, 1 24-bit, 2 32-bit), mailboxBase, mailboxCount,
///   outgoingIndex, incomingIndex (u32),
///   pending (bytes: 7 per incoming-mailbox entry not yet written: u32 CCB, adapter
///   status, target status, completion code).
/// Nothing is in flight when the host saves: it completes every hv.scsi request before
/// the pause, and the CCBs themselves are guest memory.
extension BusLogicDevice {
    static let stateVersion: UInt32 = 1

    func saveState(_ writer: OpaquePointer?, put: @convention(c) (OpaquePointer?, UnsafePointer<CChar>?, UInt32,
                                                                   UnsafeRawPointer?, Int) -> Int32) -> Int32 {
        guard lockLive() else { return HV_EINVAL }
        defer { finish() }
        guard freeSlots.count == Self.maxInFlight else {
            guestError("save_state with SCSI requests in flight")
            return HV_EBUSY
        }
        var rc: Int32 = HV_OK
        func field(_ name: String, _ type: UInt32, _ bytes: [UInt8]) {
            guard rc >= 0, !bytes.isEmpty else { return }
            rc = bytes.withUnsafeBytes { raw in
                name.withCString { put(writer, $0, type, raw.baseAddress ?? UnsafeRawPointer(bitPattern: 1), bytes.count) }
            }
        }
        func u32(_ name: String, _ v: UInt32) {
            field(name, HV_STATE_U32, [UInt8(v & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v >> 16 & 0xFF), UInt8(v >> 24)])
        }
        var flags: UInt8 = 0
        if diagnosticPending { flags |= 0x01 }
        if commandInvalid { flags |= 0x02 }
        if interruptsEnabled { flags |= 0x04 }
        if strictRoundRobin { flags |= 0x08 }
        if extendedLUN { flags |= 0x10 }
        if outgoingAvailableInterrupt { flags |= 0x20 }
        if scanDeferred { flags |= 0x40 }
        field("flags", HV_STATE_U8, [flags])
        field("interrupts", HV_STATE_U8, [interrupts])
        field("isaPort", HV_STATE_U8, [isaPort])
        let command = opcode.map { [1, $0, UInt8(truncatingIfNeeded: parametersExpected)] + parameters } ?? [0]
        u32("commandLength", UInt32(command.count))
        field("command", HV_STATE_BYTES, command)
        u32("replyLength", UInt32(reply.count))
        field("reply", HV_STATE_BYTES, reply)
        u32("replyRead", UInt32(replyRead))
        let mode: UInt8
        switch mailboxes {
        case .none: mode = 0
        case .legacy24: mode = 1
        case .extended32: mode = 2
        }
        field("mailboxMode", HV_STATE_U8, [mode])
        u32("mailboxBase", UInt32(truncatingIfNeeded: mailboxes.outgoingBase))
        u32("mailboxCount", mailboxes.count)
        u32("outgoingIndex", outgoingIndex)
        u32("incomingIndex", incomingIndex)
        var pending: [UInt8] = []
        for e in pendingIncoming[pendingHead...] {
            pending += [UInt8(e.ccb & 0xFF), UInt8(e.ccb >> 8 & 0xFF), UInt8(e.ccb >> 16 & 0xFF), UInt8(e.ccb >> 24),
                        e.adapterStatus, e.targetStatus, e.completion]
        }
        u32("pendingLength", UInt32(pending.count))
        field("pending", HV_STATE_BYTES, pending)
        return rc < 0 ? rc : HV_OK
    }

    /// Restores a saved state on a fresh instance; every value is checked like a guest
    /// write, and a value out of range refuses the state (HV_EINVAL).
    func loadState(_ reader: OpaquePointer?, version: UInt32,
                   get: @convention(c) (OpaquePointer?, UnsafePointer<CChar>?, UInt32, UnsafeMutableRawPointer?, Int) -> Int32)
        -> Int32 {
        guard version <= Self.stateVersion else { return HV_ENOTSUP }
        guard lockLive() else { return HV_EINVAL }
        defer {
            // The INTx level is the device's to restore.
            intxLevel = !(interruptsEnabled && interrupts & Interrupt.sources != 0)
            finish()
        }
        adapterReset(hard: true)
        diagnosticPending = false
        deferredResets = []
        var rc: Int32 = HV_OK
        func fixed(_ name: String, _ type: UInt32, _ count: Int) -> [UInt8]? {
            guard rc >= 0 else { return nil }
            var b = [UInt8](repeating: 0, count: count)
            let r = b.withUnsafeMutableBytes { raw in name.withCString { get(reader, $0, type, raw.baseAddress, count) } }
            if r == HV_ENOENT { return nil }
            if r < 0 { rc = r; return nil }
            return b
        }
        func u32(_ name: String) -> UInt32? {
            fixed(name, HV_STATE_U32, 4).map { UInt32($0[0]) | UInt32($0[1]) << 8 | UInt32($0[2]) << 16 | UInt32($0[3]) << 24 }
        }
        /// A bytes field of the length saved beside it (at most `max`); empty when absent.
        func bytes(_ name: String, max: Int) -> [UInt8] {
            guard let n = u32(name + "Length"), n > 0 else { return [] }
            guard n <= max else { rc = HV_EINVAL; return [] }
            return fixed(name, HV_STATE_BYTES, Int(n)) ?? []
        }
        let flags = fixed("flags", HV_STATE_U8, 1)?[0] ?? 0x04
        let savedInterrupts = fixed("interrupts", HV_STATE_U8, 1)?[0] ?? 0
        let savedISA = fixed("isaPort", HV_STATE_U8, 1)?[0] ?? isaDefault
        var command = bytes("command", max: 3 + 256)
        if command.isEmpty { command = [0] }
        let savedReply = bytes("reply", max: 255)
        let savedReplyRead = Int(u32("replyRead") ?? 0)
        let mode = fixed("mailboxMode", HV_STATE_U8, 1)?[0] ?? 0
        let base = u32("mailboxBase") ?? 0
        let count = u32("mailboxCount") ?? 0
        let outIndex = u32("outgoingIndex") ?? 0
        let inIndex = u32("incomingIndex") ?? 0
        let pending = bytes("pending", max: 7 * Self.maxPendingIncoming)
        guard rc >= 0 else { return rc }

        // Never trust a saved state more than a guest write.
        let area: MailboxArea
        switch mode {
        case 0: area = .none
        case 1 where (1...255).contains(count) && base < 1 << 24: area = .legacy24(base: base, count: count)
        case 2 where (1...255).contains(count): area = .extended32(base: base, count: count)
        default: return HV_EINVAL
        }
        guard area.count == 0 || (outIndex < area.count && inIndex < area.count),
              savedReplyRead <= savedReply.count, pending.count % 7 == 0,
              savedISA == Self.isaDisabled || savedISA == 7 || (Int(savedISA) < 6 && isaClaimed[Int(savedISA)]),
              command[0] <= 1 else { return HV_EINVAL }
        if command[0] == 1 {
            guard command.count >= 3, let expected = Self.parameterCount(command[1]),
                  command[1] == Opcode.setAdapterOptions ? Int(command[2]) <= 256 : Int(command[2]) == expected,
                  command.count - 3 <= Int(command[2]) else { return HV_EINVAL }
            opcode = command[1]
            parametersExpected = Int(command[2])
            parameters = Array(command[3...])
        }
        reply = savedReply
        replyRead = savedReplyRead
        diagnosticPending = flags & 0x01 != 0
        commandInvalid = flags & 0x02 != 0
        interruptsEnabled = flags & 0x04 != 0
        strictRoundRobin = flags & 0x08 != 0
        extendedLUN = flags & 0x10 != 0
        outgoingAvailableInterrupt = flags & 0x20 != 0
        scanDeferred = flags & 0x40 != 0
        interrupts = savedInterrupts & Interrupt.sources
        isaPort = savedISA == 7 ? Self.isaDisabled : savedISA
        mailboxes = area
        outgoingIndex = outIndex
        incomingIndex = inIndex
        pendingIncoming = stride(from: 0, to: pending.count, by: 7).map { (o: Int) -> IncomingEntry in
            let e = Array(pending[o..<o + 7])
            return IncomingEntry(ccb: le32(e, 0), adapterStatus: e[4], targetStatus: e[5], completion: e[6])
        }
        pendingHead = 0
        return HV_OK
    }
}
