// Fusion-MPT (MPI 1.2) message-protocol facts for the LSI53C1030: register offsets,
// doorbell fields, function codes, IOCStatus values, SGE flags and message layouts, from
// the public Linux drivers/message/fusion/lsi headers. Offsets are bytes into a frame.

enum MPI {
    // MARK: registers (BAR0 I/O and BAR1 memory decode the same 256 bytes)

    enum Register {
        static let doorbell: UInt64 = 0x00
        static let writeSequence: UInt64 = 0x04
        static let hostDiagnostic: UInt64 = 0x08
        static let testBase: UInt64 = 0x0C
        static let diagData: UInt64 = 0x10
        static let diagAddress: UInt64 = 0x14
        static let intStatus: UInt64 = 0x30
        static let intMask: UInt64 = 0x34
        static let requestFIFO: UInt64 = 0x40
        static let replyFIFO: UInt64 = 0x44
        static let highPriorityRequestFIFO: UInt64 = 0x48
    }

    /// IOC state, doorbell bits 31:28.
    enum IOCState: UInt32 {
        case reset = 0x0
        case ready = 0x1
        case operational = 0x2
        case fault = 0x4
    }

    enum Doorbell {
        static let active: UInt32 = 0x0800_0000          // a handshake is in progress
        static let whoInitShift: UInt32 = 24             // bits 26:24 when idle
        static let functionShift: UInt32 = 24
        static let dwordsShift: UInt32 = 16
    }

    enum IntStatus {
        static let doorbell: UInt32 = 0x0000_0001
        static let reply: UInt32 = 0x0000_0008
        static let iopDoorbell: UInt32 = 0x8000_0000     // set while the IOC has not taken a doorbell write
    }

    enum Diag {
        static let memEnable: UInt32 = 0x01
        static let disableARM: UInt32 = 0x02
        static let resetAdapter: UInt32 = 0x04
        static let rwEnable: UInt32 = 0x10
        static let resetHistory: UInt32 = 0x20
        static let drwe: UInt32 = 0x80                   // diagnostic register write enable
        /// Bits the host may set or clear while DRWE is set.
        static let writable: UInt32 = memEnable | disableARM | rwEnable | 0x200 | 0x400
        static let writeSequenceKeys: [UInt32] = [0x04, 0x0B, 0x02, 0x07, 0x0D]
    }

    enum Function {
        static let scsiIO: UInt8 = 0x00
        static let scsiTaskManagement: UInt8 = 0x01
        static let iocInit: UInt8 = 0x02
        static let iocFacts: UInt8 = 0x03
        static let config: UInt8 = 0x04
        static let portFacts: UInt8 = 0x05
        static let portEnable: UInt8 = 0x06
        static let eventNotification: UInt8 = 0x07
        static let eventAck: UInt8 = 0x08
        // Doorbell-only functions.
        static let messageUnitReset: UInt8 = 0x40
        static let ioUnitReset: UInt8 = 0x41
        static let handshake: UInt8 = 0x42
    }

    enum IOCStatus {
        static let success: UInt16 = 0x0000
        static let invalidFunction: UInt16 = 0x0001
        static let busy: UInt16 = 0x0002
        static let invalidSGL: UInt16 = 0x0003
        static let internalError: UInt16 = 0x0004
        static let insufficientResources: UInt16 = 0x0006
        static let invalidField: UInt16 = 0x0007
        static let invalidState: UInt16 = 0x0008
        static let configInvalidAction: UInt16 = 0x0020
        static let configInvalidType: UInt16 = 0x0021
        static let configInvalidPage: UInt16 = 0x0022
        static let configInvalidData: UInt16 = 0x0023
        static let scsiInvalidBus: UInt16 = 0x0041
        static let scsiInvalidTargetID: UInt16 = 0x0042
        static let scsiDeviceNotThere: UInt16 = 0x0043
        static let scsiDataOverrun: UInt16 = 0x0044
        static let scsiDataUnderrun: UInt16 = 0x0045
        static let scsiIODataError: UInt16 = 0x0046
        static let scsiTaskTerminated: UInt16 = 0x0048
        static let scsiIOCTerminated: UInt16 = 0x004B
    }

    enum SCSIState {
        static let autosenseValid: UInt8 = 0x01
        static let autosenseFailed: UInt8 = 0x02
        static let noSCSIStatus: UInt8 = 0x04
        static let terminated: UInt8 = 0x08
    }

    /// Scatter/gather element flags (FlagsLength bits 31:24) and fields.
    enum SGE {
        static let lastElement: UInt32 = 0x8000_0000
        static let endOfBuffer: UInt32 = 0x4000_0000
        static let typeMask: UInt32 = 0x3000_0000
        static let typeSimple: UInt32 = 0x1000_0000
        static let typeChain: UInt32 = 0x3000_0000
        static let hostToIOC: UInt32 = 0x0400_0000
        static let address64: UInt32 = 0x0200_0000
        static let endOfList: UInt32 = 0x0100_0000
        static let lengthMask: UInt32 = 0x00FF_FFFF
        static let chainLengthMask: UInt32 = 0x0000_FFFF
        static let chainOffsetShift: UInt32 = 16
    }

    enum TaskType {
        static let abortTask: UInt8 = 0x01
        static let abortTaskSet: UInt8 = 0x02
        static let targetReset: UInt8 = 0x03
        static let resetBus: UInt8 = 0x04
        static let logicalUnitReset: UInt8 = 0x05
        static let clearTaskSet: UInt8 = 0x06
        static let queryTask: UInt8 = 0x07
    }

    enum TaskResponse {
        static let complete: UInt8 = 0x00
        static let notSupported: UInt8 = 0x04
        static let succeeded: UInt8 = 0x08
    }

    enum Event {
        static let ioBusReset: UInt32 = 0x04
        static let eventChange: UInt32 = 0x0A
    }

    /// The reply FIFO's address-reply marker: bit 31 set, frame address >> 1 below it.
    static let addressReplyBit: UInt32 = 0x8000_0000
    static let continuationReply: UInt8 = 0x80

    // MARK: frame layouts (byte offsets)

    /// Common header: function-specific 0-1, ChainOffset 2, Function 3, 4-6 specific,
    /// MsgFlags 7, MsgContext 8.
    enum Header {
        static let chainOffset = 2
        static let function = 3
        static let msgFlags = 7
        static let msgContext = 8
        static let size = 12
        /// In a reply: MsgLength (dwords) at 2, IOCStatus at 14, IOCLogInfo at 16.
        static let msgLength = 2
        static let iocStatus = 14
        static let iocLogInfo = 16
    }

    /// SCSI IO request (function 0x00); the SGL begins at byte 48.
    enum SCSIIO {
        static let targetID = 0
        static let bus = 1
        static let cdbLength = 4
        static let senseBufferLength = 5
        static let lun = 12
        static let control = 20
        static let cdb = 24
        static let dataLength = 40
        static let senseBufferLowAddr = 44
        static let sgl = 48
        static let replyDwords = 9
        static let directionShift: UInt32 = 24
    }
}

// MARK: little-endian byte access

extension Array where Element == UInt8 {
    @inline(__always) func le16(_ at: Int) -> UInt16 {
        UInt16(self[at]) | UInt16(self[at + 1]) << 8
    }
    @inline(__always) func le32(_ at: Int) -> UInt32 {
        UInt32(self[at]) | UInt32(self[at + 1]) << 8 | UInt32(self[at + 2]) << 16 | UInt32(self[at + 3]) << 24
    }
    @inline(__always) mutating func put16(_ at: Int, _ v: UInt16) {
        self[at] = UInt8(truncatingIfNeeded: v)
        self[at + 1] = UInt8(truncatingIfNeeded: v >> 8)
    }
    @inline(__always) mutating func put32(_ at: Int, _ v: UInt32) {
        for i in 0..<4 { self[at + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(i))) }
    }
    /// Copies an ASCII string into a fixed, zero-padded field.
    mutating func putASCII(_ at: Int, _ s: String, width: Int) {
        for (i, b) in s.utf8.prefix(width).enumerated() { self[at + i] = b }
    }
}
