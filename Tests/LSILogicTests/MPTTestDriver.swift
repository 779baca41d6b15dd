import PluginABI
import XCTest

/// A Fusion-MPT host driver in Swift, written from mptbase's and SeaBIOS's sequences,
/// that drives the plugin through a MockSCSIHost.
final class MPTTestDriver {
    static let requestFrames: UInt64 = 0x10000      // 128 frames of 128 bytes
    static let replyFrames: UInt64 = 0x20000        // 64 reply frames of 128 bytes
    static let senseBuffers: UInt64 = 0x30000
    static let chainBuffers: UInt64 = 0x40000
    static let data: UInt64 = 0x100000
    static let replyFrameSize = 128
    static let replyFrameCount = 64

    let h: MockSCSIHost
    var nextContext: UInt32 = 1

    init(_ host: MockSCSIHost) { h = host }

    var doorbell: UInt32 { h.readReg(0x00) }
    var intStatus: UInt32 { h.readReg(0x30) }
    var iocState: UInt32 { doorbell >> 28 }

    // MARK: handshake

    /// mpt_handshake_req_reply_wait: request dwords through the doorbell, each
    /// acknowledged, then the reply 16 bits at a time.
    func handshake(_ request: [UInt8], file: StaticString = #filePath, line: UInt = #line) -> [UInt8] {
        precondition(request.count % 4 == 0)
        h.writeReg(0x30, 0)
        h.writeReg(0x00, 0x42 << 24 | UInt32(request.count / 4) << 16)
        XCTAssertEqual(intStatus & 1, 1, "doorbell interrupt after the handshake function", file: file, line: line)
        XCTAssertNotEqual(doorbell & 0x0800_0000, 0, "doorbell active", file: file, line: line)
        h.writeReg(0x30, 0)
        for i in stride(from: 0, to: request.count, by: 4) {
            XCTAssertEqual(intStatus & 0x8000_0000, 0, "IOC took the previous dword", file: file, line: line)
            h.writeReg(0x00, request.le32(i))
        }
        var words: [UInt16] = []
        var wanted = 2
        while words.count < wanted {
            guard intStatus & 1 == 1 else {
                XCTFail("no doorbell interrupt for reply word \(words.count)", file: file, line: line)
                return [UInt8](repeating: 0xFF, count: 128)
            }
            words.append(UInt16(doorbell & 0xFFFF))
            h.writeReg(0x30, 0)
            if words.count == 2 { wanted = max(2, Int(words[1] & 0xFF) * 2) }
        }
        XCTAssertEqual(intStatus & 1, 1, "final doorbell interrupt", file: file, line: line)
        h.writeReg(0x30, 0)
        XCTAssertEqual(doorbell & 0x0800_0000, 0, "handshake over", file: file, line: line)
        var bytes = [UInt8](repeating: 0, count: words.count * 2)
        for (i, w) in words.enumerated() { bytes.put16(i * 2, w) }
        return bytes
    }

    static func header(function: UInt8, context: UInt32, dwords: Int) -> [UInt8] {
        var f = [UInt8](repeating: 0, count: dwords * 4)
        f[3] = function
        f.put32(8, context)
        return f
    }

    // MARK: bring-up

    func iocFacts() -> [UInt8] { handshake(Self.header(function: 0x03, context: 0x1111, dwords: 3)) }

    func portFacts(port: UInt8 = 0) -> [UInt8] {
        var f = Self.header(function: 0x05, context: 0x2222, dwords: 3)
        f[6] = port
        return handshake(f)
    }

    func iocInit(replyFrameSize: Int = MPTTestDriver.replyFrameSize) -> [UInt8] {
        var f = Self.header(function: 0x02, context: 0x3333, dwords: 6)
        f[0] = 4                                                      // WhoInit: host driver
        f[5] = 16
        f[6] = 1
        f.put16(0x0C, UInt16(replyFrameSize))
        return handshake(f)
    }

    func postReplyFrames(_ count: Int = MPTTestDriver.replyFrameCount) {
        for i in 0..<count { h.writeReg(0x44, UInt32(Self.replyFrames) + UInt32(i * Self.replyFrameSize)) }
    }

    /// mpt_diag_reset: a value that is no key (ends a sequence in progress, or clears
    /// DRWE), the five keys, then RESET_ADAPTER.
    func diagnosticReset() {
        h.writeReg(0x04, 0xFF)
        for k: UInt32 in [0x04, 0x0B, 0x02, 0x07, 0x0D] { h.writeReg(0x04, k) }
        h.writeReg(0x08, 0x04)
    }

    /// Message unit reset, facts, reply frames, IOC INIT, PORT ENABLE: OPERATIONAL.
    func bringUp(file: StaticString = #filePath, line: UInt = #line) {
        h.writeReg(0x00, 0x40 << 24)
        XCTAssertEqual(iocState, 1, "READY after message unit reset", file: file, line: line)
        _ = iocFacts()
        _ = portFacts()
        postReplyFrames()
        let r = iocInit()
        XCTAssertEqual(r.le16(14), 0, "IOC INIT status", file: file, line: line)
        XCTAssertEqual(iocState, 2, "OPERATIONAL", file: file, line: line)
        let pe = handshake(Self.header(function: 0x06, context: 0x4444, dwords: 3))
        XCTAssertEqual(pe.le16(14), 0, file: file, line: line)
        h.writeReg(0x34, 0)                                             // unmask both interrupts
    }

    // MARK: requests

    func frameAddress(_ index: Int) -> UInt64 { Self.requestFrames + UInt64(index % 128) * 128 }

    /// Writes `frame` to request frame `index` and posts it.
    func post(_ frame: [UInt8], index: Int = 0) {
        h.write(frame, at: frameAddress(index))
        h.writeReg(0x40, UInt32(frameAddress(index)))
    }

    /// Pops every posted reply.
    func popReplies() -> [UInt32] {
        var out: [UInt32] = []
        while true {
            let v = h.readReg(0x44)
            if v == 0xFFFF_FFFF { return out }
            out.append(v)
        }
    }

    /// The bytes of an address reply.
    func replyFrame(_ value: UInt32, dwords: Int = 9) -> [UInt8] {
        precondition(value & 0x8000_0000 != 0, "not an address reply: \(String(value, radix: 16))")
        return h.read(UInt64(value << 1), dwords * 4)
    }

    /// Gives an address reply's frame back to the IOC.
    func recycle(_ value: UInt32) { h.writeReg(0x44, value << 1) }

    enum Element {
        case simple(UInt64, Int, last: Bool = false, eol: Bool = false, wide: Bool = false)
        case chain(UInt64, Int, nextOffset: Int, wide: Bool = false)
        case raw(UInt32, UInt32)

        var bytes: [UInt8] {
            var b: [UInt8]
            switch self {
            case .simple(let a, let len, let last, let eol, let wide):
                var flags: UInt32 = 0x10
                if last { flags |= 0x80 }
                if eol { flags |= 0x41 }
                if wide { flags |= 0x02 }
                b = [UInt8](repeating: 0, count: wide ? 12 : 8)
                b.put32(0, flags << 24 | UInt32(len))
                b.put32(4, UInt32(truncatingIfNeeded: a))
                if wide { b.put32(8, UInt32(a >> 32)) }
            case .chain(let a, let len, let next, let wide):
                b = [UInt8](repeating: 0, count: wide ? 12 : 8)
                b.put32(0, (0x30 | (wide ? 0x02 : 0)) << 24 | UInt32(next) << 16 | UInt32(len))
                b.put32(4, UInt32(truncatingIfNeeded: a))
                if wide { b.put32(8, UInt32(a >> 32)) }
            case .raw(let fl, let a):
                b = [UInt8](repeating: 0, count: 8)
                b.put32(0, fl)
                b.put32(4, a)
            }
            return b
        }
    }

    /// A SCSI IO frame: header, CDB, direction (0 none, 1 write, 2 read), SGL at 48.
    func scsiIO(target: UInt8, cdb: [UInt8], direction: UInt32, dataLength: Int, sgl: [Element] = [],
                chainOffset: UInt8 = 0, context: UInt32? = nil, bus: UInt8 = 0, lun: UInt8 = 0,
                senseIndex: Int = 0) -> [UInt8] {
        var f = [UInt8](repeating: 0, count: 128)
        f[0] = target
        f[1] = bus
        f[2] = chainOffset
        f[3] = 0x00
        f[4] = UInt8(cdb.count)
        f[5] = 32
        let ctx = context ?? { nextContext += 1; return nextContext }()
        f.put32(8, ctx)
        f[13] = lun
        f.put32(20, direction << 24)
        for (i, b) in cdb.enumerated() { f[24 + i] = b }
        f.put32(40, UInt32(dataLength))
        f.put32(44, UInt32(Self.senseBuffers) + UInt32(senseIndex * 32))
        var off = 48
        for e in sgl {
            let b = e.bytes
            for (i, x) in b.enumerated() where off + i < 128 { f[off + i] = x }
            off += b.count
        }
        return f
    }

    static func rw10(write: Bool, lba: Int, blocks: Int) -> [UInt8] {
        [write ? 0x2A : 0x28, 0, UInt8(lba >> 24 & 0xFF), UInt8(lba >> 16 & 0xFF), UInt8(lba >> 8 & 0xFF), UInt8(lba & 0xFF),
         0, UInt8(blocks >> 8), UInt8(blocks & 0xFF), 0]
    }
}

extension Array where Element == UInt8 {
    func le16(_ at: Int) -> UInt16 { UInt16(self[at]) | UInt16(self[at + 1]) << 8 }
    func le32(_ at: Int) -> UInt32 {
        UInt32(self[at]) | UInt32(self[at + 1]) << 8 | UInt32(self[at + 2]) << 16 | UInt32(self[at + 3]) << 24
    }
    mutating func put16(_ at: Int, _ v: UInt16) { self[at] = UInt8(v & 0xFF); self[at + 1] = UInt8(v >> 8) }
    mutating func put32(_ at: Int, _ v: UInt32) { for i in 0..<4 { self[at + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(i))) } }
}
