/// Register bits, command opcodes and status codes of the BusLogic MultiMaster host
/// adapter interface (facts from the public Linux `BusLogic.h`; see README.md).

/// Control register (write, offset 0).
enum Control {
    static let hardReset: UInt8 = 0x80
    static let softReset: UInt8 = 0x40
    static let interruptReset: UInt8 = 0x20
    static let scsiBusReset: UInt8 = 0x10
}

/// Status register (read, offset 0). Bit 1 is reserved and always reads 0; diagnostic
/// failure (0x40) and command/parameter busy (0x08) never show: the diagnostics always
/// pass and commands run synchronously.
enum Status {
    static let diagnosticActive: UInt8 = 0x80
    static let initRequired: UInt8 = 0x20
    static let ready: UInt8 = 0x10
    static let dataInReady: UInt8 = 0x04
    static let commandInvalid: UInt8 = 0x01
}

/// Interrupt register (read, offset 2). SCSI reset (0x08, a reset by another initiator)
/// never shows: the adapter is the bus's only initiator.
enum Interrupt {
    static let valid: UInt8 = 0x80
    static let commandComplete: UInt8 = 0x04
    static let mailboxOutAvailable: UInt8 = 0x02
    static let mailboxInLoaded: UInt8 = 0x01
    static let sources: UInt8 = 0x0F
}

/// Host adapter command opcodes (written to offset 1 while the adapter is ready).
enum Opcode {
    static let testCommandCompleteInterrupt: UInt8 = 0x00
    static let initializeMailbox: UInt8 = 0x01
    static let executeMailboxCommand: UInt8 = 0x02
    static let inquireBoardID: UInt8 = 0x04
    static let enableOutgoingMailboxAvailableInterrupt: UInt8 = 0x05
    static let setSelectionTimeout: UInt8 = 0x06
    static let setPreemptTime: UInt8 = 0x07
    static let setTimeOffBus: UInt8 = 0x08
    static let setBusTransferRate: UInt8 = 0x09
    static let inquireInstalledDevices0to7: UInt8 = 0x0A
    static let inquireConfiguration: UInt8 = 0x0B
    static let inquireSetupInformation: UInt8 = 0x0D
    static let echoCommandData: UInt8 = 0x1F
    static let hostAdapterDiagnostic: UInt8 = 0x20
    static let setAdapterOptions: UInt8 = 0x21
    static let inquireInstalledDevices8to15: UInt8 = 0x23
    static let inquireTargetDevices: UInt8 = 0x24
    static let disableHostAdapterInterrupt: UInt8 = 0x25
    static let initializeExtendedMailbox: UInt8 = 0x81
    static let inquireFirmwareVersion3rdDigit: UInt8 = 0x84
    static let inquireFirmwareVersionLetter: UInt8 = 0x85
    static let inquirePCIHostAdapterInformation: UInt8 = 0x86
    static let inquireHostAdapterModelNumber: UInt8 = 0x8B
    static let inquireSynchronousPeriod: UInt8 = 0x8C
    static let inquireExtendedSetupInformation: UInt8 = 0x8D
    static let enableStrictRoundRobin: UInt8 = 0x8F
    static let fetchHostAdapterLocalRAM: UInt8 = 0x91
    static let modifyIOAddress: UInt8 = 0x95
    static let setCCBFormat: UInt8 = 0x96
}

/// Outgoing mailbox action codes.
enum MailboxAction {
    static let free: UInt8 = 0
    static let start: UInt8 = 1
    static let abort: UInt8 = 2
}

/// Incoming mailbox completion codes (the MultiMaster firmware uses 0-4).
enum Completion {
    static let free: UInt8 = 0
    static let good: UInt8 = 1
    static let abortedByHost: UInt8 = 2
    static let abortedNotFound: UInt8 = 3
    static let error: UInt8 = 4
}

/// CCB opcodes.
enum CCBOpcode {
    static let initiator: UInt8 = 0x00
    static let initiatorScatterGather: UInt8 = 0x02
    static let initiatorResidual: UInt8 = 0x03
    static let initiatorScatterGatherResidual: UInt8 = 0x04
    static let busDeviceReset: UInt8 = 0x81
}

/// Host adapter status codes (CCB byte 14, incoming mailbox byte 4).
enum AdapterStatus {
    static let normal: UInt8 = 0x00
    static let selectionTimeout: UInt8 = 0x11
    static let dataOverUnderrun: UInt8 = 0x12
    static let invalidOutgoingMailboxAction: UInt8 = 0x15
    static let invalidCCBOpcode: UInt8 = 0x16
    static let invalidCCBParameter: UInt8 = 0x1A
    static let autoSenseFailed: UInt8 = 0x1B
    static let hardwareFailure: UInt8 = 0x20
    static let hostAdapterReset: UInt8 = 0x22
    static let busDeviceReset: UInt8 = 0x25
}

/// CCB data direction (byte 1 bits 3-4); 0 is "unchecked": the CDB decides.
enum DataDirection {
    static let inChecked: UInt8 = 1
    static let outChecked: UInt8 = 2
    static let none: UInt8 = 3
}

/// Target device status codes the adapter passes through (CCB byte 15).
enum TargetStatus {
    static let good: UInt8 = 0x00
    static let checkCondition: UInt8 = 0x02
}
