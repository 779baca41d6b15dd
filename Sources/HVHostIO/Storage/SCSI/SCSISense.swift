/// A SCSI sense condition: sense key plus additional sense code and qualifier (SPC),
/// rendered as fixed-format (response code 70h) sense data.
package struct SCSISense: Equatable, Sendable, CustomStringConvertible {
    package var key: UInt8
    package var asc: UInt8
    package var ascq: UInt8
    /// The INFORMATION field (e.g. the first failing LBA of a medium error), if valid.
    package var information: UInt32?

    package init(key: UInt8, asc: UInt8, ascq: UInt8, information: UInt32? = nil) {
        self.key = key
        self.asc = asc
        self.ascq = ascq
        self.information = information
    }

    /// Bytes of fixed-format sense data this target returns.
    package static let fixedLength = 18

    /// Fixed-format sense data: response code 70h (current error), VALID when
    /// INFORMATION is set, additional sense length 10.
    package var bytes: [UInt8] {
        var b = [UInt8](repeating: 0, count: Self.fixedLength)
        b[0] = 0x70 | (information != nil ? 0x80 : 0)
        b[2] = key & 0x0F
        if let information { b.storeBigEndian(information, at: 3) }
        b[7] = UInt8(Self.fixedLength - 8)
        b[12] = asc
        b[13] = ascq
        return b
    }

    package var description: String {
        "sense " + [key, asc, ascq].map { ($0 < 16 ? "0" : "") + String($0, radix: 16, uppercase: true) }.joined(separator: "/")
    }

    // Sense keys (SPC-4 table 48).
    package static let keyNoSense: UInt8 = 0x0
    package static let keyNotReady: UInt8 = 0x2
    package static let keyMediumError: UInt8 = 0x3
    package static let keyIllegalRequest: UInt8 = 0x5
    package static let keyUnitAttention: UInt8 = 0x6
    package static let keyDataProtect: UInt8 = 0x7
    package static let keyMiscompare: UInt8 = 0xE

    package static let noSense = SCSISense(key: keyNoSense, asc: 0, ascq: 0)
    /// 02/04/02: a START STOP UNIT (start) is needed.
    package static let notReadyStartRequired = SCSISense(key: keyNotReady, asc: 0x04, ascq: 0x02)
    /// 02/3A/00: no medium in the drive (a CD-ROM with its tray open).
    package static let mediumNotPresent = SCSISense(key: keyNotReady, asc: 0x3A, ascq: 0x00)
    package static let writeError = SCSISense(key: keyMediumError, asc: 0x0C, ascq: 0x00)
    package static let unrecoveredReadError = SCSISense(key: keyMediumError, asc: 0x11, ascq: 0x00)
    package static let parameterListLengthError = SCSISense(key: keyIllegalRequest, asc: 0x1A, ascq: 0x00)
    package static let invalidOpcode = SCSISense(key: keyIllegalRequest, asc: 0x20, ascq: 0x00)
    package static let lbaOutOfRange = SCSISense(key: keyIllegalRequest, asc: 0x21, ascq: 0x00)
    package static let invalidFieldInCDB = SCSISense(key: keyIllegalRequest, asc: 0x24, ascq: 0x00)
    package static let logicalUnitNotSupported = SCSISense(key: keyIllegalRequest, asc: 0x25, ascq: 0x00)
    package static let invalidFieldInParameterList = SCSISense(key: keyIllegalRequest, asc: 0x26, ascq: 0x00)
    package static let savingParametersNotSupported = SCSISense(key: keyIllegalRequest, asc: 0x39, ascq: 0x00)
    /// 05/53/02: PREVENT ALLOW MEDIUM REMOVAL holds the medium in the drive.
    package static let mediumRemovalPrevented = SCSISense(key: keyIllegalRequest, asc: 0x53, ascq: 0x02)
    /// 06/28/00: not ready to ready change, the medium may have changed (a tray closed).
    package static let mediumMayHaveChanged = SCSISense(key: keyUnitAttention, asc: 0x28, ascq: 0x00)
    package static let powerOnReset = SCSISense(key: keyUnitAttention, asc: 0x29, ascq: 0x00)
    package static let writeProtected = SCSISense(key: keyDataProtect, asc: 0x27, ascq: 0x00)
    package static let miscompare = SCSISense(key: keyMiscompare, asc: 0x1D, ascq: 0x00)
}

extension Array where Element == UInt8 {
    /// Stores `value` big-endian (SCSI byte order) at `offset`.
    mutating func storeBigEndian<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        for i in 0..<MemoryLayout<T>.size {
            self[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * (MemoryLayout<T>.size - 1 - i)))
        }
    }

    /// Reads `count` bytes at `offset` as a big-endian unsigned number.
    func bigEndian(at offset: Int, count: Int) -> UInt64 {
        var v: UInt64 = 0
        for i in 0..<count { v = v << 8 | UInt64(self[offset + i]) }
        return v
    }
}
