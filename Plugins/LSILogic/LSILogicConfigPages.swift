// CONFIG requests: the configuration pages mptbase and mptspi read (IO unit 0-2, IOC 0-4,
// manufacturing 0-1, SCSI port 0-2, SCSI device 0-3). Pages marked changeable keep what
// the host writes until a reset; the rest refuse writes.

extension LSILogicDevice {
    enum PageType {
        static let ioUnit: UInt8 = 0x00
        static let ioc: UInt8 = 0x01
        static let scsiPort: UInt8 = 0x03
        static let scsiDevice: UInt8 = 0x04
        static let manufacturing: UInt8 = 0x09
        static let extended: UInt8 = 0x0F
    }

    enum ConfigAction {
        static let header: UInt8 = 0x00
        static let readCurrent: UInt8 = 0x01
        static let writeCurrent: UInt8 = 0x02
        static let defaults: UInt8 = 0x03
        static let writeNVRAM: UInt8 = 0x04
        static let readDefault: UInt8 = 0x05
        static let readNVRAM: UInt8 = 0x06
    }

    /// A configuration page: its header fields and its default contents (header included).
    struct ConfigPage {
        var version: UInt8
        var changeable: Bool
        var bytes: [UInt8]
    }

    /// The default page, or nil when this IOC has no such page at `address`.
    func defaultPage(type: UInt8, number: UInt8, address: UInt32) -> ConfigPage? {
        func page(_ version: UInt8, dwords: Int, changeable: Bool = false, _ fill: (inout [UInt8]) -> Void = { _ in }) -> ConfigPage {
            var b = [UInt8](repeating: 0, count: dwords * 4)
            fill(&b)
            return ConfigPage(version: version, changeable: changeable, bytes: b)
        }
        switch (type, number) {
        case (PageType.ioUnit, 0):
            return page(0, dwords: 3) { $0.put32(4, 0x5349_4C00); $0.put32(8, 0x1030_0001) }   // UniqueValue
        case (PageType.ioUnit, 1):
            return page(1, dwords: 2, changeable: true)
        case (PageType.ioUnit, 2):
            return page(2, dwords: 7, changeable: true) { $0.put32(8, 0x0106_0000) }   // BiosVersion
        case (PageType.ioc, 0):
            return page(1, dwords: 7) {
                $0.put16(12, 0x1000); $0.put16(14, 0x0030); $0[16] = 0x08
                $0.put32(20, 0x01_00_00); $0.put16(24, 0x1000); $0.put16(26, 0x8000)
            }
        case (PageType.ioc, 1):
            return page(3, dwords: 4, changeable: true)
        case (PageType.ioc, 2):
            return page(3, dwords: 3)                       // no RAID volumes
        case (PageType.ioc, 3):
            return page(0, dwords: 2)                       // no physical disks
        case (PageType.ioc, 4):
            return page(0, dwords: 2)                       // no SCSI enclosure processors
        case (PageType.manufacturing, 0):
            return page(0, dwords: 19) {
                $0.putASCII(4, "53C1030", width: 16)
                $0.putASCII(20, "C0", width: 8)
                $0.putASCII(28, "LSI53C1030", width: 16)
                $0.putASCII(44, "hvproject", width: 16)
                $0.putASCII(60, "0000000001", width: 16)
            }
        case (PageType.manufacturing, 1):
            return page(0, dwords: 65)
        case (PageType.scsiPort, 0...2) where address == 0:
            switch number {
            case 0:
                // IU, DT, QAS; minimum period 0x08 (Ultra320); maximum offset 127; wide.
                return page(2, dwords: 3) { $0.put32(4, 0x2000_0000 | 0x7F << 16 | 0x08 << 8 | 0x07); $0.put32(8, 0x3) }
            case 1:
                let id = UInt32(Self.initiatorID)
                return page(3, dwords: 4, changeable: true) { $0.put32(4, 1 << (16 + id) | id) }
            default:
                return page(2, dwords: 19, changeable: true) {
                    $0.put32(8, UInt32(Self.initiatorID))
                    for t in 0..<16 { $0[12 + 4 * t + 1] = 0x08 }   // SyncFactor per device
                }
            }
        case (PageType.scsiDevice, 0...3):
            let target = address & 0xFF, busNumber = (address >> 8) & 0xFF
            guard target < UInt32(Self.maxTargets), busNumber == 0 else { return nil }
            switch number {
            case 0: return page(4, dwords: 3) { $0.put32(4, 0x2000_0000 | 0x7F << 16 | 0x08 << 8 | 0x07) }
            case 1: return page(5, dwords: 4, changeable: true) { $0.put32(4, 0x2000_0000 | 0x7F << 16 | 0x08 << 8 | 0x07) }
            case 2: return page(1, dwords: 4, changeable: true)
            default: return page(0, dwords: 3)
            }
        default:
            return nil
        }
    }

    static func pageKey(type: UInt8, number: UInt8, address: UInt32) -> UInt64 {
        UInt64(type) << 40 | UInt64(number) << 32 | UInt64(address)
    }

    /// Handles a CONFIG request and returns its reply (6 dwords).
    func config(_ request: [UInt8]) -> [UInt8] {
        let action = request[0]
        let version = request[0x14], length = request[0x15], number = request[0x16]
        let type = request[0x17] & 0x0F
        let address = request.le32(0x18)
        var r = defaultReply(request, status: MPI.IOCStatus.success, dwords: 6)
        r[0] = action
        r[0x14] = version
        r[0x15] = length
        r[0x16] = number
        r[0x17] = request[0x17]
        func status(_ s: UInt16) -> [UInt8] { r.put16(MPI.Header.iocStatus, s); return r }

        guard type != PageType.extended else { return status(MPI.IOCStatus.configInvalidType) }
        guard let page = defaultPage(type: type, number: number, address: address) else {
            return status(MPI.IOCStatus.configInvalidPage)
        }
        let key = Self.pageKey(type: type, number: number, address: address)
        var current = pageOverrides[key] ?? page.bytes
        let dwords = page.bytes.count / 4
        // The header: version, length, number, type with its attribute.
        r[0x14] = page.version
        r[0x15] = UInt8(dwords)
        r[0x16] = number
        r[0x17] = type | (page.changeable ? 0x10 : 0x00)
        current[0] = page.version
        current[1] = UInt8(dwords)
        current[2] = number
        current[3] = r[0x17]

        switch action {
        case ConfigAction.header:
            return r
        case ConfigAction.defaults:
            pageOverrides[key] = nil
            return r
        case ConfigAction.readCurrent, ConfigAction.readDefault, ConfigAction.readNVRAM:
            let bytes = action == ConfigAction.readCurrent ? current : {
                var b = page.bytes
                for i in 0..<4 { b[i] = current[i] }
                return b
            }()
            guard let (buffer, capacity) = configBuffer(request) else { return status(MPI.IOCStatus.invalidSGL) }
            refreshDMA()
            guard dmaWrite(buffer, bytes, min(capacity, bytes.count)) else { return status(MPI.IOCStatus.invalidSGL) }
            return r
        case ConfigAction.writeCurrent, ConfigAction.writeNVRAM:
            guard page.changeable else { return status(MPI.IOCStatus.configInvalidAction) }
            guard let (buffer, capacity) = configBuffer(request) else { return status(MPI.IOCStatus.invalidSGL) }
            refreshDMA()
            let count = min(capacity, current.count)
            guard count >= 4, let written = dmaRead(buffer, count) else { return status(MPI.IOCStatus.invalidSGL) }
            // The header stays the IOC's; the rest of the page is what the host wrote.
            for i in 4..<count { current[i] = written[i] }
            pageOverrides[key] = current
            return r
        default:
            return status(MPI.IOCStatus.configInvalidAction)
        }
    }

    /// The page buffer's address and length: one simple element at byte 0x1C.
    func configBuffer(_ request: [UInt8]) -> (UInt64, Int)? {
        let flagsLength = request.le32(0x1C)
        guard flagsLength & MPI.SGE.typeMask == MPI.SGE.typeSimple else { return nil }
        let wide = flagsLength & MPI.SGE.address64 != 0
        guard request.count >= (wide ? 0x28 : 0x24) else { return nil }
        let high = wide ? UInt64(request.le32(0x24)) << 32 : 0
        let length = Int(flagsLength & MPI.SGE.lengthMask)
        guard length > 0 else { return nil }
        return (high | UInt64(request.le32(0x20)), length)
    }
}
