import Foundation
import Synchronization
import XCTest
@testable import HVHostIO
@testable import HVSupport

/// "hv.net-offload/1" in the switch: a TSO frame reaches a port that takes large frames
/// whole (checksums completed) and every other port as MSS-sized segments; checksum
/// insertion alone; bad metadata is refused before anything is sent.
final class NetOffloadTests: XCTestCase {
    private final class Inbox: Sendable {
        let frames = Mutex<[[UInt8]]>([])
    }

    private var sw: VirtualSwitch!

    override func setUp() { sw = VirtualSwitch(name: "offload") }

    override func tearDown() { for p in sw.ports { sw.removePort(p) } }

    private func port(_ last: UInt8) -> (VirtualPort, Inbox) {
        let inbox = Inbox()
        let p = sw.makePort(name: "p\(last)", mac: [0x00, 0x50, 0x56, 0, 0, last], receive: { f in
            inbox.frames.withLock { $0.append(Array(f)) }
            return .taken
        }, linkChanged: { _ in })
        return (p, inbox)
    }

    static func sum(_ b: ArraySlice<UInt8>) -> UInt32 {
        let a = Array(b)
        var s: UInt32 = 0
        var i = 0
        while i + 1 < a.count { s += UInt32(a[i]) << 8 | UInt32(a[i + 1]); i += 2 }
        if i < a.count { s += UInt32(a[i]) << 8 }
        while s >> 16 != 0 { s = (s & 0xFFFF) + (s >> 16) }
        return s
    }

    /// A valid packet: IPv4 header checksum and TCP checksum (with pseudo-header) check out.
    static func checksumsHold(_ f: [UInt8]) -> Bool {
        let tcpLength = f.count - 34
        let pseudo = Array(f[26..<34]) + [0, 6, UInt8(tcpLength >> 8), UInt8(tcpLength & 0xFF)]
        return sum(f[14..<34]) == 0xFFFF && sum((pseudo + f[34...])[...]) == 0xFFFF
            && Int(f[16]) << 8 | Int(f[17]) == f.count - 14
    }

    func testTSOIsWholeForLargeReceiversAndSegmentedForOthers() {
        let (sender, _) = port(1)
        let (large, inLarge) = port(2)
        let (_, inSmall) = port(3)
        large.takesLargeFrames = true
        let payload = (0..<4000).map { UInt8(truncatingIfNeeded: $0 &* 13) }
        var ip: [UInt8] = [0x45, 0, 0, 0, 0x10, 0x00, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]
        ip[2] = 0x0F; ip[3] = 0xC8   // the driver's value does not matter: the host sets it
        let tcp: [UInt8] = [0x04, 0xD2, 0x00, 0x50, 0, 0, 0, 100, 0, 0, 0, 0, 0x50, 0x99, 0xFF, 0xFF, 0, 0, 0, 0]
        var frame = [UInt8](repeating: 0xFF, count: 6) + [0x00, 0x50, 0x56, 0, 0, 1] + [0x08, 0x00] + ip + tcp + payload
        let offload = FrameOffload(flags: FrameOffload.segmentation, headerLength: 54, mss: 1460)
        frame.withUnsafeMutableBytes { f in
            XCTAssertTrue(offload.isValid(for: UnsafeRawBufferPointer(f)))
            XCTAssertEqual(sender.send(f, offload: offload), .sent)
        }
        XCTAssertTrue(sw.waitUntilDelivered())
        let whole = inLarge.frames.withLock { $0 }
        XCTAssertEqual(whole.count, 1)
        XCTAssertEqual(whole.first?.count, 54 + 4000)
        XCTAssertTrue(whole.first.map(Self.checksumsHold) ?? false)
        let segments = inSmall.frames.withLock { $0 }
        XCTAssertEqual(segments.map(\.count), [54 + 1460, 54 + 1460, 54 + 1080])
        var joined: [UInt8] = []
        for (i, s) in segments.enumerated() {
            XCTAssertTrue(Self.checksumsHold(s), "segment \(i)")
            XCTAssertEqual(UInt32(s[38]) << 24 | UInt32(s[39]) << 16 | UInt32(s[40]) << 8 | UInt32(s[41]), 100 + UInt32(1460 * i))
            XCTAssertEqual(Int(s[18]) << 8 | Int(s[19]), 0x1000 + i, "IPv4 ids count up")
            XCTAssertEqual(s[47], [0x90, 0x10, 0x19][i], "CWR first only, FIN/PSH last only")
            joined += s[54...]
        }
        XCTAssertEqual(joined, payload)
    }

    func testChecksumInsertionAndRefusals() {
        let (sender, _) = port(1)
        let (_, inbox) = port(2)
        // UDP: checksum from byte 34, stored at 40; the field holds the pseudo-header sum.
        var f = [UInt8](repeating: 0xFF, count: 6) + [0x00, 0x50, 0x56, 0, 0, 1] + [0x08, 0x00]
        f += [0x45, 0, 0, 30, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]
        let pseudo = Self.sum((Array(f[26..<34]) + [0, 17, 0, 10])[...])
        f += [0x13, 0x88, 0x13, 0x89, 0, 10, UInt8(pseudo >> 8), UInt8(pseudo & 0xFF), 0xAB, 0xCD]
        let csum = FrameOffload(flags: FrameOffload.checksum, checksumStart: 34, checksumOffset: 40)
        f.withUnsafeMutableBytes { XCTAssertEqual(sender.send($0, offload: csum), .sent) }
        XCTAssertTrue(sw.waitUntilDelivered())
        let got = inbox.frames.withLock { $0 }
        XCTAssertEqual(got.count, 1)
        if let g = got.first {
            XCTAssertEqual(Self.sum((Array(g[26..<34]) + [0, 17, 0, 10] + g[34...])[...]), 0xFFFF)
        }
        f.withUnsafeBytes { b in
            XCTAssertFalse(FrameOffload(flags: FrameOffload.checksum, checksumStart: 34, checksumOffset: 43).isValid(for: b))
            XCTAssertFalse(FrameOffload(flags: 0).isValid(for: b))
            XCTAssertFalse(FrameOffload(flags: 0x4, checksumStart: 34, checksumOffset: 40).isValid(for: b))
            XCTAssertFalse(FrameOffload(flags: FrameOffload.segmentation, headerLength: 42, mss: 100).isValid(for: b),
                           "UDP cannot be segmented")
        }
    }

    /// What the host's own stack sends through a veth into an AF_PACKET uplink still lacks
    /// its TCP/UDP checksum; the uplink finds the field from the headers and completes it.
    func testPendingChecksumOfAFrameFromTheHostStack() {
        var f = [UInt8](repeating: 0xFF, count: 6) + [0x00, 0x50, 0x56, 0, 0, 1] + [0x08, 0x00]
        f += [0x45, 0, 0, 30, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]
        let pseudo = Self.sum((Array(f[26..<34]) + [0, 17, 0, 10])[...])
        f += [0x13, 0x88, 0x13, 0x89, 0, 10, UInt8(pseudo >> 8), UInt8(pseudo & 0xFF), 0xAB, 0xCD]
        f.withUnsafeMutableBytes { b in
            let pending = FrameOffload.pendingChecksum(of: UnsafeRawBufferPointer(b))
            XCTAssertEqual(pending, FrameOffload(flags: FrameOffload.checksum, checksumStart: 34, checksumOffset: 40))
            pending?.completeWhole(b)
        }
        XCTAssertEqual(Self.sum((Array(f[26..<34]) + [0, 17, 0, 10] + f[34...])[...]), 0xFFFF)

        var fragment = f
        fragment[20] = 0x20                                 // more fragments: the checksum covers them all
        var icmp = f
        icmp[23] = 1
        for frame in [fragment, icmp, Array(f[..<20])] {
            frame.withUnsafeBytes { XCTAssertNil(FrameOffload.pendingChecksum(of: $0)) }
        }
    }
}
