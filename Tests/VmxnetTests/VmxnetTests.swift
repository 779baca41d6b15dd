import Foundation
import Logging
import PluginABI
import XCTest
@testable import HVDevices
@testable import HVHostIO
@testable import HVMemory
@testable import HVPluginHost
@testable import HVSupport

/// The Vmxnet NIC plugin (VMXNET3, Plugins/Vmxnet), loaded as `libVmxnet.so` from the build
/// directory and driven in-process the way Linux `vmxnet3` drives it: BAR1 negotiation and
/// commands, DriverShared and the queue descriptor table in guest memory, rings with
/// generation bits, INTx (MSI-X is not enabled by this rig), a peer port on the switch.
final class VmxnetTests: XCTestCase {
    static let pluginPath: String = {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? ""
        return URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("libVmxnet.so").path
    }()

    static let catalog = PluginCatalog.load(searchPath: PluginSearchPath(directories: [pluginPath]))

    static func model() throws -> UnsafePointer<hv_device_model> {
        guard FileManager.default.fileExists(atPath: pluginPath) else {
            throw PluginDeviceError(message: "\(pluginPath) is not built (swift build --product Vmxnet)")
        }
        return try catalog.deviceModel(named: "vmxnet").model
    }

    var switches: SwitchRegistry!
    var rigs: [VmxnetRig] = []

    override func setUpWithError() throws { switches = SwitchRegistry() }

    override func tearDown() {
        for r in rigs { r.tearDown() }
        rigs = []
        for sw in switches.switches { for p in sw.ports { sw.removePort(p) } }
    }

    func makeRig(mac: String = "00:50:56:00:00:01", quiet: Bool = false) throws -> VmxnetRig {
        let rig = try VmxnetRig(model: Self.model(), switches: switches, mac: mac, quiet: quiet)
        rigs.append(rig)
        return rig
    }

    func makePeer(mac: [UInt8] = [0x00, 0x50, 0x56, 0x00, 0x00, 0x99]) -> VmxnetTestPeer {
        VmxnetTestPeer(switch: switches.virtualSwitch(named: "testnet"), mac: mac)
    }

    static func frame(to dst: [UInt8], from src: [UInt8], length: Int, seed: UInt8 = 0) -> [UInt8] {
        var f = dst + src + [0x08, 0x00]
        while f.count < length { f.append(UInt8(truncatingIfNeeded: f.count) &+ seed) }
        return f
    }

    // MARK: identity and probe

    func testPluginDescriptorPCIIdentityAndProbe() throws {
        let info = try Self.catalog.deviceModelInfo(named: "vmxnet")
        XCTAssertEqual(info.plugin.id, "org.hvproject.vmxnet")
        XCTAssertEqual(info.model.kind, HV_DEVICE_KIND_NIC)
        let rig = try makeRig(mac: "00:50:56:12:34:56")
        let f = try XCTUnwrap(rig.device.function)
        XCTAssertEqual([f.identity.vendorID, f.identity.deviceID], [0x15AD, 0x07B0])
        XCTAssertEqual(f.identity.classCode, 0x02_00_00)
        XCTAssertEqual(f.bars.map(\.size), [0x1000, 0x1000, 0x2000])
        XCTAssertNotNil(f.msix)
        XCTAssertNil(f.unsavedHostState, "suspend carries everything this function has")
        // VRRS/UVRS offer revision 1 and UPT 1; MAC through MACL/MACH.
        XCTAssertEqual(rig.vd(0x00), 1)
        XCTAssertEqual(rig.vd(0x08), 1)
        rig.setVD(0x00, 1)
        rig.setVD(0x08, 1)
        XCTAssertEqual(rig.vd(0x28), 0x1256_5000)
        XCTAssertEqual(rig.vd(0x30), 0x5634)
        XCTAssertEqual(rig.command(0xF00D_0002), 10000 << 16 | 1, "GET_LINK: 10 Gbps, up")
        XCTAssertEqual(rig.command(0xF00D_0003), 0x1256_5000, "GET_PERM_MAC_LO")
        XCTAssertEqual(rig.command(0xF00D_0008), 0, "GET_CONF_INTR: auto type, auto mask")
        // A new MAC through MACL/MACH; the permanent one stays.
        rig.setVD(0x28, 0x0403_0201)
        XCTAssertEqual(rig.vd(0x28), 0x0403_0201)
        XCTAssertEqual(rig.command(0xF00D_0003), 0x1256_5000)
    }

    // MARK: data path

    func testTransmitReceiveCompletionsAndINTx() throws {
        let rig = try makeRig()
        let peer = makePeer()
        XCTAssertEqual(rig.activate(), 0)
        rig.setPT(0x000, 0)   // unmask vector 0

        // Transmit: two frames, the second in two descriptors.
        let f1 = Self.frame(to: peer.mac, from: rig.mac, length: 60)
        let f2 = Self.frame(to: peer.mac, from: rig.mac, length: 1514, seed: 7)
        rig.putTx([f1])
        rig.putTx([Array(f2[0..<100]), Array(f2[100...])])
        rig.setPT(0x600, UInt64(rig.txFill))
        XCTAssertEqual(peer.frames, [f1, f2])
        let comp = rig.txCompletions()
        XCTAssertEqual(comp, [0, 2], "one completion per frame, naming its EOP descriptor")
        XCTAssertTrue(rig.intx, "the completion interrupt (INTx)")
        XCTAssertEqual(rig.vd(0x38), 1, "ICR: ours")
        XCTAssertFalse(rig.intx)
        XCTAssertEqual(rig.vd(0x38), 0)
        XCTAssertEqual(rig.command(0xF00D_0001), 0)   // GET_STATS: counters land in the queue descriptors
        XCTAssertEqual(rig.get64(VmxnetRig.qd + 88 + 16), 2, "tx ucastPktsTxOK")
        XCTAssertEqual(rig.get64(VmxnetRig.qd + 88 + 24), 60 + 1514, "tx ucastBytesTxOK")

        // Receive: a frame into ring 1, a jumbo one spilling into ring 2.
        rig.postRx(ring: 0, count: 8)
        rig.postRx(ring: 1, count: 8)
        rig.setPT(0x000, 0)
        let r1 = Self.frame(to: rig.mac, from: peer.mac, length: 300)
        XCTAssertEqual(peer.send(r1), .sent)
        var got = rig.rxFrames()
        XCTAssertEqual(got.map(\.bytes), [r1])
        XCTAssertEqual(got.first?.rqIDs, [0])
        XCTAssertTrue(rig.intx)
        _ = rig.vd(0x38)
        rig.setMTU(9000)
        XCTAssertEqual(rig.command(0xCAFE_0000), 0)   // re-activate with MTU 9000: rings restart
        rig.resetIndices()
        rig.postRx(ring: 0, count: 8)
        rig.postRx(ring: 1, count: 8)
        let jumbo = Self.frame(to: rig.mac, from: peer.mac, length: 9014, seed: 3)
        XCTAssertEqual(peer.send(jumbo), .sent)
        got = rig.rxFrames()
        XCTAssertEqual(got.map(\.bytes), [jumbo])
        XCTAssertEqual(got.first?.rqIDs, [0, 1, 1, 1, 1], "HEAD in ring 1 (rqID 0), BODY buffers in ring 2 (rqID 0 + numRx)")

        // Filters: not our unicast address, not received.
        XCTAssertEqual(peer.send(Self.frame(to: [0x00, 0x50, 0x56, 0x77, 0x77, 0x77], from: peer.mac, length: 60)), .sent)
        XCTAssertEqual(rig.rxFrames().count, 0)
        XCTAssertEqual(rig.command(0xF00D_0001), 0)
        XCTAssertEqual(rig.get64(VmxnetRig.qd + 256 + 88 + 16), 1, "rx ucastPktsRxOK (since re-activation)")
    }

    func testNoBufferHoldsTheFrameUntilTheDriverPostsOne() throws {
        let rig = try makeRig()
        let peer = makePeer()
        XCTAssertEqual(rig.activate(), 0)
        let r1 = Self.frame(to: rig.mac, from: peer.mac, length: 100)
        _ = peer.port.send(r1)
        // Held by the switch (back-pressure): nothing completes, updateRxProd asks for RXPROD.
        let deadline = Date().addingTimeInterval(5)
        while rig.get8(VmxnetRig.qd + 256) == 0 && Date() < deadline { usleep(1000) }
        XCTAssertEqual(rig.get8(VmxnetRig.qd + 256), 1, "updateRxProd")
        XCTAssertEqual(rig.rxFrames().count, 0)
        rig.postRx(ring: 0, count: 4)
        rig.setPT(0x800, 4)   // RXPROD
        XCTAssertTrue(peer.settle())
        XCTAssertEqual(rig.rxFrames().map(\.bytes), [r1], "delivered once the driver posted a buffer")
    }

    func testChecksumOffloadAndTSO() throws {
        let rig = try makeRig()
        let peer = makePeer()
        XCTAssertEqual(rig.activate(), 0)
        // An IPv4/TCP frame: 14 + 20 + 20 header bytes, 2500 payload bytes, MSS 1000.
        var f = peer.mac + rig.mac + [0x08, 0x00]
        let payload = (0..<2500).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        var ip: [UInt8] = [0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]
        let total = 20 + 20 + payload.count
        ip[2] = UInt8(total >> 8); ip[3] = UInt8(total & 0xFF)
        var tcp: [UInt8] = [0x30, 0x39, 0x00, 0x50, 0, 0, 0x10, 0, 0, 0, 0, 0, 0x50, 0x19, 0xFF, 0xFF, 0, 0, 0, 0]
        f += ip + tcp + payload
        rig.putTx([f], offload: (mode: 3, hlen: 54, msscof: 1000))
        rig.setPT(0x600, UInt64(rig.txFill))
        let segs = peer.frames
        XCTAssertEqual(segs.count, 3)
        var seq: UInt32 = 4096   // the frame's sequence number
        for (i, s) in segs.enumerated() {
            let len = min(1000, 2500 - 1000 * i)
            XCTAssertEqual(s.count, 54 + len)
            XCTAssertEqual(Array(s[54...]), Array(payload[1000 * i..<1000 * i + len]))
            XCTAssertEqual(Int(s[16]) << 8 | Int(s[17]), 40 + len, "IP total length")
            XCTAssertEqual(VmxnetTests.checksum(Array(s[14..<34])), 0, "IP header checksum")
            let segSeq = UInt32(s[38]) << 24 | UInt32(s[39]) << 16 | UInt32(s[40]) << 8 | UInt32(s[41])
            XCTAssertEqual(segSeq, seq)
            seq += UInt32(len)
            XCTAssertEqual(s[47] & 0x09, i == 2 ? 0x09 : 0, "FIN and PSH only on the last segment")
            let pseudo = Array(s[26..<34]) + [0, 6, UInt8((20 + len) >> 8), UInt8((20 + len) & 0xFF)]
            XCTAssertEqual(VmxnetTests.checksum(pseudo + Array(s[34...])), 0, "TCP checksum")
        }
        XCTAssertEqual(rig.command(0xF00D_0001), 0)
        XCTAssertEqual(rig.get64(VmxnetRig.qd + 88), 1, "tx TSOPktsTxOK")
        // A receiver that takes large frames (LRO) gets it whole, checksums completed.
        peer.port.takesLargeFrames = true
        rig.putTx([f], offload: (mode: 3, hlen: 54, msscof: 1000))
        rig.setPT(0x600, UInt64(rig.txFill))
        let whole = try XCTUnwrap(peer.frames.last)
        XCTAssertEqual(whole.count, f.count)
        XCTAssertEqual(Array(whole[54...]), payload)
        XCTAssertEqual(VmxnetTests.checksum(Array(whole[14..<34])), 0)
        let wholePseudo = Array(whole[26..<34]) + [0, 6, UInt8((20 + 2500) >> 8), UInt8((20 + 2500) & 0xFF)]
        XCTAssertEqual(VmxnetTests.checksum(wholePseudo + Array(whole[34...])), 0)
        peer.port.takesLargeFrames = false

        // Checksum offload on a UDP frame: the driver leaves the pseudo-header sum.
        var u = peer.mac + rig.mac + [0x08, 0x00]
        var uip: [UInt8] = [0x45, 0, 0, 48, 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]
        let ipSum = ~VmxnetTests.sum(uip) & 0xFFFF
        uip[10] = UInt8(ipSum >> 8); uip[11] = UInt8(ipSum & 0xFF)
        let data = (0..<20).map { UInt8($0) }
        let pseudoSum = VmxnetTests.sum(Array(uip[12..<20]) + [0, 17, 0, 28])
        u += uip + [0x13, 0x88, 0x13, 0x89, 0, 28, UInt8(pseudoSum >> 8), UInt8(pseudoSum & 0xFF)] + data
        rig.putTx([u], offload: (mode: 2, hlen: 34, msscof: 40))
        rig.setPT(0x600, UInt64(rig.txFill))
        let sent = try XCTUnwrap(peer.frames.last)
        let check = Array(sent[26..<34]) + [0, 17, 0, 28] + Array(sent[34...])
        XCTAssertEqual(VmxnetTests.checksum(check), 0, "UDP checksum inserted")
    }

    /// Two Vmxnet NICs: the receiver's driver enables LRO (UPT1_F_LRO), so the sender's
    /// TSO frame reaches it whole, above its MTU, in a HEAD and ring-2 BODY buffers.
    func testTSOFrameReachesAnLROReceiverWhole() throws {
        let tx = try makeRig()
        let rx = try makeRig(mac: "00:50:56:00:00:02")
        XCTAssertEqual(tx.activate(), 0)
        XCTAssertEqual(rx.activate(features: 0x8), 0)
        rx.postRx(ring: 0, count: 4)
        rx.postRx(ring: 1, count: 4)
        let payload = (0..<3000).map { UInt8(truncatingIfNeeded: $0 &* 3) }
        var f = rx.mac + tx.mac + [0x08, 0x00]
        f += [0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]
        f += [0x30, 0x39, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x10, 0xFF, 0xFF, 0, 0, 0, 0] + payload
        tx.putTx([f], offload: (mode: 3, hlen: 54, msscof: 1448))
        tx.setPT(0x600, UInt64(tx.txFill))
        XCTAssertTrue(switches.virtualSwitch(named: "testnet").waitUntilDelivered())
        let got = rx.rxFrames()
        XCTAssertEqual(got.count, 1)
        XCTAssertEqual(got.first?.bytes.count, f.count)
        XCTAssertEqual(got.first.map { Array($0.bytes[54...]) }, payload)
        XCTAssertEqual(got.first?.rqIDs, [0, 1], "HEAD buffer, then a ring-2 BODY buffer")
    }

    static func sum(_ b: [UInt8]) -> UInt32 {
        var s: UInt32 = 0
        var i = 0
        while i + 1 < b.count { s += UInt32(b[i]) << 8 | UInt32(b[i + 1]); i += 2 }
        if i < b.count { s += UInt32(b[i]) << 8 }
        while s >> 16 != 0 { s = (s & 0xFFFF) + (s >> 16) }
        return s
    }

    static func checksum(_ b: [UInt8]) -> UInt32 { ~sum(b) & 0xFFFF }

    /// The port's link goes down and up: each change sets ECR.LINK in DriverShared and
    /// raises the event interrupt; GET_LINK follows; while down nothing is received.
    func testLinkEventsRaiseTheEventInterrupt() throws {
        let rig = try makeRig()
        let peer = makePeer()
        XCTAssertEqual(rig.activate(), 0)
        rig.setPT(0x000, 0)
        let port = try XCTUnwrap(switches.virtualSwitch(named: "testnet").ports.first { $0.name == "vm-00:50:56:00:00:01.ethernet0" })
        port.setLink(up: false)
        XCTAssertEqual(rig.get32(VmxnetRig.ds + 696) & 4, 4, "ECR: LINK")
        XCTAssertTrue(rig.intx, "the event interrupt")
        XCTAssertEqual(rig.command(0xF00D_0002), 0, "GET_LINK: down")
        XCTAssertEqual(rig.vd(0x38), 1)
        rig.setVD(0x40, 4)
        XCTAssertEqual(rig.get32(VmxnetRig.ds + 696), 0)
        rig.setPT(0x000, 0)
        port.setLink(up: true)
        XCTAssertEqual(rig.get32(VmxnetRig.ds + 696) & 4, 4)
        XCTAssertTrue(rig.intx)
        XCTAssertEqual(rig.command(0xF00D_0002), 10000 << 16 | 1)
        rig.postRx(ring: 0, count: 2)
        let r = Self.frame(to: rig.mac, from: peer.mac, length: 64)
        XCTAssertEqual(peer.send(r), .sent)
        XCTAssertEqual(rig.rxFrames().map(\.bytes), [r])
    }

    // MARK: hostile guests

    func testBadConfigurationsFailActivation() throws {
        let rig = try makeRig(quiet: true)
        func expectFailure(_ why: String, _ mutate: () -> Void) {
            rig.writeConfig()
            mutate()
            XCTAssertNotEqual(rig.command(0xCAFE_0000), 0, why)
            // Inactive: a TXPROD does nothing, GET_LINK still answers.
            rig.setPT(0x600, 1)
            XCTAssertEqual(rig.command(0xF00D_0002), 10000 << 16 | 1)
        }
        expectFailure("bad magic") { rig.put32(0, at: VmxnetRig.ds) }
        expectFailure("no queues") { rig.put8(0, at: VmxnetRig.ds + 62) }
        expectFailure("17 rx queues") { rig.put8(17, at: VmxnetRig.ds + 63) }
        expectFailure("queue descriptor table outside RAM") { rig.put64(0xFFFF_0000_0000, at: VmxnetRig.ds + 40) }
        expectFailure("short queue descriptor table") { rig.put32(100, at: VmxnetRig.ds + 52) }
        expectFailure("tx ring size 33") { rig.put32(33, at: VmxnetRig.qd + 56) }
        expectFailure("tx ring size 8192") { rig.put32(8192, at: VmxnetRig.qd + 56) }
        expectFailure("rx ring outside RAM") { rig.put64(UInt64(VmxnetRig.memorySize) - 64, at: VmxnetRig.qd + 256 + 16) }
        expectFailure("MTU 9001") { rig.put32(9001, at: VmxnetRig.ds + 56) }
        expectFailure("interrupt index beyond numIntrs") { rig.put8(3, at: VmxnetRig.qd + 72) }
        expectFailure("DriverShared outside RAM") { rig.setVD(0x10, 0xFFFF_F000); rig.setVD(0x18, 0xFF) }
        rig.setVD(0x18, 0)
        XCTAssertEqual(rig.activate(), 0, "a sane configuration still activates")
    }

    func testMalformedTransmitChainsStopTheQueueWithAnError() throws {
        let rig = try makeRig(quiet: true)
        let peer = makePeer()
        XCTAssertEqual(rig.activate(), 0)
        // A frame whose second descriptor the driver never handed over (wrong generation).
        let f = Self.frame(to: peer.mac, from: rig.mac, length: 200)
        rig.putTx([Array(f[0..<100]), Array(f[100...])])
        let second = VmxnetRig.txRing + 16
        rig.put32(rig.get32(second + 8) ^ 1 << 14, at: second + 8)
        rig.setPT(0x600, 2)
        XCTAssertEqual(peer.count, 0)
        XCTAssertEqual(rig.command(0xF00D_0000), 0)   // GET_QUEUE_STATUS
        XCTAssertEqual(rig.get8(VmxnetRig.qd + 80), 1, "tx queue 0 stopped")
        XCTAssertEqual(rig.get32(VmxnetRig.qd + 84), 0x8000_0000, "VMXNET3_ERR_NOEOP")
        XCTAssertEqual(rig.get32(VmxnetRig.ds + 696) & 2, 2, "ECR: TQERR")
        rig.setVD(0x40, 2)
        XCTAssertEqual(rig.get32(VmxnetRig.ds + 696) & 2, 0, "acknowledged through BAR1 ECR")
        // A chain that never ends: every descriptor of the ring owned, none with EOP. The
        // walk ends where the generation flips (the ring's end), with the same error.
        XCTAssertEqual(rig.activate(), 0)
        for i in 0..<32 { rig.putTx([Array(f[0..<60])], eop: false, at: i) }
        rig.setPT(0x600, 0)
        XCTAssertEqual(peer.count, 0)
        XCTAssertEqual(rig.command(0xF00D_0000), 0)
        XCTAssertEqual(rig.get32(VmxnetRig.qd + 84), 0x8000_0000, "VMXNET3_ERR_NOEOP")
        XCTAssertEqual(rig.command(0xF00D_0002), 10000 << 16 | 1, "the device still answers")
    }

    func testFuzzOneMillionOperations() throws {
        let rig = try makeRig(quiet: true)
        let peer = makePeer(mac: [0x02, 0, 0, 0, 0, 1])
        peer.recording = false
        var rng = VmxnetSplitMix(seed: 0x5EED_0F_7AB3_0003)
        let ram = try XCTUnwrap(rig.rig.memory.pointer(at: 0, length: VmxnetRig.memorySize))
        var pool = [UInt8](repeating: 0, count: 1 << 16)
        for i in 0..<pool.count { pool[i] = UInt8(truncatingIfNeeded: rng.next()) }
        let commands: [UInt32] = (0..<0x12).map { 0xCAFE_0000 + $0 } + (0..<0xD).map { 0xF00D_0000 + $0 }
        var frame = [UInt8](repeating: 0, count: 9200)
        let operations = ProcessInfo.processInfo.environment["HV_SLOW_TESTS"] == "1" ? 4_000_000 : 1_000_000
        XCTAssertEqual(rig.activate(), 0)
        let start = Date()
        var worst: UInt64 = 0
        for _ in 0..<operations {
            let t0 = DispatchTime.now().uptimeNanoseconds
            let v = rng.next()
            switch Int(v % 100) {
            case 0..<15:
                // Garbage over DriverShared, the queue descriptors and the rings.
                let at = 0x1000 + Int((v >> 8) % 0x6000)
                let src = Int((v >> 32) % UInt64(pool.count - 16))
                let n = 1 + Int((v >> 24) % 16)
                pool.withUnsafeBytes { (ram + at).copyMemory(from: $0.baseAddress! + src, byteCount: n) }
            case 15..<30:
                // Plausible descriptors with generation-bit games and addresses in or out of RAM.
                let ring = [VmxnetRig.txRing, VmxnetRig.rxRing1, VmxnetRig.rxRing2][Int((v >> 8) % 3)]
                let i = UInt64((v >> 12) % 32)
                let addr = (v >> 20) & 1 == 0 ? 0x10000 + (v >> 24) % 0x60000 : v >> 20
                rig.put64(addr, at: ring + 16 * i)
                rig.put32(UInt32(truncatingIfNeeded: v >> 30), at: ring + 16 * i + 8)
                rig.put32(UInt32(truncatingIfNeeded: v >> 3), at: ring + 16 * i + 12)
            case 30..<45:
                rig.setPT(0x600 + 8 * ((v >> 8) % 9), v >> 16)   // TXPROD of queues 0-8
            case 45..<52:
                rig.setPT(8 * ((v >> 8) % 26), (v >> 16) & 1)    // IMR
            case 52..<60:
                rig.setVD([0x00, 0x08, 0x10, 0x18, 0x28, 0x30, 0x38, 0x40, 0x48][Int((v >> 8) % 9)], v >> 16)
            case 60..<68:
                _ = rig.command(commands[Int((v >> 8) % UInt64(commands.count))])
            case 68..<70:
                // A sane configuration again (garbage soon follows).
                _ = rig.activate(queues: 1 + Int((v >> 8) % 2), rss: (v >> 12) & 1 == 0)
            case 70..<90:
                let length = 14 + Int((v >> 8) % 9100)
                let src = Int((v >> 24) % UInt64(pool.count - 9114))
                frame.withUnsafeMutableBytes { f in
                    pool.withUnsafeBytes { f.baseAddress!.copyMemory(from: $0.baseAddress! + src, byteCount: length) }
                }
                let dst = [rig.mac, [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF], [0x01, 0, 0x5E, 0, 0, 1]][Int((v >> 40) % 3)]
                for i in 0..<6 { frame[i] = dst[i] }
                _ = frame.withUnsafeBytes { peer.port.send(UnsafeRawBufferPointer(rebasing: $0[0..<length])) }
            case 90..<91:
                rig.device.reset()
            default:
                _ = rig.read(bar: Int(v >> 8 & 1), UInt64((v >> 16) % 0x1000) & ~3, size: [1, 2, 4, 8][Int((v >> 32) & 3)])
            }
            worst = max(worst, DispatchTime.now().uptimeNanoseconds - t0)
        }
        let elapsed = Date().timeIntervalSince(start)
        XCTAssertTrue(peer.settle(), "the switch drains: no receive thread stuck in the device")
        // Still a working NIC.
        rig.device.reset()
        rig.setVD(0x00, 1)
        XCTAssertEqual(rig.activate(), 0)
        peer.recording = true
        let f = Self.frame(to: peer.mac, from: rig.mac, length: 128)
        rig.putTx([f])
        rig.setPT(0x600, UInt64(rig.txFill))
        XCTAssertEqual(peer.frames.last, f)
        print("vmxnet fuzz: \(operations) operations in \(String(format: "%.1f", elapsed)) s, slowest \(worst / 1000) us")
        XCTAssertLessThan(worst, 5_000_000_000, "no operation may hang the device")
    }

    // MARK: saved state

    func testSaveAndLoadContinueTheRings() throws {
        let rig = try makeRig()
        let peer = makePeer()
        XCTAssertEqual(rig.activate(), 0)
        for i in 0..<5 { rig.putTx([Self.frame(to: peer.mac, from: rig.mac, length: 60, seed: UInt8(i))]) }
        rig.setPT(0x600, UInt64(rig.txFill))
        XCTAssertEqual(peer.count, 5)
        XCTAssertEqual(rig.txCompletions().count, 5)
        rig.postRx(ring: 0, count: 4)
        let section = try XCTUnwrap(try rig.device.saveState())
        XCTAssertEqual(section.name, "vmxnet")

        // The VM is gone; a new instance on the same switch port address gets the guest's
        // memory and the saved state, and continues at descriptor 5 / buffer 0.
        let image = try rig.rig.memory.read(at: 0, count: VmxnetRig.memorySize)
        rig.tearDown()
        rigs.removeAll { $0 === rig }
        let restored = try makeRig()
        try restored.rig.memory.write(image, at: 0)
        try restored.device.loadState(section)
        restored.adoptDriverState(from: rig)
        let f = Self.frame(to: peer.mac, from: rig.mac, length: 90, seed: 9)
        restored.putTx([f])
        restored.setPT(0x600, UInt64(restored.txFill))
        XCTAssertEqual(peer.frames.last, f)
        XCTAssertEqual(restored.txCompletions(), [5], "completion ring continues at entry 5")
        let r = Self.frame(to: rig.mac, from: peer.mac, length: 77)
        XCTAssertEqual(peer.send(r), .sent)
        XCTAssertEqual(restored.rxFrames().map(\.bytes), [r])
    }
}

// MARK: - rig

struct VmxnetSplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

final class VmxnetTestPeer: @unchecked Sendable {
    let mac: [UInt8]
    let sw: VirtualSwitch
    private let lock = NSLock()
    private var received: [[UInt8]] = []
    private var total = 0
    var recording = true
    private(set) var port: VirtualPort!

    init(switch sw: VirtualSwitch, mac: [UInt8]) {
        self.mac = mac
        self.sw = sw
        port = sw.makePort(name: "peer", mac: mac, receive: { [weak self] frame in
            guard let self else { return .dropped }
            self.lock.withLock {
                self.total += 1
                if self.recording { self.received.append(Array(frame)) }
            }
            return .taken
        }, linkChanged: { _ in })
    }

    func settle() -> Bool { sw.waitUntilDelivered() }

    func send(_ frame: [UInt8]) -> SendResult {
        let r = port.send(frame)
        XCTAssertTrue(settle(), "the switch did not settle")
        return r
    }

    var frames: [[UInt8]] {
        XCTAssertTrue(settle(), "the switch did not settle")
        return lock.withLock { received }
    }

    var count: Int {
        XCTAssertTrue(settle(), "the switch did not settle")
        return lock.withLock { total }
    }
}

/// A Vmxnet device on a host bridge with 4 MiB of guest memory, and the guest-side
/// bookkeeping of a one-queue Linux-style driver. Layout: DriverShared 0x1000, queue
/// descriptors 0x2000, tx ring 0x3000, tx completions 0x3200, rx rings 0x3400 / 0x3600,
/// rx completions 0x3800 (64), RSS 0x4000, buffers from 0x10000.
final class VmxnetRig: @unchecked Sendable {
    final class Sink: PCIInterruptSink, @unchecked Sendable {
        let lock = NSLock()
        var levels: [Int: Bool] = [:]
        func setGSI(_ gsi: Int, level: Bool) { lock.withLock { levels[gsi] = level } }
        func deliverMSI(address: UInt64, data: UInt32) {}
        func level(_ gsi: Int) -> Bool { lock.withLock { levels[gsi] ?? false } }
    }

    struct Parts {
        let memory: GuestMemory
        let timers: TimerQueue
        let bridge: PCIHostBridge
    }

    static let memorySize = 4 << 20
    static let ds: UInt64 = 0x1000
    static let qd: UInt64 = 0x2000
    static let txRing: UInt64 = 0x3000
    static let txComp: UInt64 = 0x3200
    static let rxRing1: UInt64 = 0x3400
    static let rxRing2: UInt64 = 0x3600
    static let rxComp: UInt64 = 0x3800
    static let rss: UInt64 = 0x4000
    static let ringSize = 32
    static func txBuffer(_ i: Int, _ part: Int) -> UInt64 { 0x10000 + UInt64(i) * 0x8000 + UInt64(part) * 0x4000 }
    static func rxBuffer(_ ring: Int, _ i: Int) -> UInt64 { 0x120000 + UInt64(ring) * 0x10000 + UInt64(i) * 0x800 }

    let rig: Parts
    let sink = Sink()
    let device: PluginDevice
    let mac: [UInt8]
    var mtu: UInt32 = 1500

    // driver bookkeeping
    var txFill = 0, txGen: UInt32 = 1, txCompIndex = 0, txCompGen: UInt32 = 1
    var rxFill = [0, 0], rxGen: [UInt32] = [1, 1], rxCompIndex = 0, rxCompGen: UInt32 = 1

    init(model: UnsafePointer<hv_device_model>, switches: SwitchRegistry, mac: String, quiet: Bool) throws {
        self.mac = mac.split(separator: ":").map { UInt8($0, radix: 16)! }
        let memory = try GuestMemory(size: UInt64(Self.memorySize))
        let clock = VMClock()
        let timers = TimerQueue(clock: clock, name: "vmxnet-test")
        timers.start()
        let ports = AddressBus()
        let bridge = try PCIHostBridge(portBus: ports, mmioBus: AddressBus(), interrupts: sink)
        rig = Parts(memory: memory, timers: timers, bridge: bridge)
        let backends = PluginBackends(switches: switches, diskQueue: DiskIOQueue(name: "vmxnet-disk")) { _ in nil }
        var logger = Logger(label: "vmxnet-test")
        if quiet { logger.logLevel = .error }
        let config = ["generatedaddress": mac, "networkname": "testnet"]
        let context = PluginDeviceContext(
            vmName: "vm-\(mac)", prefix: "ethernet0", memory: memory, clock: clock, timers: timers, pci: bridge,
            configValue: { config[$0.lowercased()] }, logger: logger, backends: backends)
        device = PluginDevice(model: model, pluginName: "vmxnet", context: context)
        try device.create()
        try bridge.assignResources()
        try device.realize()
        device.reset()
        ports.write(0xCF8, size: 4, value: UInt64(0x8000_0000 | UInt32(device.function!.slot) << 11 | 0x04))
        ports.write(0xCFC, size: 2, value: 0x0006)   // memory decoding, bus mastering
    }

    func tearDown() {
        device.destroy()
        rig.timers.stop()
    }

    var intx: Bool { sink.level(PCIHostBridge.pirqToGSI[(device.function!.slot - 1) & 3]) }

    // MARK: registers

    func read(bar: Int, _ offset: UInt64, size: Int) -> UInt64 { device.barRead(bar: bar, offset: offset, size: size) }
    func vd(_ offset: UInt64) -> UInt32 { UInt32(device.barRead(bar: 1, offset: offset, size: 4)) }
    func setVD(_ offset: UInt64, _ v: UInt64) { device.barWrite(bar: 1, offset: offset, size: 4, value: v & 0xFFFF_FFFF) }
    func setPT(_ offset: UInt64, _ v: UInt64) { device.barWrite(bar: 0, offset: offset, size: 4, value: v & 0xFFFF_FFFF) }

    func command(_ cmd: UInt32) -> UInt32 {
        setVD(0x20, UInt64(cmd))
        return vd(0x20)
    }

    // MARK: memory

    func put(_ bytes: [UInt8], at gpa: UInt64) { try? rig.memory.write(bytes, at: gpa) }
    func put8(_ v: UInt8, at gpa: UInt64) { try? rig.memory.store(v, at: gpa) }
    func put32(_ v: UInt32, at gpa: UInt64) { try? rig.memory.store(v, at: gpa) }
    func put64(_ v: UInt64, at gpa: UInt64) { try? rig.memory.store(v, at: gpa) }
    func get8(_ gpa: UInt64) -> UInt8 { (try? rig.memory.load(UInt8.self, at: gpa)) ?? 0 }
    func get32(_ gpa: UInt64) -> UInt32 { (try? rig.memory.load(UInt32.self, at: gpa)) ?? 0 }
    func get64(_ gpa: UInt64) -> UInt64 { (try? rig.memory.load(UInt64.self, at: gpa)) ?? 0 }

    // MARK: driver

    func setMTU(_ m: UInt32) {
        mtu = m
        put32(m, at: Self.ds + 56)
    }

    /// DriverShared and the queue descriptor table for `queues` tx and rx queues (queues
    /// beyond the first share the first one's rings: enough for activation and the fuzz).
    func writeConfig(queues: Int = 1, rss: Bool = false, features: UInt64 = 0) {
        try? rig.memory.write([UInt8](repeating: 0, count: 0x3000), at: Self.ds)
        put32(0xBABE_FEE1, at: Self.ds)
        put64((rss ? 0x2 : 0) | features, at: Self.ds + 24)
        put64(Self.qd, at: Self.ds + 40)
        put32(UInt32(2 * queues * 256), at: Self.ds + 52)
        put32(mtu, at: Self.ds + 56)
        put8(UInt8(queues), at: Self.ds + 62)
        put8(UInt8(queues), at: Self.ds + 63)
        put8(1, at: Self.ds + 80)   // autoMask
        put8(1, at: Self.ds + 81)   // numIntrs
        put32(0x05, at: Self.ds + 120)   // UCAST | BCAST
        for q in 0..<queues {
            let t = Self.qd + UInt64(q) * 256, r = Self.qd + UInt64(queues + q) * 256
            put64(Self.txRing, at: t + 16)
            put64(Self.txComp, at: t + 32)
            put32(UInt32(Self.ringSize), at: t + 56)
            put32(UInt32(Self.ringSize), at: t + 64)
            put64(Self.rxRing1, at: r + 16)
            put64(Self.rxRing2, at: r + 24)
            put64(Self.rxComp, at: r + 32)
            put32(UInt32(Self.ringSize), at: r + 56)
            put32(UInt32(Self.ringSize), at: r + 60)
            put32(UInt32(2 * Self.ringSize), at: r + 64)
        }
        if rss {
            put32(0x0001_0003, at: Self.rss)      // IPv4 + TCP/IPv4, Toeplitz
            put32(0x0020_0028, at: Self.rss + 4)  // 40-byte key, 32 entries
            for i in 0..<40 { put8(UInt8(i * 37 & 0xFF), at: Self.rss + 8 + UInt64(i)) }
            for i in 0..<32 { put8(UInt8(i % queues), at: Self.rss + 48 + UInt64(i)) }
            put32(176, at: Self.ds + 652)
            put64(Self.rss, at: Self.ds + 656)
        }
        setVD(0x10, Self.ds)
        setVD(0x18, 0)
    }

    func resetIndices() {
        txFill = 0; txGen = 1; txCompIndex = 0; txCompGen = 1
        rxFill = [0, 0]; rxGen = [1, 1]; rxCompIndex = 0; rxCompGen = 1
    }

    /// Writes a configuration and activates; returns the CMD result.
    @discardableResult
    func activate(queues: Int = 1, rss: Bool = false, features: UInt64 = 0) -> UInt32 {
        writeConfig(queues: queues, rss: rss, features: features)
        resetIndices()
        return command(0xCAFE_0000)
    }

    /// A frame in descriptors from txFill on, one per part, SOP's generation bit last.
    func putTx(_ parts: [[UInt8]], offload: (mode: UInt32, hlen: UInt32, msscof: UInt32)? = nil,
               eop: Bool = true, at fixed: Int? = nil) {
        var writes: [(UInt64, UInt32)] = []
        for (k, part) in parts.enumerated() {
            let i = fixed ?? txFill
            let buffer = Self.txBuffer(i, k % 2)
            put(part, at: buffer)
            let d = Self.txRing + UInt64(i) * 16
            put64(buffer, at: d)
            var d3: UInt32 = 0
            if k == parts.count - 1 && eop { d3 |= 1 << 12 | 1 << 13 }
            var d2 = UInt32(part.count) & 0x3FFF | txGen << 14
            if k == 0, let o = offload {
                d3 |= o.hlen & 0x3FF | o.mode << 10
                d2 |= o.msscof << 18
            }
            put32(d3, at: d + 12)
            writes.append((d + 8, d2))
            if fixed == nil {
                txFill += 1
                if txFill == Self.ringSize { txFill = 0; txGen ^= 1 }
            }
        }
        for (at, v) in writes.dropFirst() { put32(v, at: at) }
        put32(writes[0].1, at: writes[0].0)
    }

    /// The EOP indices of the tx completions written since the last call.
    func txCompletions() -> [Int] {
        var out: [Int] = []
        while get32(Self.txComp + UInt64(txCompIndex) * 16 + 12) >> 31 == txCompGen {
            out.append(Int(get32(Self.txComp + UInt64(txCompIndex) * 16) & 0xFFF))
            txCompIndex += 1
            if txCompIndex == Self.ringSize { txCompIndex = 0; txCompGen ^= 1 }
        }
        return out
    }

    /// Posts `count` 2 KiB buffers in ring `ring` (0: HEAD buffers, 1: BODY buffers).
    func postRx(ring: Int, count: Int) {
        let base = ring == 0 ? Self.rxRing1 : Self.rxRing2
        for _ in 0..<count {
            let i = rxFill[ring]
            let d = base + UInt64(i) * 16
            put64(Self.rxBuffer(ring, i), at: d)
            put32(0, at: d + 12)
            put32(0x800 | UInt32(ring) << 14 | rxGen[ring] << 31, at: d + 8)
            rxFill[ring] += 1
            if rxFill[ring] == Self.ringSize { rxFill[ring] = 0; rxGen[ring] ^= 1 }
        }
    }

    /// Frames completed since the last call, reassembled from their buffers.
    func rxFrames() -> [(bytes: [UInt8], rqIDs: [Int])] {
        var out: [(bytes: [UInt8], rqIDs: [Int])] = []
        var bytes: [UInt8] = []
        var ids: [Int] = []
        while get32(Self.rxComp + UInt64(rxCompIndex) * 16 + 12) >> 31 == rxCompGen {
            let c = Self.rxComp + UInt64(rxCompIndex) * 16
            let d0 = get32(c), d2 = get32(c + 8)
            let rq = Int(d0 >> 16 & 0x3FF), idx = Int(d0 & 0xFFF), len = Int(d2 & 0x3FFF)
            ids.append(rq)
            bytes += (try? rig.memory.read(at: Self.rxBuffer(rq >= 1 ? 1 : 0, idx), count: len)) ?? []
            rxCompIndex += 1
            if rxCompIndex == 2 * Self.ringSize { rxCompIndex = 0; rxCompGen ^= 1 }
            if d0 & 1 << 14 != 0 {
                out.append((bytes, ids))
                bytes = []
                ids = []
            }
        }
        return out
    }

    /// Takes over another rig's driver bookkeeping (after restoring its saved state).
    func adoptDriverState(from other: VmxnetRig) {
        txFill = other.txFill; txGen = other.txGen; txCompIndex = other.txCompIndex; txCompGen = other.txCompGen
        rxFill = other.rxFill; rxGen = other.rxGen; rxCompIndex = other.rxCompIndex; rxCompGen = other.rxCompGen
        mtu = other.mtu
    }
}
