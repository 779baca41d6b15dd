/// How the initiator's request says data moves (hv_scsi_request.direction).
package enum SCSIDataDirection: Sendable, Equatable {
    case none
    /// Target -> initiator memory (DATA IN, e.g. READ).
    case toInitiator
    /// Initiator memory -> target (DATA OUT, e.g. WRITE).
    case fromInitiator
    /// The adapter does not say; the CDB decides (BusLogic's "direction by command").
    case byCommand
}

/// SAM status codes.
package enum SCSIStatus {
    package static let good: UInt8 = 0x00
    package static let checkCondition: UInt8 = 0x02
}

/// How a command ended: what happened on the "wire", then the target's status, sense
/// and the bytes of the initiator's buffer not transferred.
package struct SCSIResponse: Equatable, Sendable, CustomStringConvertible {
    /// Values match HV_SCSI_HOST_*.
    package enum HostStatus: UInt8, Sendable {
        case ok = 0
        /// Selection timeout: no such target.
        case noTarget = 1
        /// A data segment is not guest RAM.
        case badDMA = 2
        /// Ended by abort or reset before it completed.
        case aborted = 3
        /// The request's direction contradicts the command's data phase.
        case dataDirection = 4
        /// The command wanted to move more bytes than the buffer holds.
        case dataOverrun = 5
    }

    package var hostStatus: HostStatus
    package var status: UInt8
    /// Fixed-format sense data; empty unless CHECK CONDITION.
    package var sense: [UInt8]
    package var residual: UInt64

    package init(hostStatus: HostStatus, status: UInt8 = SCSIStatus.good, sense: [UInt8] = [], residual: UInt64) {
        self.hostStatus = hostStatus
        self.status = status
        self.sense = sense
        self.residual = residual
    }

    package static func good(residual: Int) -> SCSIResponse {
        SCSIResponse(hostStatus: .ok, residual: UInt64(residual))
    }

    package static func check(_ sense: SCSISense, residual: Int) -> SCSIResponse {
        SCSIResponse(hostStatus: .ok, status: SCSIStatus.checkCondition, sense: sense.bytes, residual: UInt64(residual))
    }

    package static func host(_ status: HostStatus, residual: Int) -> SCSIResponse {
        SCSIResponse(hostStatus: status, residual: UInt64(residual))
    }

    package var description: String {
        guard hostStatus == .ok else { return "host \(hostStatus), residual \(residual)" }
        guard status == SCSIStatus.checkCondition, sense.count >= 14 else { return "status \(status), residual \(residual)" }
        return "CHECK CONDITION \(SCSISense(key: sense[2] & 0x0F, asc: sense[12], ascq: sense[13])), residual \(residual)"
    }
}
