import Foundation
import Logging
import PluginABI
import XCTest
@testable import HVDevices
@testable import HVHostIO
@testable import HVMemory
@testable import HVPluginHost
@testable import HVSupport

/// The Vlance NIC plugin (AMD PCnet-PCI II, Plugins/Vlance), loaded as `libVlance.so` from
/// the build directory and driven in-process the way a Linux `pcnet32` driver drives it:
/// port I/O, descriptor rings in guest memory, INTx, and a peer port on the same switch.
final class VlanceTests: XCTestCase {
    // MARK: loading the plugin

    /// `libVlance.so` next to the test bundle (`.build/<triple>/debug`).
    static let pluginPath: String = {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? ""
        return URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("libVlance.so").path
    }()

    static let catalog = PluginCatalog.load(searchPath: PluginSearchPath(directories: [pluginPath]))

    static func model() throws -> UnsafePointer<hv_device_model> {
        guard FileManager.default.fileExists(atPath: pluginPath) else {
            // SwiftPM builds the Vlance product with the tests; a missing library is a failure.
            throw PluginDeviceError(message: "\(pluginPath) is not built (swift build --product Vlance)")
        }
        return try catalog.deviceModel(named: "vlance").model
    }

    // MARK: rig

    var switches: SwitchRegistry!
    var rigs: [VlanceRig] = []

    override func setUpWithError() throws {
        switches = SwitchRegistry()
    }

    override func tearDown() {
        for r in rigs { r.tearDown() }
        rigs = []
        // Unplug the test peers too, which ends their receive threads.
        for sw in switches.switches { for p in sw.ports { sw.removePort(p) } }
    }

    func makeRig(mac: String = "00:50:56:00:00:01", network: String = "testnet",
                 config: [String: String] = [:], quiet: Bool = false) throws -> VlanceRig {
        let rig = try VlanceRig(model: Self.model(), switches: switches, mac: mac, network: network, extra: config,
                                quiet: quiet)
        rigs.append(rig)
        return rig
    }

    /// A port on the rig's switch that records what it receives.
    func makePeer(_ network: String = "testnet", mac: [UInt8] = [0x00, 0x50, 0x56, 0x00, 0x00, 0x99]) -> VlanceTestPeer {
        VlanceTestPeer(switch: switches.virtualSwitch(named: network), mac: mac)
    }

    // MARK: probe and identity

    func testPluginDescriptorAndPCIIdentity() throws {
        let info = try Self.catalog.deviceModelInfo(named: "vlance")
        XCTAssertEqual(info.plugin.id, "org.hvproject.vlance")
        XCTAssertEqual(info.model.kind, HV_DEVICE_KIND_NIC)
        XCTAssertEqual(info.model.flags & HV_DEVICE_THREAD_SAFE, HV_DEVICE_THREAD_SAFE)
        XCTAssertEqual(info.model.stateVersion, 1)
        let rig = try makeRig()
        let f = try XCTUnwrap(rig.device.function)
        XCTAssertEqual(f.identity.vendorID, 0x1022)
        XCTAssertEqual(f.identity.deviceID, 0x2000)
        XCTAssertEqual(f.identity.classCode, 0x02_00_00)
        XCTAssertEqual(f.identity.revision, 0x10)
        XCTAssertEqual(f.identity.interruptPin, 1)
        XCTAssertEqual(f.bars.map(\.index), [0, 1])
        XCTAssertEqual(f.bars.map(\.kind), [.io, .memory32])
        XCTAssertEqual(f.bars.map(\.size), [0x20, 0x20])
    }

    func testLinuxProbeSequence() throws {
        let rig = try makeRig(mac: "00:50:56:12:34:56")
        // pcnet32_wio_reset, then CSR0 must read STOP and RAP must read back.
        _ = rig.read(0x14, size: 2)
        XCTAssertEqual(rig.csr(0), 0x0004)
        rig.write(0x12, 88, size: 2)
        XCTAssertEqual(rig.read(0x12, size: 2), 88)
        // Chip id: CSR88 | CSR89 << 16.
        let version = rig.csr(88) | rig.csr(89) << 16
        XCTAssertEqual(version & 0xFFF, 0x003)
        XCTAssertEqual((version >> 12) & 0xFFFF, 0x2621)
        // APROM: MAC, 0x11 hardware id, checksum, "WW".
        let prom = (0..<16).map { UInt8(rig.read(UInt64($0), size: 1)) }
        XCTAssertEqual(Array(prom[0..<6]), [0x00, 0x50, 0x56, 0x12, 0x34, 0x56])
        XCTAssertEqual(prom[9], 0x11)
        XCTAssertEqual(prom[14], 0x57)
        XCTAssertEqual(prom[15], 0x57)
        let sum = (Array(prom[0..<12]) + Array(prom[14..<16])).reduce(UInt16(0)) { $0 &+ UInt16($1) }
        XCTAssertEqual(UInt16(prom[12]) | UInt16(prom[13]) << 8, sum)
        XCTAssertEqual(rig.read(0, size: 4), 0x1256_5000, "APROM reads by dword too")
        // CSR12-14 hold the same address (the driver compares them with the PROM).
        XCTAssertEqual([rig.csr(12), rig.csr(13), rig.csr(14)], [0x5000, 0x1256, 0x5634])
        // The watchdog's link check: BCR4 != 0xC0 means link up.
        XCTAssertEqual(rig.bcr(4), 0x80C0)
        XCTAssertEqual(rig.bcr(20), 0x0200)
        XCTAssertEqual(rig.bcr(18) & 0x80, 0, "starts in WIO")

        // A dword write to RDP switches to DWIO: word accesses stop working, dword ones work.
        rig.write(0x10, 0, size: 4)
        XCTAssertEqual(rig.bcr(18, dwio: true) & 0x80, 0x80)
        XCTAssertEqual(rig.read(0x12, size: 2), 0xFFFF)
        rig.write(0x14, 88, size: 4)
        XCTAssertEqual(rig.read(0x14, size: 4), 88)
        XCTAssertEqual(rig.read(0x10, size: 4), 0x0262_1003)
        _ = rig.read(0x18, size: 4)   // DWIO RESET
        XCTAssertEqual(rig.read(0x14, size: 4), 0, "reset clears RAP")
        XCTAssertEqual(rig.read(0x10, size: 4), 0x0004)
        XCTAssertEqual(rig.bcr(18, dwio: true) & 0x80, 0x80, "S_RESET keeps DWIO")
        // The BAR1 MMIO window decodes the same registers.
        rig.write(0x14, 4, size: 4, bar: 1)
        XCTAssertEqual(rig.read(0x1C, size: 4, bar: 1), 0x80C0)
        // H_RESET (device reset) returns to WIO.
        rig.device.reset()
        rig.dwio = false
        XCTAssertEqual(rig.csr(0), 0x0004)
        XCTAssertEqual(rig.bcr(18) & 0x80, 0)
    }

    func testStaticAddressWinsAndABadOneIsRefused() throws {
        let rig = try makeRig(config: ["address": "00:50:56:3F:00:42"])
        XCTAssertEqual((0..<6).map { UInt8(rig.read(UInt64($0), size: 1)) }, [0x00, 0x50, 0x56, 0x3F, 0x00, 0x42])
        XCTAssertEqual(rig.csr(12), 0x5000)
        XCTAssertThrowsError(try makeRig(mac: "00:50:56:00:00:02", config: ["address": "01:00:5e:00:00:01"]),
                             "a group address cannot be a NIC's address")
        XCTAssertThrowsError(try makeRig(mac: "00:50:56:00:00:03", config: ["address": "00:50:56:zz:00:01"]))
    }

    // MARK: init

    func testInitWithSWStyle2SetsIDONAndInterrupts() throws {
        let rig = try makeRig()
        rig.bringUp(style: 2, start: false)
        XCTAssertEqual(rig.csr(0) & 0x0101, 0x0101, "IDON and INIT")
        XCTAssertEqual(rig.csr(0) & 0x0004, 0, "STOP cleared")
        XCTAssertFalse(rig.intx, "no interrupt without INEA")
        XCTAssertEqual(rig.bcr(20), 0x0302, "SWSTYLE 2 sets SSIZE32 and CSRPCNET")
        XCTAssertEqual(rig.csr(58), 0x0302, "CSR58 aliases BCR20")
        XCTAssertEqual(rig.csr(76), 0xFFF0, "CSR76: two's complement of the 16-entry ring")
        XCTAssertEqual(rig.csr(78), 0xFFF0)
        XCTAssertEqual(rig.csr(24) | rig.csr(25) << 16, VlanceRig.rxRing)
        XCTAssertEqual(rig.csr(30) | rig.csr(31) << 16, VlanceRig.txRing)
        rig.setCSR(0, 0x0042)   // STRT | INEA
        XCTAssertEqual(rig.csr(0) & 0x00F3, 0x00F3, "INIT (stays set), STRT, TXON, RXON, INEA, INTR")
        XCTAssertTrue(rig.intx, "IDON interrupts once INEA is set")
        rig.setCSR(3, 0x0100)   // IDONM masks it
        XCTAssertFalse(rig.intx)
        rig.setCSR(3, 0)
        XCTAssertTrue(rig.intx)
        rig.setCSR(0, 0x0100 | 0x0040)   // write-one-to-clear IDON
        XCTAssertFalse(rig.intx)
        XCTAssertEqual(rig.csr(0) & 0x0180, 0)
        // Registers that need STOP or SPND ignore writes while running.
        rig.setCSR(15, 0x8000)
        XCTAssertEqual(rig.csr(15), 0)
        rig.setBCR(20, 0)
        XCTAssertEqual(rig.bcr(20), 0x0302)
        // STOP: CSR0 reads 4 again and INTx drops.
        rig.setCSR(0, 0x0004)
        XCTAssertEqual(rig.csr(0), 0x0004)
    }

    func testInitBlockOutsideRAMSetsMERR() throws {
        let rig = try makeRig()
        _ = rig.read(0x14, size: 2)
        rig.setBCR(20, 2)
        rig.setCSR(1, 0x0000)
        rig.setCSR(2, 0xF000)   // 0xF0000000: not RAM
        rig.setCSR(0, 0x0041)
        XCTAssertEqual(rig.csr(0) & 0x0100, 0, "no IDON")
        XCTAssertEqual(rig.csr(0) & 0x8800, 0x8800, "MERR and ERR")
        XCTAssertTrue(rig.intx)
    }

    // MARK: transmit

    func testTransmitReachesAnotherPortOfTheSwitch() throws {
        let rig = try makeRig()
        let peer = makePeer()
        rig.bringUp(style: 2)
        let frame = VlanceRig.frame(to: peer.mac, from: rig.mac, length: 100)
        rig.putTx(0, [frame])
        rig.setCSR(0, 0x0048)   // TDMD | INEA
        XCTAssertEqual(peer.frames, [frame])
        let tmd = rig.txDescriptor(0)
        XCTAssertEqual(tmd.flags & 0x8000_0000, 0, "OWN handed back")
        XCTAssertEqual(tmd.flags & 0x4000_0000, 0, "no ERR")
        XCTAssertEqual(tmd.flags & 0x0300_0000, 0x0300_0000, "STP and ENP kept")
        XCTAssertEqual(rig.csr(0) & 0x0200, 0x0200, "TINT")
        XCTAssertTrue(rig.intx)
        rig.setCSR(0, 0x0200 | 0x0040)
        XCTAssertFalse(rig.intx)
        XCTAssertEqual(rig.csr(34) | rig.csr(35) << 16, VlanceRig.txRing + 16, "CXDA moved on")

        // A short frame goes out padded to 60 bytes.
        let short = VlanceRig.frame(to: peer.mac, from: rig.mac, length: 20)
        rig.putTx(1, [short])
        rig.setCSR(0, 0x0048)
        XCTAssertEqual(peer.frames.count, 2)
        XCTAssertEqual(peer.frames.last, short + [UInt8](repeating: 0, count: 40))
    }

    func testMultiDescriptorTransmitChaining() throws {
        let rig = try makeRig()
        let peer = makePeer()
        rig.bringUp(style: 2)
        let frame = VlanceRig.frame(to: peer.mac, from: rig.mac, length: 300)
        rig.putTx(0, [Array(frame[0..<14]), Array(frame[14..<200]), Array(frame[200...])])
        rig.setCSR(0, 0x0048)
        XCTAssertEqual(peer.frames, [frame])
        for i in 0..<3 {
            XCTAssertEqual(rig.txDescriptor(i).flags & 0xC000_0000, 0, "descriptor \(i): OWN cleared, no ERR")
        }
        rig.setCSR(0, 0x0240)

        // A chain that ends without ENP (the next descriptor is not owned): BUFF and UFLO on
        // the last descriptor, nothing sent, and the transmitter turns off (DXSUFLO = 0).
        rig.putTx(3, [Array(frame[0..<100]), Array(frame[100..<200])], lastHasENP: false)
        rig.setCSR(0, 0x0048)
        XCTAssertEqual(peer.frames.count, 1)
        let last = rig.txDescriptor(4)
        XCTAssertEqual(last.flags & 0xC000_0000, 0x4000_0000, "OWN cleared, ERR set")
        XCTAssertEqual(last.misc & 0xC000_0000, 0xC000_0000, "BUFF and UFLO")
        XCTAssertEqual(rig.csr(0) & 0x0010, 0, "TXON off after UFLO")
        XCTAssertEqual(rig.csr(0) & 0x0200, 0x0200, "TINT")
    }

    func testPollTimerTransmitsWithoutTDMDUnlessTXDPOLL() throws {
        let rig = try makeRig()
        let peer = makePeer()
        rig.bringUp(style: 2)
        let frame = VlanceRig.frame(to: peer.mac, from: rig.mac, length: 64)
        rig.putTx(0, [frame])
        waitUntil("the poll timer sends the frame") { peer.frames.count == 1 }
        // TXDPOLL (CSR4 bit 12) disables polling; TDMD still sends.
        rig.setCSR(4, 0x0915 | 0x1000)
        rig.putTx(1, [frame])
        usleep(20_000)
        XCTAssertEqual(peer.frames.count, 1)
        rig.setCSR(0, 0x0048)
        XCTAssertEqual(peer.frames.count, 2)
    }

    func testLinkDownIsVisibleInBCR4AndFailsTransmitWithLossOfCarrier() throws {
        let rig = try makeRig()
        let peer = makePeer()
        rig.bringUp(style: 2)
        let port = try XCTUnwrap(rig.port(in: switches))
        port.setLink(up: false)
        XCTAssertEqual(rig.bcr(4), 0x00C0)
        rig.putTx(0, [VlanceRig.frame(to: peer.mac, from: rig.mac, length: 64)])
        rig.setCSR(0, 0x0048)
        XCTAssertEqual(peer.frames.count, 0)
        let tmd = rig.txDescriptor(0)
        XCTAssertEqual(tmd.flags & 0xC000_0000, 0x4000_0000, "ERR")
        XCTAssertEqual(tmd.misc & 0x0800_0000, 0x0800_0000, "LCAR")
        XCTAssertEqual(rig.csr(0) & 0xA000, 0xA000, "CERR and ERR")
        port.setLink(up: true)
        XCTAssertEqual(rig.bcr(4), 0x80C0)
    }

    // MARK: receive

    func testReceiveLandsInTheRingAndInterrupts() throws {
        let rig = try makeRig()
        let peer = makePeer()
        rig.bringUp(style: 2)
        rig.ackAll()
        let frame = VlanceRig.frame(to: rig.mac, from: peer.mac, length: 100)
        XCTAssertEqual(peer.send(frame), .sent)
        let rmd = rig.rxDescriptor(0)
        XCTAssertEqual(rmd.flags & 0xFF00_0000, 0x0300_0000, "OWN cleared, STP|ENP, no errors")
        XCTAssertEqual(rmd.flags & 0x0040_0000, 0x0040_0000, "PAM")
        XCTAssertEqual(rmd.misc & 0xFFF, 104, "msg_length includes the FCS")
        let stored = rig.memory(at: VlanceRig.rxBuffer(0), count: 104)
        XCTAssertEqual(Array(stored[0..<100]), frame)
        XCTAssertEqual(Array(stored[100..<104]), VlanceRig.fcs(frame))
        XCTAssertEqual(rig.csr(0) & 0x0400, 0x0400, "RINT")
        XCTAssertTrue(rig.intx)
        rig.setCSR(0, 0x0400 | 0x0040)
        XCTAssertFalse(rig.intx)
        // The next frame uses the next descriptor.
        XCTAssertEqual(peer.send(frame), .sent)
        XCTAssertEqual(rig.rxDescriptor(1).flags & 0x8300_0000, 0x0300_0000)
        XCTAssertEqual(rig.csr(72), UInt32(UInt16(truncatingIfNeeded: 2 - 16)), "CSR72 ring counter")
    }

    func testReceiveChainsAcrossSmallBuffers() throws {
        let rig = try makeRig()
        let peer = makePeer()
        rig.bringUp(style: 2, rxBufferSize: 64)
        let frame = VlanceRig.frame(to: rig.mac, from: peer.mac, length: 150)
        XCTAssertEqual(peer.send(frame), .sent)
        // 154 bytes with FCS over 64-byte buffers: STP, middle, ENP.
        XCTAssertEqual(rig.rxDescriptor(0).flags & 0xFF00_0000, 0x0200_0000)
        XCTAssertEqual(rig.rxDescriptor(1).flags & 0xFF00_0000, 0x0000_0000)
        XCTAssertEqual(rig.rxDescriptor(2).flags & 0xFF00_0000, 0x0100_0000)
        XCTAssertEqual(rig.rxDescriptor(2).misc & 0xFFF, 154)
        let stored = (0..<3).flatMap { rig.memory(at: VlanceRig.rxBuffer($0), count: 64) }
        XCTAssertEqual(Array(stored[0..<150]), frame)
        XCTAssertEqual(rig.rxDescriptor(3).flags & 0x8000_0000, 0x8000_0000, "untouched")
    }

    func testAddressFilterBroadcastUnicastPromiscuousAndMulticast() throws {
        let rig = try makeRig()
        let peer = makePeer()
        let group: [UInt8] = [0x01, 0x00, 0x5E, 0x00, 0x00, 0xFB]
        rig.bringUp(style: 2)
        // Broadcast is accepted (BAM).
        XCTAssertEqual(peer.send(VlanceRig.frame(to: [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF], from: peer.mac, length: 60)), .sent)
        XCTAssertEqual(rig.rxDescriptor(0).flags & 0x8010_0000, 0x0010_0000)
        // Someone else's unicast and an unsubscribed group are dropped.
        XCTAssertEqual(peer.send(VlanceRig.frame(to: [0x00, 0x50, 0x56, 0x00, 0x00, 0x42], from: peer.mac, length: 60)), .sent)
        XCTAssertEqual(peer.send(VlanceRig.frame(to: group, from: peer.mac, length: 60)), .sent)
        XCTAssertEqual(rig.rxDescriptor(1).flags & 0x8000_0000, 0x8000_0000, "still owned by the guest")

        // Linux's set_multicast_list: suspend, write LADRF (CSR8-11) and CSR15, resume.
        rig.setCSR(5, 0x0001)
        XCTAssertEqual(rig.csr(5) & 1, 1, "SPND reads back")
        let hash = Int(VlanceRig.crcLE(group) >> 26)
        for i in 0..<4 { rig.setCSR(8 + i, i == hash >> 4 ? UInt32(1) << UInt32(hash & 15) : 0) }
        rig.setCSR(5, 0)
        XCTAssertEqual(peer.send(VlanceRig.frame(to: group, from: peer.mac, length: 60)), .sent)
        XCTAssertEqual(rig.rxDescriptor(1).flags & 0x8020_0000, 0x0020_0000, "accepted by the hash (LAFM)")
        XCTAssertEqual(peer.send(VlanceRig.frame(to: [0x01, 0x00, 0x5E, 0x00, 0x00, 0x01], from: peer.mac, length: 60)), .sent)
        XCTAssertEqual(rig.rxDescriptor(2).flags & 0x8000_0000, 0x8000_0000, "other groups still dropped")

        // Promiscuous mode takes everything.
        rig.setCSR(5, 0x0001)
        rig.setCSR(15, rig.csr(15) | 0x8000)
        rig.setCSR(5, 0)
        XCTAssertEqual(peer.send(VlanceRig.frame(to: [0x00, 0x50, 0x56, 0x00, 0x00, 0x42], from: peer.mac, length: 60)), .sent)
        XCTAssertEqual(rig.rxDescriptor(2).flags & 0x8300_0000, 0x0300_0000)
    }

    /// No receive buffer: the switch holds the frame (no MISS, nothing lost) while the NIC
    /// polls its ring; once the guest gives buffers (without touching a register) the
    /// frame lands. The port's queue bounds what waits; a receiver that stops drops it.
    func testNoReceiveBufferHoldsFramesUntilTheGuestGivesOne() throws {
        let rig = try makeRig()
        let peer = makePeer()
        rig.bringUp(style: 2, rxOwned: false)
        rig.ackAll()
        let port = try XCTUnwrap(rig.port(in: switches))
        XCTAssertTrue(port.holdsFramesWhenFull, "Vlance asks for back-pressure")
        let frame = VlanceRig.frame(to: rig.mac, from: peer.mac, length: 80)
        XCTAssertEqual(peer.send(frame), .sent)
        XCTAssertEqual(rig.csr(0) & 0x1000, 0, "no MISS: the frame is not lost")
        XCTAssertEqual(rig.csr(112), 0)
        XCTAssertEqual(port.queuedFrames, 1)
        XCTAssertEqual(port.counters.rxDrops, 0)
        XCTAssertFalse(rig.intx)

        rig.replenishRx()
        waitUntil("the held frame lands") { rig.rxDescriptor(0).flags & 0x8300_0000 == 0x0300_0000 }
        XCTAssertTrue(peer.settle())
        XCTAssertEqual(rig.memory(at: VlanceRig.rxBuffer(0), count: 80), frame)
        XCTAssertEqual(rig.rxDescriptor(0).misc & 0xFFF, 84)
        XCTAssertEqual(port.counters.rxFrames, 1)
        XCTAssertEqual(port.queuedFrames, 0)
        XCTAssertTrue(rig.intx, "RINT")
        rig.ackAll()

        // No buffers again: 512 frames wait in the port's queue, the rest are dropped.
        rig.replenishRx(owned: false)
        for _ in 0..<(512 + 3) { XCTAssertEqual(peer.port.send(frame), .sent) }
        XCTAssertTrue(peer.settle())
        XCTAssertEqual(port.queuedFrames, 512)
        XCTAssertEqual(port.counters.rxDrops, 3)
        XCTAssertEqual(rig.csr(0) & 0x1000, 0)
        // STOP: the receiver is off, so the held frames are dropped, not stored.
        rig.setCSR(0, 0x0004)
        waitUntil("the held frames are dropped after STOP") { port.queuedFrames == 0 }
        XCTAssertEqual(port.counters.rxDrops, 3 + 512)
        XCTAssertEqual(port.counters.rxFrames, 1)
    }

    func testRingsOutsideRAMSetMERR() throws {
        let rig = try makeRig()
        let peer = makePeer()
        rig.bringUp(style: 2, rxRing: 0xF000_0000, txRing: 0xF100_0000)
        rig.ackAll()
        rig.setCSR(0, 0x0048)
        XCTAssertEqual(rig.csr(0) & 0x8800, 0x8800, "MERR from the transmit ring")
        XCTAssertTrue(rig.intx)
        rig.setCSR(0, 0x0840)
        XCTAssertFalse(rig.intx)
        XCTAssertEqual(peer.send(VlanceRig.frame(to: rig.mac, from: peer.mac, length: 80)), .sent)
        XCTAssertEqual(rig.csr(0) & 0x0800, 0x0800, "MERR from the receive ring")
        // Buffers outside RAM in a valid ring: MERR, the frame is dropped, nothing crashes.
        rig.setCSR(0, 0x0004)
        rig.bringUp(style: 2)
        rig.ackAll()
        rig.putDescriptor(at: UInt64(VlanceRig.txRing), base: 0xE000_0000,
                          flags: 0x8300_0000 | VlanceRig.negativeLength(64), misc: 0)
        rig.setCSR(0, 0x0048)
        XCTAssertEqual(rig.csr(0) & 0x0800, 0x0800)
        XCTAssertEqual(peer.frames.count, 0)
        XCTAssertEqual(rig.txDescriptor(0).flags & 0x8000_0000, 0, "the descriptor is still handed back")
    }

    /// A 65535-entry ring of 1-byte buffers, all owned, one STP and no ENP: a transmit
    /// stops at babble after maxFrame + 1 descriptors and the rest is skipped by later polls;
    /// a received frame chains over exactly as many buffers as it needs.
    func testHostileRingsAreBounded() throws {
        let rig = try makeRig()
        let peer = makePeer()
        rig.bringUp(style: 2)
        rig.ackAll()
        let ring: UInt64 = 0x10_0000, count = 65535
        let ram = try XCTUnwrap(rig.rig.memory.pointer(at: ring, length: count * 16))
        for i in 0..<count {
            ram.storeBytes(of: UInt32(0x8_0000).littleEndian, toByteOffset: i * 16, as: UInt32.self)
            let flags: UInt32 = 0x8000_0000 | (i == 0 ? 0x0200_0000 : 0) | 0xFFFF   // 1-byte buffers
            ram.storeBytes(of: flags.littleEndian, toByteOffset: i * 16 + 4, as: UInt32.self)
        }
        rig.setCSR(5, 0x0001)          // SPND: ring registers are writable
        rig.setCSR(78, 1)              // two's complement of 65535
        rig.setCSR(30, 0)
        rig.setCSR(31, UInt32(ring >> 16))
        rig.setCSR(74, 1)              // first descriptor
        rig.setCSR(5, 0)
        XCTAssertEqual(rig.csr(78), 1)
        let start = Date()
        rig.setCSR(0, 0x0048)
        XCTAssertLessThan(Date().timeIntervalSince(start), 2, "one TDMD does bounded work")
        XCTAssertEqual(rig.csr(0) & 0x4000, 0x4000, "BABL")
        XCTAssertEqual(peer.frames.count, 0)
        rig.txRingBase = UInt32(ring)
        XCTAssertEqual(rig.txDescriptor(1536).flags & 0x8000_0000, 0, "the cut descriptor")
        waitUntil("the poll timer hands back the rest of the chain") {
            rig.txDescriptor(count - 1).flags & 0x8000_0000 == 0
        }

        // Receive over the same kind of ring (in the lower megabyte; buffers at 0x80000).
        let low = try XCTUnwrap(rig.rig.memory.pointer(at: 0, length: count * 16))
        for i in 0..<count {
            low.storeBytes(of: UInt32(0x8_0000).littleEndian, toByteOffset: i * 16, as: UInt32.self)
            low.storeBytes(of: (0x8000_0000 as UInt32 | 0xFFFF).littleEndian, toByteOffset: i * 16 + 4, as: UInt32.self)
        }
        rig.setCSR(5, 0x0001)
        rig.setCSR(76, 1)
        rig.setCSR(24, 0)
        rig.setCSR(25, 0)
        rig.setCSR(72, 1)
        rig.setCSR(5, 0)
        rig.rxRingBase = 0
        let frame = VlanceRig.frame(to: rig.mac, from: peer.mac, length: 1500)
        XCTAssertEqual(peer.send(frame), .sent)
        XCTAssertEqual(rig.rxDescriptor(0).flags & 0xFF00_0000, 0x0200_0000)
        XCTAssertEqual(rig.rxDescriptor(1503).flags & 0xFF00_0000, 0x0100_0000)
        XCTAssertEqual(rig.rxDescriptor(1503).misc & 0xFFF, 1504)
        XCTAssertEqual(rig.rxDescriptor(1504).flags & 0x8000_0000, 0x8000_0000)
    }

    // MARK: descriptor formats

    func testSWStyle3SwapsDescriptorWords() throws {
        let rig = try makeRig()
        let peer = makePeer()
        rig.bringUp(style: 3)
        XCTAssertEqual(rig.bcr(20), 0x0303)
        let frame = VlanceRig.frame(to: peer.mac, from: rig.mac, length: 90)
        rig.putTx(0, [frame])
        rig.setCSR(0, 0x0048)
        XCTAssertEqual(peer.frames, [frame])
        // Word 0 carries misc/MCNT and word 2 the buffer address in SWSTYLE 3.
        let incoming = VlanceRig.frame(to: rig.mac, from: peer.mac, length: 90)
        XCTAssertEqual(peer.send(incoming), .sent)
        let word0 = rig.get32(UInt64(VlanceRig.rxRing))
        let word2 = rig.get32(UInt64(VlanceRig.rxRing) + 8)
        XCTAssertEqual(word0 & 0xFFF, 94)
        XCTAssertEqual(UInt64(word2), VlanceRig.rxBuffer(0))
        XCTAssertEqual(rig.memory(at: VlanceRig.rxBuffer(0), count: 90), incoming)
    }

    func testSWStyle0SixteenBitStructures() throws {
        let rig = try makeRig()
        let peer = makePeer()
        rig.bringUp(style: 0)
        XCTAssertEqual(rig.bcr(20), 0x0200)
        let frame = VlanceRig.frame(to: peer.mac, from: rig.mac, length: 70)
        rig.putTx(0, [Array(frame[0..<30]), Array(frame[30...])])
        rig.setCSR(0, 0x0048)
        XCTAssertEqual(peer.frames, [frame])
        let incoming = VlanceRig.frame(to: rig.mac, from: peer.mac, length: 70)
        XCTAssertEqual(peer.send(incoming), .sent)
        let rmd = rig.rxDescriptor(0)
        XCTAssertEqual(rmd.flags & 0xFF00_0000, 0x0300_0000)
        XCTAssertEqual(rmd.misc & 0xFFF, 74)
        XCTAssertEqual(rig.memory(at: VlanceRig.rxBuffer(0), count: 70), incoming)
    }

    func testInternalLoopbackReceivesOwnTransmission() throws {
        let rig = try makeRig()
        let peer = makePeer()
        rig.bringUp(style: 2, mode: 0x0044)   // LOOP | INTL
        let frame = VlanceRig.frame(to: rig.mac, from: rig.mac, length: 64)
        rig.putTx(0, [frame])
        rig.setCSR(0, 0x0048)
        XCTAssertEqual(peer.frames.count, 0, "nothing on the wire")
        XCTAssertEqual(rig.rxDescriptor(0).flags & 0xFF00_0000, 0x0300_0000)
        XCTAssertEqual(rig.memory(at: VlanceRig.rxBuffer(0), count: 64), frame)
        // Looped back with no receive buffer, the frame is missed (no switch to hold it).
        rig.ackAll()
        rig.replenishRx(owned: false)
        rig.putTx(1, [frame])
        rig.setCSR(0, 0x0048)
        XCTAssertEqual(rig.csr(0) & 0x1000, 0x1000, "MISS")
        XCTAssertEqual(rig.csr(112), 1, "missed frame count")
    }

    // MARK: saved state

    func testSaveAndLoadRoundTrip() throws {
        let rig = try makeRig()
        let peer = makePeer()
        rig.bringUp(style: 3)
        rig.write(0x10, 0, size: 4)   // DWIO
        rig.dwio = true
        for _ in 0..<3 { XCTAssertEqual(peer.send(VlanceRig.frame(to: rig.mac, from: peer.mac, length: 60)), .sent) }
        rig.setCSR(3, 0x0200)
        let before = [0, 3, 4, 15, 58, 72, 74, 76, 78, 24, 25, 30, 31, 12, 13, 14].map { rig.csr($0) }
        XCTAssertTrue(rig.intx, "RINT pending")
        let section = try XCTUnwrap(try rig.device.saveState())
        XCTAssertEqual(section.name, "vlance")
        XCTAssertEqual(section.version, 1)

        rig.device.reset()
        rig.dwio = false
        XCTAssertEqual(rig.csr(0), 0x0004)
        XCTAssertFalse(rig.intx)
        try rig.device.loadState(section)
        rig.dwio = true
        XCTAssertEqual([0, 3, 4, 15, 58, 72, 74, 76, 78, 24, 25, 30, 31, 12, 13, 14].map { rig.csr($0) }, before)
        XCTAssertTrue(rig.intx, "INTx re-driven from the registers")
        // The ring position survived: the next frame lands in descriptor 3.
        XCTAssertEqual(peer.send(VlanceRig.frame(to: rig.mac, from: peer.mac, length: 60)), .sent)
        XCTAssertEqual(rig.rxDescriptor(3).flags & 0x8300_0000, 0x0300_0000)

        // A hostile state is clamped, not trusted.
        var evil = section
        evil.fields["rxLen"] = .init(type: HV_STATE_U32, bytes: [0, 0, 0, 0x40])
        evil.fields["rxIndex"] = .init(type: HV_STATE_U32, bytes: [0xFF, 0xFF, 0xFF, 0xFF])
        try rig.device.loadState(evil)
        XCTAssertEqual(rig.csr(76), 0xFFFF, "ring length clamped to 1")
        var wrongType = section
        wrongType.fields["rap"] = .init(type: HV_STATE_U32, bytes: [0, 0, 0, 0])
        XCTAssertThrowsError(try rig.device.loadState(wrongType))
    }

    // MARK: concurrency

    /// Two NICs on one switch sending to each other from two threads while the poll timer
    /// runs: every send delivers synchronously into the other NIC, so a lock held across
    /// net_send would deadlock here.
    func testTwoNICsSendingToEachOtherDoNotDeadlock() throws {
        let a = try makeRig(mac: "00:50:56:00:00:0a")
        let b = try makeRig(mac: "00:50:56:00:00:0b")
        a.bringUp(style: 2)
        b.bringUp(style: 2)
        let done = DispatchSemaphore(value: 0)
        let iterations = 3000
        for (me, other) in [(a, b), (b, a)] {
            Thread.detachNewThread {
                let frame = VlanceRig.frame(to: other.mac, from: me.mac, length: 64)
                for i in 0..<iterations {
                    me.putTx(i % 16, [frame])
                    me.setCSR(0, 0x0048)
                    if i % 8 == 0 { me.replenishRx() }
                    me.setCSR(0, 0x7F40)
                }
                done.signal()
            }
        }
        XCTAssertEqual(done.wait(timeout: .now() + 120), .success)
        XCTAssertEqual(done.wait(timeout: .now() + 120), .success)
        let port = try XCTUnwrap(a.port(in: switches))
        XCTAssertGreaterThan(port.counters.txFrames, 0)
    }

    // MARK: fuzz

    /// One million random register accesses, descriptor scribbles, TDMDs and incoming
    /// frames (fixed seed). Nothing may crash, and every operation must return promptly.
    func testFuzzOneMillionOperations() throws {
        let rig = try makeRig(quiet: true)
        let peer = makePeer(mac: [0x02, 0x00, 0x00, 0x00, 0x00, 0x01])
        peer.recording = false
        var rng = VlanceSplitMix(seed: 0x5EED_1A7C_E000_0001)
        let ram = try XCTUnwrap(rig.rig.memory.pointer(at: 0, length: VlanceRig.memorySize))
        // A pool of random bytes for frames and scribbles.
        var pool = [UInt8](repeating: 0, count: 1 << 16)
        for i in 0..<pool.count { pool[i] = UInt8(truncatingIfNeeded: rng.next()) }
        let macs: [[UInt8]] = [rig.mac, [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF], [0x01, 0x00, 0x5E, 0x00, 0x00, 0xFB],
                               [0x00, 0x50, 0x56, 0x00, 0x00, 0x42]]
        let interesting: [UInt32] = [0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 24, 25, 30, 31,
                                     47, 58, 72, 74, 76, 78, 88, 89, 112, 124]
        let operations = 1_000_000
        let budget: TimeInterval = 60
        let start = Date()
        var worst: UInt64 = 0
        var frame = [UInt8](repeating: 0, count: 1700)
        rig.bringUp(style: 2)
        var op = 0
        while op < operations {
            let t0 = DispatchTime.now().uptimeNanoseconds
            let r = rng.next()
            let choice = Int(r % 100)
            let value = rng.next()
            switch choice {
            case 0..<18:
                // RAP, then RDP or BDP, in whichever mode the chip is in now.
                let reg = (value & 3) == 0 ? UInt32(truncatingIfNeeded: value >> 8) & 0x7F
                                           : interesting[Int((value >> 8) % UInt64(interesting.count))]
                let data = UInt64(truncatingIfNeeded: value >> 24) & 0xFFFF
                let mode = rig.isDWIO
                rig.write(mode ? 0x14 : 0x12, UInt64(reg), size: mode ? 4 : 2)
                rig.write((value & 4) == 0 ? 0x10 : (mode ? 0x1C : 0x16), reg == 0 ? data & 0x7F4F : data,
                          size: mode ? 4 : 2, bar: Int((value >> 40) & 1))
            case 18..<28:
                // Any register, any width, either BAR.
                rig.write(value & 0x1F, value >> 16, size: [1, 2, 4, 8][Int((value >> 8) & 3)],
                          bar: Int((value >> 12) & 1))
            case 28..<40:
                _ = rig.read(value & 0x1F, size: [1, 2, 4, 8][Int((value >> 8) & 3)], bar: Int((value >> 12) & 1))
            case 40..<46:
                // Garbage over the descriptor rings.
                let ring = (value & 1) == 0 ? VlanceRig.rxRing : VlanceRig.txRing
                let at = Int(ring) + Int((value >> 1) % 1024) * 8
                let src = Int((value >> 16) % UInt64(pool.count - 16))
                pool.withUnsafeBytes { (ram + at).copyMemory(from: $0.baseAddress! + src, byteCount: 16) }
            case 46..<58:
                // Plausible descriptors near the current ring positions, in the current
                // format: sane or random lengths and flags, buffers in RAM or beyond it, and
                // now and then a chain that never ends.
                let transmit = (value & 1) == 0
                var first = Int((value >> 1) % 24)
                var ringBase = UInt64(transmit ? rig.txRingBase : rig.rxRingBase)
                if (value >> 5) & 1 == 0 {
                    // Aim at the descriptor the chip looks at next (CXDA / CRDA).
                    let low = transmit ? 34 : 28
                    ringBase = UInt64(rig.csr(low) | rig.csr(low + 1) << 16)
                    first = 0
                }
                let chain = (value >> 6) & 7 == 0 ? 1 + Int((value >> 9) % 40) : 1
                for k in 0..<chain {
                    let v = rng.next()
                    let sane = v & 3 != 0
                    let base = sane ? UInt32(0x10000 + (v >> 8) % 0x1E_0000) : UInt32(truncatingIfNeeded: (v >> 8) % 0x24_0000)
                    var flags: UInt32
                    if sane {
                        let length = transmit ? 14 + Int((v >> 32) % 1560) : 64 + Int((v >> 32) % 1600)
                        flags = 0x8000_0000 | VlanceRig.negativeLength(length)
                        if transmit {
                            if k == 0 { flags |= 0x0200_0000 }
                            if k == chain - 1 && chain < 30 { flags |= 0x0100_0000 }
                        }
                    } else {
                        flags = 0x8000_0000 | UInt32(truncatingIfNeeded: v >> 20) & 0x7FFF_FFFF
                    }
                    let at = ringBase &+ UInt64((first + k) % 512) &* rig.descriptorSize
                    if at + 16 <= UInt64(VlanceRig.memorySize) {
                        rig.putDescriptor(at: at, base: base, flags: flags, misc: 0)
                    }
                }
            case 58..<70:
                rig.setCSR(0, 0x0048)   // TDMD
            case 70..<92:
                let length = 14 + Int(value % 1600)
                let src = Int((value >> 16) % UInt64(pool.count - 1600))
                frame.withUnsafeMutableBytes { f in
                    pool.withUnsafeBytes { f.baseAddress!.copyMemory(from: $0.baseAddress! + src, byteCount: length) }
                }
                let dst = macs[Int((value >> 12) & 3)]
                for i in 0..<6 { frame[i] = dst[i] }
                _ = frame.withUnsafeBytes { peer.port.send(UnsafeRawBufferPointer(rebasing: $0[0..<length])) }  // no waiting
            case 92..<93:
                rig.device.reset()
                rig.dwio = false
            case 93..<99:
                let style = [0, 2, 3, 1, 7][Int(value % 5)]
                rig.bringUp(style: style, rlen: UInt8((value >> 8) % 10), tlen: UInt8((value >> 12) % 10),
                            mode: UInt16(truncatingIfNeeded: value >> 16) & ((value >> 40) & 7 == 0 ? 0x8045 : 0x8001), writeDescriptors: (value >> 32) & 1 == 0)
                if (value >> 33) & 1 == 0 { rig.setCSR(3, 0x0040) }   // DXSUFLO: keep transmitting after UFLO
            default:
                _ = rig.read(rig.isDWIO ? 0x18 : 0x14, size: rig.isDWIO ? 4 : 2)   // RESET
            }
            let spent = DispatchTime.now().uptimeNanoseconds - t0
            worst = max(worst, spent)
            op += 1
            if op % 65_536 == 0 && Date().timeIntervalSince(start) > budget {
                XCTFail("fuzz exceeded its \(budget) s budget after \(op) operations")
                break
            }
        }
        let elapsed = Date().timeIntervalSince(start)
        let counters = try XCTUnwrap(rig.port(in: switches)).counters
        print("vlance fuzz: \(op) operations in \(String(format: "%.1f", elapsed)) s, slowest \(worst / 1000) µs; " +
              "NIC port: \(counters)")
        XCTAssertGreaterThan(counters.txFrames, 1000, "the fuzz should make the NIC transmit")
        XCTAssertGreaterThan(counters.rxFrames, 1000, "the fuzz should make the NIC receive")
        XCTAssertEqual(op, operations)
        XCTAssertLessThan(worst, 500_000_000, "an operation took \(worst / 1_000_000) ms")

        // The device still works afterwards.
        rig.device.reset()
        rig.dwio = false
        _ = rig.read(0x14, size: 2)
        XCTAssertEqual(rig.csr(0), 0x0004)
        peer.recording = true
        rig.bringUp(style: 2)
        let probe = VlanceRig.frame(to: peer.mac, from: rig.mac, length: 60)
        rig.putTx(0, [probe])
        rig.setCSR(0, 0x0048)
        XCTAssertEqual(peer.frames.last, probe)
    }

    // MARK: helpers

    func waitUntil(_ what: String, _ condition: () -> Bool) {
        let deadline = Date().addingTimeInterval(5)
        while !condition() {
            if Date() > deadline { XCTFail("timed out waiting for \(what)"); return }
            usleep(200)
        }
    }
}

/// A deterministic generator for the fuzz test.
struct VlanceSplitMix {
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

/// A port on a switch that records the frames it receives. Reading `frames` or `count`,
/// and `send`, first wait until the switch has delivered everything (ports are queues).
final class VlanceTestPeer: @unchecked Sendable {
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

    /// Waits until the switch has delivered every queued frame (or holds it for a NIC).
    func settle() -> Bool { sw.waitUntilDelivered() }

    /// Sends a frame and waits until it (and anything it caused) has been delivered.
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

/// One VM's worth of host objects around a Vlance instance, plus a little pcnet32-style
/// driver (WIO or DWIO register access, init block, descriptor rings in guest RAM).
final class VlanceRig: @unchecked Sendable {
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

    static let memorySize = 2 << 20
    static let initBlock: UInt64 = 0x1000
    static let rxRing: UInt32 = 0x2000
    static let txRing: UInt32 = 0x4000
    static func rxBuffer(_ i: Int) -> UInt64 { 0x10000 + UInt64(i) * 0x800 }
    static func txBuffer(_ i: Int, part: Int = 0) -> UInt64 { 0x40000 + UInt64(i) * 0x2000 + UInt64(part) * 0x800 }

    let rig: Parts
    let sink = Sink()
    let device: PluginDevice
    let mac: [UInt8]
    var dwio = false
    var style = 2
    var rxCount = 16
    var rxBufferSize = 1544

    init(model: UnsafePointer<hv_device_model>, switches: SwitchRegistry, mac: String, network: String,
         extra: [String: String], quiet: Bool) throws {
        self.mac = mac.split(separator: ":").map { UInt8($0, radix: 16)! }
        let memory = try GuestMemory(size: UInt64(Self.memorySize))
        let clock = VMClock()
        let timers = TimerQueue(clock: clock, name: "vlance-test")
        timers.start()
        let ports = AddressBus()
        let bridge = try PCIHostBridge(portBus: ports, mmioBus: AddressBus(), interrupts: sink)
        rig = Parts(memory: memory, timers: timers, bridge: bridge)
        let backends = PluginBackends(switches: switches, diskQueue: DiskIOQueue(name: "vlance-disk")) { _ in nil }
        var logger = Logger(label: "vlance-test")
        if quiet { logger.logLevel = .error }   // the fuzz makes (rate-limited) guest-error warnings
        var config = ["generatedaddress": mac, "networkname": network]
        for (k, v) in extra { config[k.lowercased()] = v }
        let context = PluginDeviceContext(
            vmName: "vm-\(mac)", prefix: "ethernet0", memory: memory, clock: clock, timers: timers, pci: bridge,
            configValue: { config[$0.lowercased()] }, logger: logger, backends: backends)
        device = PluginDevice(model: model, pluginName: "vlance", context: context)
        try device.create()
        try bridge.assignResources()
        try device.realize()
        device.reset()
        // Memory and I/O decoding plus bus mastering, as pci_set_master does.
        ports.write(0xCF8, size: 4, value: UInt64(0x8000_0000 | UInt32(device.function!.slot) << 11 | 0x04))
        ports.write(0xCFC, size: 2, value: 0x0007)
    }

    func tearDown() {
        device.destroy()
        rig.timers.stop()
    }

    func port(in switches: SwitchRegistry) -> VirtualPort? {
        switches.virtualSwitch(named: "testnet").ports.first { $0.name == "vm-\(macString).ethernet0" }
    }

    var macString: String { mac.map { String(format: "%02x", $0) }.joined(separator: ":") }

    var intx: Bool {
        sink.level(PCIHostBridge.pirqToGSI[(1 - 1 + device.function!.slot - 1) & 3])
    }

    var isDWIO: Bool { dwio }

    // MARK: register access

    func read(_ offset: UInt64, size: Int, bar: Int = 0) -> UInt64 {
        device.barRead(bar: bar, offset: offset, size: size)
    }

    func write(_ offset: UInt64, _ value: UInt64, size: Int, bar: Int = 0) {
        device.barWrite(bar: bar, offset: offset, size: size, value: value)
        if size == 4 && offset == 0x10 { dwio = true }
    }

    /// An indexed register: RAP selects `n`, then the data port (RDP for CSRs, BDP for
    /// BCRs) is read or written, in DWIO or WIO mode.
    private func indexedRead(_ n: Int, data: (dword: UInt64, word: UInt64), dwio useDWIO: Bool) -> UInt32 {
        if useDWIO {
            write(0x14, UInt64(n), size: 4)
            return UInt32(read(data.dword, size: 4))
        }
        write(0x12, UInt64(n), size: 2)
        return UInt32(read(data.word, size: 2))
    }

    private func indexedWrite(_ n: Int, _ v: UInt32, data: (dword: UInt64, word: UInt64)) {
        let size = dwio ? 4 : 2
        write(dwio ? 0x14 : 0x12, UInt64(n), size: size)
        write(dwio ? data.dword : data.word, UInt64(v), size: size)
    }

    func csr(_ n: Int) -> UInt32 { indexedRead(n, data: (0x10, 0x10), dwio: dwio) }
    func setCSR(_ n: Int, _ v: UInt32) { indexedWrite(n, v, data: (0x10, 0x10)) }
    func bcr(_ n: Int, dwio useDWIO: Bool? = nil) -> UInt32 { indexedRead(n, data: (0x1C, 0x16), dwio: useDWIO ?? dwio) }
    func setBCR(_ n: Int, _ v: UInt32) { indexedWrite(n, v, data: (0x1C, 0x16)) }

    /// Acknowledges every CSR0 status bit, keeping INEA.
    func ackAll() { setCSR(0, 0x7F40) }

    // MARK: memory

    func memory(at gpa: UInt64, count: Int) -> [UInt8] { (try? rig.memory.read(at: gpa, count: count)) ?? [] }
    func put(_ bytes: [UInt8], at gpa: UInt64) { try? rig.memory.write(bytes, at: gpa) }
    func put16(_ v: UInt16, at gpa: UInt64) { try? rig.memory.store(v, at: gpa) }
    func put32(_ v: UInt32, at gpa: UInt64) { try? rig.memory.store(v, at: gpa) }
    func get32(_ gpa: UInt64) -> UInt32 { (try? rig.memory.load(UInt32.self, at: gpa)) ?? 0 }
    func get16(_ gpa: UInt64) -> UInt16 { (try? rig.memory.load(UInt16.self, at: gpa)) ?? 0 }

    var descriptorSize: UInt64 { style == 0 ? 8 : 16 }
    var rxRingBase: UInt32 = VlanceRig.rxRing
    var txRingBase: UInt32 = VlanceRig.txRing

    /// Writes a descriptor given in the SWSTYLE 2 layout, in the current style.
    func putDescriptor(at gpa: UInt64, base: UInt32, flags: UInt32, misc: UInt32) {
        switch style {
        case 0:
            put16(UInt16(base & 0xFFFF), at: gpa)
            put16(UInt16((base >> 16) & 0xFF) | UInt16(flags >> 16) & 0xFF00, at: gpa + 2)
            put16(UInt16(flags & 0xFFFF), at: gpa + 4)
            put16(UInt16(misc >> 16), at: gpa + 6)
        case 3:
            put32(misc, at: gpa)
            put32(flags, at: gpa + 4)
            put32(base, at: gpa + 8)
            put32(0, at: gpa + 12)
        default:
            put32(base, at: gpa)
            put32(flags, at: gpa + 4)
            put32(misc, at: gpa + 8)
            put32(0, at: gpa + 12)
        }
    }

    /// Reads a descriptor back in the SWSTYLE 2 layout (`misc` is RMD2/TMD2; in SWSTYLE 0
    /// it is the 16-bit word 3, shifted left 16 for transmit errors).
    func descriptor(at gpa: UInt64, transmit: Bool) -> (base: UInt32, flags: UInt32, misc: UInt32) {
        switch style {
        case 0:
            let w1 = UInt32(get16(gpa + 2))
            let w3 = UInt32(get16(gpa + 6))
            return (UInt32(get16(gpa)) | (w1 & 0xFF) << 16, (w1 & 0xFF00) << 16 | UInt32(get16(gpa + 4)),
                    transmit ? w3 << 16 : w3)
        case 3:
            return (get32(gpa + 8), get32(gpa + 4), get32(gpa))
        default:
            return (get32(gpa), get32(gpa + 4), get32(gpa + 8))
        }
    }

    func rxDescriptor(_ i: Int) -> (base: UInt32, flags: UInt32, misc: UInt32) {
        descriptor(at: UInt64(rxRingBase) + UInt64(i) * descriptorSize, transmit: false)
    }

    func txDescriptor(_ i: Int) -> (base: UInt32, flags: UInt32, misc: UInt32) {
        descriptor(at: UInt64(txRingBase) + UInt64(i) * descriptorSize, transmit: true)
    }

    static func negativeLength(_ n: Int) -> UInt32 { UInt32(0x1_0000 - n) & 0x0FFF | 0xF000 }

    /// Gives the first receive descriptors (at most 64: tests never need more) to the chip.
    func replenishRx(owned: Bool = true) {
        for i in 0..<min(rxCount, 64) {
            putDescriptor(at: UInt64(rxRingBase) + UInt64(i) * descriptorSize, base: UInt32(Self.rxBuffer(i)),
                          flags: (owned ? 0x8000_0000 : 0) | Self.negativeLength(rxBufferSize), misc: 0)
        }
    }

    /// Puts a frame into transmit descriptors starting at `index`, one buffer per part,
    /// with STP on the first and ENP on the last; OWN is set on the first one last.
    func putTx(_ index: Int, _ parts: [[UInt8]], lastHasENP: Bool = true) {
        for (k, part) in parts.enumerated().reversed() {
            let i = (index + k) % 16
            let buffer = Self.txBuffer(i, part: 0)
            put(part, at: buffer)
            var flags: UInt32 = 0x8000_0000 | Self.negativeLength(part.count)
            if k == 0 { flags |= 0x0200_0000 }
            if k == parts.count - 1 && lastHasENP { flags |= 0x0100_0000 }
            putDescriptor(at: UInt64(txRingBase) + UInt64(i) * descriptorSize, base: UInt32(buffer), flags: flags, misc: 0)
        }
    }

    /// pcnet32_open: reset, SWSTYLE, init block, CSR1/2, CSR4, INIT, wait for IDON, then
    /// STRT | INEA (`start`) and acknowledge IDON.
    func bringUp(style: Int, rlen: UInt8 = 4, tlen: UInt8 = 4, mode: UInt16 = 0, start: Bool = true,
                 rxOwned: Bool = true, rxBufferSize: Int = 1544,
                 rxRing: UInt32 = VlanceRig.rxRing, txRing: UInt32 = VlanceRig.txRing,
                 writeDescriptors: Bool = true) {
        _ = read(dwio ? 0x18 : 0x14, size: dwio ? 4 : 2)
        setBCR(20, UInt32(style))
        self.style = style == 0 || style == 2 || style == 3 ? style : (style == 1 ? 2 : 0)
        let sixteenBit = self.style == 0
        let rl = sixteenBit ? min(rlen, 7) : rlen
        let tl = sixteenBit ? min(tlen, 7) : tlen
        rxCount = min(1 << Int(min(rl, 9)), 512)
        self.rxBufferSize = rxBufferSize
        rxRingBase = sixteenBit ? rxRing & 0x00FF_FFF8 : rxRing
        txRingBase = sixteenBit ? txRing & 0x00FF_FFF8 : txRing
        var block: [UInt8] = []
        func le16(_ v: UInt16) { block += [UInt8(v & 0xFF), UInt8(v >> 8)] }
        func le32(_ v: UInt32) { le16(UInt16(v & 0xFFFF)); le16(UInt16(v >> 16)) }
        le16(mode)
        if sixteenBit {
            block += mac
            for _ in 0..<4 { le16(0) }
            le32(rxRingBase | UInt32(rl) << 29)
            le32(txRingBase | UInt32(tl) << 29)
        } else {
            block += [rl << 4, tl << 4]
            block += mac
            le16(0)
            for _ in 0..<4 { le16(0) }
            le32(rxRingBase)
            le32(txRingBase)
        }
        put(block, at: Self.initBlock)
        if writeDescriptors {
            if UInt64(rxRingBase) < UInt64(Self.memorySize) { replenishRx(owned: rxOwned) }
            if UInt64(txRingBase) < UInt64(Self.memorySize) {
                for i in 0..<16 {
                    putDescriptor(at: UInt64(txRingBase) + UInt64(i) * descriptorSize, base: 0, flags: 0xF000, misc: 0)
                }
            }
        }
        setCSR(1, UInt32(Self.initBlock & 0xFFFF))
        setCSR(2, UInt32(Self.initBlock >> 16))
        setCSR(4, 0x0915)
        setCSR(0, 0x0001)
        guard start else { return }
        setCSR(0, 0x0042)
        setCSR(0, 0x0140)
    }

    // MARK: frames

    static func frame(to dst: [UInt8], from src: [UInt8], length: Int) -> [UInt8] {
        var f = dst + src + [0x08, 0x00]
        while f.count < length { f.append(UInt8(truncatingIfNeeded: f.count &* 7 &+ 3)) }
        return Array(f.prefix(length))
    }

    /// CRC-32 register (initial ~0, reflected, no final inversion), as the LADRF hash uses it.
    static func crcLE(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for b in bytes {
            crc ^= UInt32(b)
            for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
        }
        return crc
    }

    static func fcs(_ bytes: [UInt8]) -> [UInt8] {
        let v = ~crcLE(bytes)
        return [UInt8(v & 0xFF), UInt8((v >> 8) & 0xFF), UInt8((v >> 16) & 0xFF), UInt8(v >> 24)]
    }
}
