/// The host adapter commands: opcode, parameter bytes, reply. Reply lengths are those
/// the Linux BusLogic driver reads (it requires the exact length of each structure);
/// commands that take a reply length as their parameter answer exactly that many bytes.
/// Identity: BT-958 ("W" series, PCI, wide), firmware 5.07B.
enum CommandOutcome {
    /// The reply bytes (none: the command completes at once with a CMDC interrupt).
    case reply([UInt8])
    /// Done without a Command Complete interrupt (Modify I/O Address, Disable Interrupt,
    /// Enable Outgoing Mailbox Available Interrupt).
    case silent
    /// Command Invalid in the status register.
    case invalid
}

extension BusLogicDevice {
    static let firmwareMajor: UInt8 = UInt8(ascii: "5")
    static let firmwareMinor: UInt8 = UInt8(ascii: "0")
    static let firmwareDigit3: UInt8 = UInt8(ascii: "7")
    static let firmwareLetter: UInt8 = UInt8(ascii: "B")

    /// Parameter bytes of `op` (Set Adapter Options: its first byte counts the rest);
    /// nil for an opcode the adapter does not implement.
    static func parameterCount(_ op: UInt8) -> Int? {
        switch op {
        case Opcode.testCommandCompleteInterrupt, Opcode.inquireBoardID,
             Opcode.inquireInstalledDevices0to7, Opcode.inquireConfiguration,
             Opcode.hostAdapterDiagnostic, Opcode.inquireInstalledDevices8to15,
             Opcode.inquireTargetDevices, Opcode.inquireFirmwareVersion3rdDigit,
             Opcode.inquireFirmwareVersionLetter, Opcode.inquirePCIHostAdapterInformation:
            return 0
        case Opcode.enableOutgoingMailboxAvailableInterrupt, Opcode.setPreemptTime,
             Opcode.setTimeOffBus, Opcode.setBusTransferRate, Opcode.inquireSetupInformation,
             Opcode.echoCommandData, Opcode.setAdapterOptions, Opcode.disableHostAdapterInterrupt,
             Opcode.inquireHostAdapterModelNumber, Opcode.inquireSynchronousPeriod,
             Opcode.inquireExtendedSetupInformation, Opcode.enableStrictRoundRobin,
             Opcode.modifyIOAddress, Opcode.setCCBFormat:
            return 1
        case Opcode.fetchHostAdapterLocalRAM:
            return 2
        case Opcode.initializeMailbox, Opcode.setSelectionTimeout:
            return 4
        case Opcode.initializeExtendedMailbox:
            return 5
        default:
            return nil
        }
    }

    func commandOutcome(_ op: UInt8, _ p: [UInt8]) -> CommandOutcome {
        switch op {
        case Opcode.testCommandCompleteInterrupt, Opcode.hostAdapterDiagnostic,
             Opcode.setPreemptTime, Opcode.setTimeOffBus, Opcode.setBusTransferRate,
             Opcode.setAdapterOptions:
            return .reply([])
        case Opcode.setSelectionTimeout:
            return p[0] > 1 ? .invalid : .reply([])
        case Opcode.inquireBoardID:
            // Board type, custom features, firmware major and minor digit.
            return .reply([UInt8(ascii: "A"), UInt8(ascii: "A"), Self.firmwareMajor, Self.firmwareMinor])
        case Opcode.enableOutgoingMailboxAvailableInterrupt:
            // Completes without a Command Complete interrupt (as VirtualBox's model does).
            guard p[0] <= 1 else { return .invalid }
            outgoingAvailableInterrupt = p[0] == 1
            return .silent
        case Opcode.inquireInstalledDevices0to7, Opcode.inquireInstalledDevices8to15:
            let first: UInt32 = op == Opcode.inquireInstalledDevices0to7 ? 0 : 8
            let mask = targetMask
            return .reply((first..<first + 8).map { mask & (1 << $0) != 0 ? 0x01 : 0x00 })
        case Opcode.inquireTargetDevices:
            let mask = targetMask
            return .reply([UInt8(mask & 0xFF), UInt8(mask >> 8 & 0xFF)])
        case Opcode.inquireConfiguration:
            // No ISA DMA channel, no ISA IRQ jumper (PCI INTA#), SCSI id.
            return .reply([0x00, 0x00, UInt8(Self.adapterID)])
        case Opcode.inquireSetupInformation:
            return .reply(sized(setupInformation(), Int(p[0])))
        case Opcode.echoCommandData:
            return .reply([p[0]])
        case Opcode.disableHostAdapterInterrupt:
            interruptsEnabled = p[0] != 0
            return .silent
        case Opcode.initializeMailbox:
            let base = UInt32(p[1]) << 16 | UInt32(p[2]) << 8 | UInt32(p[3])
            return initializeMailboxes(.legacy24(base: base, count: UInt32(p[0])))
        case Opcode.initializeExtendedMailbox:
            let base = UInt32(p[1]) | UInt32(p[2]) << 8 | UInt32(p[3]) << 16 | UInt32(p[4]) << 24
            return initializeMailboxes(.extended32(base: base, count: UInt32(p[0])))
        case Opcode.inquireFirmwareVersion3rdDigit:
            return .reply([Self.firmwareDigit3])
        case Opcode.inquireFirmwareVersionLetter:
            return .reply([Self.firmwareLetter])
        case Opcode.inquirePCIHostAdapterInformation:
            // ISA-compatible port code, IRQ (PCI: the driver uses the PCI line), and
            // termination: low and high on, the information valid (bit 7).
            return .reply([isaPort, 0x00, 0x83, 0x00])
        case Opcode.inquireHostAdapterModelNumber:
            return .reply(sized([UInt8(ascii: "9"), UInt8(ascii: "5"), UInt8(ascii: "8"), UInt8(ascii: " "), 0], Int(p[0])))
        case Opcode.inquireSynchronousPeriod:
            // Transfer period per target in 10 ns units: 0, asynchronous (no real bus).
            return .reply([UInt8](repeating: 0, count: Int(p[0])))
        case Opcode.inquireExtendedSetupInformation:
            return .reply(sized(extendedSetupInformation(), Int(p[0])))
        case Opcode.enableStrictRoundRobin:
            guard p[0] <= 1 else { return .invalid }
            strictRoundRobin = p[0] == 1
            return .reply([])
        case Opcode.fetchHostAdapterLocalRAM:
            let ram = localRAM()
            return .reply((0..<Int(p[1])).map { ram[(Int(p[0]) + $0) & 0xFF] })
        case Opcode.modifyIOAddress:
            let code = p[0]
            if code >= Self.isaDisabled {
                guard code <= 7 else { return .invalid }
                isaPort = Self.isaDisabled
                return .silent
            }
            // Only the windows claimed at power-on can decode.
            guard isaClaimed[Int(code)] else { return .invalid }
            isaPort = code
            return .silent
        case Opcode.setCCBFormat:
            guard p[0] <= 1 else { return .invalid }
            extendedLUN = p[0] == 1
            return .reply([])
        default:
            return .invalid
        }
    }

    /// `bytes` cut or zero-padded to `length` (commands whose parameter is the reply length).
    func sized(_ bytes: [UInt8], _ length: Int) -> [UInt8] {
        length <= bytes.count ? Array(bytes[0..<length]) : bytes + [UInt8](repeating: 0, count: length - bytes.count)
    }

    /// The 24-bit mailbox count and address, or zeros in 32-bit mode.
    var legacyMailboxFields: (UInt8, [UInt8]) {
        if case .legacy24(let base, let count) = mailboxes {
            return (UInt8(count), [UInt8(base >> 16 & 0xFF), UInt8(base >> 8 & 0xFF), UInt8(base & 0xFF)])
        }
        return (0, [0, 0, 0])
    }

    /// Inquire Setup Information, 34 bytes: synchronous off, parity on, mailboxes,
    /// per-target synchronous values (asynchronous), disconnect allowed, 'B'/'D'
    /// signature bytes, bus type, wide permitted.
    func setupInformation() -> [UInt8] {
        var b = [UInt8](repeating: 0, count: 34)
        b[0] = 0x02
        let (count, address) = legacyMailboxFields
        b[4] = count
        b[5] = address[0]; b[6] = address[1]; b[7] = address[2]
        b[16] = 0xFF
        b[17] = UInt8(ascii: "B")
        b[18] = UInt8(ascii: "D")
        b[19] = UInt8(ascii: "E")
        b[20] = 0xFF
        b[30] = 0xFF
        b[32] = 0xFF
        return b
    }

    /// Inquire Extended Setup Information, 14 bytes: bus type 'E' (EISA/PCI), no BIOS,
    /// scatter/gather limit, mailbox count and base, level-triggered interrupt, firmware
    /// revision, wide.
    func extendedSetupInformation() -> [UInt8] {
        var b = [UInt8](repeating: 0, count: 14)
        b[0] = UInt8(ascii: "E")
        b[1] = 0
        b[2] = UInt8(Self.scatterGatherLimit & 0xFF)
        b[3] = UInt8(Self.scatterGatherLimit >> 8)
        b[4] = UInt8(truncatingIfNeeded: mailboxes.count)
        let base = UInt32(truncatingIfNeeded: mailboxes.outgoingBase)
        b[5] = UInt8(base & 0xFF); b[6] = UInt8(base >> 8 & 0xFF)
        b[7] = UInt8(base >> 16 & 0xFF); b[8] = UInt8(base >> 24)
        b[9] = 0x40
        b[10] = Self.firmwareMinor
        b[11] = Self.firmwareDigit3
        b[12] = Self.firmwareLetter
        b[13] = 0x01
        return b
    }

    /// The adapter's 256-byte local RAM as Fetch Host Adapter Local RAM reads it: the BIOS
    /// area (0-63, no BIOS drives) and the AutoSCSI settings at 64.
    func localRAM() -> [UInt8] {
        var ram = [UInt8](repeating: 0, count: 256)
        var a = [UInt8](repeating: 0, count: 64)
        a[0] = UInt8(ascii: "F"); a[1] = UInt8(ascii: "A")      // factory signature
        a[2] = 64                                                // information bytes
        for (i, c) in "958   ".utf8.enumerated() { a[3 + i] = c }
        a[10] = 0x04                                             // level-triggered interrupt
        a[14] = UInt8(Self.adapterID)
        a[15] = 0x01 | 0x02 | 0x04 | 0x20                        // low/high termination, parity, bus reset
        for offset in [19, 21, 23, 25, 27] { a[offset] = 0xFF; a[offset + 1] = 0xFF }  // devices, wide, fast, sync, disconnect
        a[33] = 0x10                                             // strict round robin available
        a[34] = 0xFF; a[35] = 0xFF                               // ultra permitted
        a[41] = 7                                                // max LUN
        for i in 0..<64 { ram[64 + i] = a[i] }
        return ram
    }

    /// Initialize (Extended) Mailbox: 1-255 entries, all of them guest RAM.
    func initializeMailboxes(_ area: MailboxArea) -> CommandOutcome {
        let bytes = Int(area.count) * Int(area.entrySize) * 2
        guard area.count > 0, bytes > 0,
              area.outgoingBase + UInt64(bytes) <= 1 << 32,
              readBytes(area.outgoingBase, bytes) != nil else {
            guestError("mailbox initialization with \(area.count) entries at 0x\(String(area.outgoingBase, radix: 16)) refused")
            return .invalid
        }
        mailboxes = area
        outgoingIndex = 0
        incomingIndex = 0
        pendingIncoming = []
        pendingHead = 0
        return .reply([])
    }
}
