import Foundation
import PluginABI
import XCTest

/// The BusLogic plugin (Plugins/BusLogic), loaded as `libBusLogic.so` from the build
/// directory and driven the way the Linux `BusLogic` driver drives a BT-958, against a
/// mock host (MockSCSIHost) whose hv.scsi targets are in-memory disks.
final class BusLogicTests: XCTestCase {
    static let pluginPath: String = {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? ""
        return URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("libBusLogic.so").path
    }()

    static let model: UnsafePointer<hv_device_model>? = {
        guard let h = dlopen(pluginPath, RTLD_NOW), let sym = dlsym(h, HV_PLUGIN_ENTRY_SYMBOL) else { return nil }
        let entry = unsafeBitCast(sym, to: hv_plugin_entry_fn.self)()!
        guard let raw = entry.pointee.get_factory(HV_FACTORY_DEVICE) else { return nil }
        let factory = raw.assumingMemoryBound(to: hv_device_factory.self)
        return factory.pointee.models[0]
    }()

    static let mailboxBase = 0x10000
    static let ccbBase = 0x20000
    static let sgBase = 0x40000
    static let senseBase = 0x60000
    static let dataBase = 0x100000

    var hosts: [MockSCSIHost] = []

    func makeHost(disks: [UInt32: Int] = [0: 2048, 1: 2048], takenPorts: Set<UInt64> = []) throws -> MockSCSIHost {
        let model = try XCTUnwrap(Self.model, "\(Self.pluginPath) is not built (swift build --product BusLogic)")
        let h = MockSCSIHost(model: model, disks: disks)
        h.takenPorts = takenPorts
        XCTAssertEqual(h.create(), HV_OK)
        hosts.append(h)
        return h
    }

    override func tearDown() { hosts = [] }

    // MARK: identity and probe

    func testModelIdentityAndBARs() throws {
        let model = try XCTUnwrap(Self.model)
        XCTAssertEqual(String(cString: model.pointee.name), "buslogic")
        XCTAssertEqual(model.pointee.kind, HV_DEVICE_KIND_SCSI)
        let h = try makeHost()
        XCTAssertEqual(h.identity.vendor_id, 0x104B)
        XCTAssertEqual(h.identity.device_id, 0x1040)
        XCTAssertEqual(h.identity.class_code, 0x010000)
        XCTAssertEqual(h.identity.interrupt_pin, 1)
        XCTAssertEqual(h.bars.map(\.kind), [HV_BAR_IO, HV_BAR_MMIO32], "Linux rejects BAR0 not I/O or BAR1 not memory")
        XCTAssertEqual(h.bars.map(\.size), [0x20, 0x20])
        XCTAssertEqual(h.legacyRegions.map(\.base), [0x330, 0x230, 0x130])
        XCTAssertEqual(h.legacyRegions.map(\.size), [8, 8, 8])
    }

    func testCreateFailsClearlyWithoutSCSIExtension() throws {
        let model = try XCTUnwrap(Self.model)
        let h = MockSCSIHost(model: model, disks: [:])
        h.offerSCSI = false
        XCTAssertEqual(h.create(), HV_ENOTSUP)
        XCTAssertTrue(h.logLines.contains { $0.contains("hv.scsi/1") }, "\(h.logLines)")
    }

    /// blogic_probe, blogic_hwreset, blogic_checkadapter, blogic_rdconfig, blogic_initadapter
    /// and blogic_inquiry in the Linux driver's order, with its reply lengths.
    func testLinuxProbeSequence() throws {
        let h = try makeHost()
        // blogic_init_mm_probeinfo: PCI info, then the ISA port is disabled (no CMDC).
        let info = h.command(0x86, replyLength: 4)
        XCTAssertEqual(info.reply.count, 4)
        XCTAssertEqual(info.reply[0], 0, "ISA-compatible port 0x330 enabled at power-on")
        XCTAssertEqual(h.isaRead(0x330), 0x30, "the ISA window decodes the status register")
        XCTAssertFalse(h.command(0x95, [6]).invalid)
        XCTAssertEqual(h.interruptRegister, 0, "Modify I/O Address raises no Command Complete")
        XCTAssertEqual(h.isaRead(0x330), 0xFF, "the ISA window is off")
        XCTAssertEqual(h.command(0x86, replyLength: 4).reply[0], 6)
        XCTAssertEqual(h.command(0x91, [64 + 45, 1], replyLength: 1).reply, [0])
        XCTAssertEqual(h.command(0x04, replyLength: 4).reply, Array("AA50".utf8))

        // blogic_probe: status, interrupt, geometry.
        XCTAssertEqual(h.status, 0x30, "HARDY | INREQ")
        XCTAssertEqual(h.interruptRegister & 0x70, 0)
        XCTAssertNotEqual(h.read(3), 0xFF)
        // blogic_hwreset(true): DACT set, then cleared, then HARDY without DFAIL.
        h.write(0, 0x80)
        XCTAssertEqual(h.status & 0x80, 0x80)
        XCTAssertEqual(h.status, 0x30)
        XCTAssertEqual(h.isaRead(0x330), 0xFF, "a guest's reset keeps the ISA port off")
        XCTAssertEqual(h.abortCalls.map(\.0), [-1], "a hard reset resets the SCSI bus")

        // blogic_checkadapter and blogic_rdconfig.
        let ext = h.command(0x8D, [14], replyLength: 14)
        XCTAssertEqual(ext.reply.count, 14)
        XCTAssertEqual(ext.reply[0], UInt8(ascii: "E"))
        XCTAssertEqual(Int(ext.reply[2]) | Int(ext.reply[3]) << 8, 1024, "scatter/gather limit")
        XCTAssertEqual(ext.reply[13] & 1, 1, "wide")
        XCTAssertEqual(h.command(0x0B, replyLength: 3).reply, [0, 0, 7])
        let setup = h.command(0x0D, [34], replyLength: 34)
        XCTAssertEqual(setup.reply.count, 34)
        XCTAssertEqual(h.command(0x84, replyLength: 1).reply, [UInt8(ascii: "7")])
        let model = h.command(0x8B, [5], replyLength: 5).reply
        XCTAssertEqual(Array(model.prefix(3)), Array("958".utf8), "BT-958: model[3] of \"BT-958\" is '9', PCI")
        XCTAssertEqual(h.command(0x85, replyLength: 1).reply, [UInt8(ascii: "B")])
        XCTAssertEqual(h.command(0x86, replyLength: 4).reply[2] & 0x80, 0x80, "termination information valid")
        let autoscsi = h.command(0x91, [64, 64], replyLength: 64).reply
        XCTAssertEqual(autoscsi.count, 64)
        XCTAssertEqual(autoscsi[14], 7)

        // blogic_initadapter: extended mailboxes, strict round robin, extended LUN CCBs.
        XCTAssertFalse(h.initMailboxes(count: 211))
        XCTAssertEqual(h.status, 0x10, "HARDY, init no longer required")
        XCTAssertFalse(h.command(0x8F, [1]).invalid)
        XCTAssertFalse(h.command(0x96, [1]).invalid)
        let ext2 = h.command(0x8D, [14], replyLength: 14).reply
        XCTAssertEqual(ext2[4], 211)
        XCTAssertEqual(Int(h.le32(ext2, 5)), Self.mailboxBase)

        // blogic_inquiry (firmware >= 4.25): target devices, setup, synchronous period.
        XCTAssertEqual(h.command(0x24, replyLength: 2).reply, [0x03, 0x00])
        XCTAssertEqual(h.command(0x0A, replyLength: 8).reply, [1, 1, 0, 0, 0, 0, 0, 0])
        XCTAssertEqual(h.command(0x23, replyLength: 8).reply, [0, 0, 0, 0, 0, 0, 0, 0])
        XCTAssertEqual(h.command(0x0D, [34], replyLength: 34).reply.count, 34)
        XCTAssertEqual(h.command(0x8C, [16], replyLength: 16).reply.count, 16)
        XCTAssertFalse(h.irq, "every Command Complete was reset")
    }

    func testISAWindowMovesAndASecondAdapterHasNone() throws {
        let h = try makeHost()
        XCTAssertFalse(h.command(0x95, [3]).invalid, "to 0x234")
        XCTAssertEqual(h.isaRead(0x330), 0xFF)
        XCTAssertEqual(h.isaRead(0x234), 0x30)
        XCTAssertEqual(h.isaRead(0x237), 0x00, "geometry through the ISA window")
        XCTAssertEqual(h.isaRead(0x230), 0xFF, "the other window of the block is silent")
        h.isaWrite(0x235, 0x00)   // Test CMDC Interrupt through the ISA window
        XCTAssertEqual(h.interruptRegister, 0x84)
        h.isaWrite(0x234, 0x20)
        XCTAssertFalse(h.irq)
        XCTAssertEqual(h.command(0x86, replyLength: 4).reply[0], 3)
        // A second adapter in the VM: 0x330 is taken, so it has no ISA port at all.
        let second = try makeHost(takenPorts: [0x330])
        XCTAssertEqual(second.legacyRegions.count, 0)
        XCTAssertEqual(second.command(0x86, replyLength: 4).reply[0], 6)
        XCTAssertTrue(second.command(0x95, [0]).invalid, "no window to enable")
    }

    func testCommandCompleteInterruptAndItsReset() throws {
        let h = try makeHost()
        h.write(1, 0x00)   // Test CMDC Interrupt
        XCTAssertEqual(h.interruptRegister, 0x84, "INTV | CMDC")
        XCTAssertTrue(h.irq)
        h.write(0, 0x20)
        XCTAssertEqual(h.interruptRegister, 0)
        XCTAssertFalse(h.irq)
        // Disable Host Adapter Interrupt masks INTx, not the register.
        XCTAssertFalse(h.command(0x25, [0]).invalid)
        h.write(1, 0x00)
        XCTAssertEqual(h.interruptRegister, 0x84)
        XCTAssertFalse(h.irq)
        h.write(0, 0x20)
    }

    func testInvalidCommandsAndParameterFloods() throws {
        let h = try makeHost()
        let r = h.command(0x99)
        XCTAssertTrue(r.invalid, "unknown opcode: Command Invalid")
        XCTAssertEqual(h.status & 0x10, 0x10, "ready again")
        for op: UInt8 in [0x03, 0x0C, 0x1A, 0x1B, 0x83, 0x90, 0x92, 0x94, 0x9A, 0xA7, 0xFF] {
            XCTAssertTrue(h.command(op).invalid, "opcode 0x\(String(op, radix: 16))")
        }
        // More parameter bytes than the command takes: the first excess byte is invalid.
        h.write(1, 0x1F)    // echo: one parameter
        h.write(1, 0x5A)
        XCTAssertEqual(h.status & 0x04, 0x04, "reply waiting")
        h.write(1, 0x11)
        XCTAssertEqual(h.status & 0x05, 0x01, "Command Invalid, reply dropped")
        h.write(0, 0x20)
        for _ in 0..<10_000 { h.write(1, 0xA5) }   // flood: every byte is an invalid opcode
        XCTAssertEqual(h.status & 0x18, 0x10, "still ready")
        h.write(0, 0x20)
        XCTAssertEqual(h.command(0x1F, [0x42], replyLength: 1).reply, [0x42])
        // Parameter values out of range.
        XCTAssertTrue(h.command(0x95, [9]).invalid)
        XCTAssertTrue(h.command(0x8F, [2]).invalid)
        XCTAssertTrue(h.command(0x96, [7]).invalid)
        // Mailbox counts and addresses out of range.
        XCTAssertTrue(h.command(0x81, [0, 0, 0, 1, 0]).invalid, "zero mailboxes")
        XCTAssertTrue(h.command(0x81, [255, 0xF0, 0xFF, 0x7F, 0]).invalid, "mailboxes past the end of RAM")
        XCTAssertTrue(h.command(0x81, [255, 0xF0, 0xFF, 0xFF, 0xFF]).invalid, "mailboxes across 4 GiB")
        XCTAssertEqual(h.status & 0x20, 0x20, "init still required")
        // Reply-length parameters are honoured, long ones zero-padded.
        XCTAssertEqual(h.command(0x8D, [200], replyLength: 255).reply.count, 200)
        XCTAssertEqual(h.command(0x0D, [0], replyLength: 8).reply.count, 0)
        XCTAssertEqual(h.command(0x91, [250, 10], replyLength: 10).reply.count, 10, "local RAM wraps at 256")
        // Reads of the other BAR offsets and of BAR1.
        XCTAssertEqual(h.read(4), 0xFF)
        XCTAssertEqual(h.read(0, size: 1, bar: 1) & 0x10, 0x10)
    }

    // MARK: I/O through the mailboxes

    func testWriteAndReadBackWithScatterGather() throws {
        let h = try makeHost()
        h.bringUp()
        let pattern = (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
        h.poke(Self.dataBase, Array(pattern[0..<1000]))
        h.poke(Self.dataBase + 0x10000, Array(pattern[1000..<3096]))
        h.poke(Self.dataBase + 0x20000, Array(pattern[3096..<4096]))
        // WRITE(10) LBA 8, 8 blocks, three S/G entries (plus one of length zero).
        h.putSG(0, [(1000, Self.dataBase), (0, 0), (2096, Self.dataBase + 0x10000), (1000, Self.dataBase + 0x20000)])
        h.putCCB(0, opcode: 0x02, direction: 2, cdb: [0x2A, 0, 0, 0, 0, 8, 0, 0, 8, 0], target: 1,
                 dataLength: 32, data: UInt32(Self.sgBase))
        h.start(mailbox: 0, ccb: 0)
        XCTAssertEqual(h.queue.count, 1)
        XCTAssertEqual(h.queue[0].segments.count, 3, "the zero-length entry is dropped")
        XCTAssertEqual(h.queue[0].direction, HV_SCSI_DATA_OUT)
        XCTAssertEqual(h.peek(Self.mailboxBase + 7, 1), [0], "outgoing mailbox handed back free")
        h.completeAll()
        XCTAssertTrue(h.irq)
        XCTAssertEqual(h.interruptRegister, 0x81, "INTV | IMBL")
        XCTAssertEqual(h.incoming(0), Incoming(ccb: UInt32(h.ccbAddress(0)), adapter: 0, target: 0, completion: 1))
        h.write(0, 0x20)
        XCTAssertFalse(h.irq)
        XCTAssertEqual(Array(h.disks[1]![8 * 512 ..< 16 * 512]), pattern)

        // READ(10) back, unchecked direction (as Linux sends most commands), one buffer.
        h.freeIncoming(0)
        h.putCCB(1, opcode: 0x00, direction: 0, cdb: [0x28, 0, 0, 0, 0, 8, 0, 0, 8, 0], target: 1,
                 dataLength: 4096, data: UInt32(Self.dataBase + 0x40000))
        h.start(mailbox: 1, ccb: 1)
        XCTAssertEqual(h.queue[0].direction, HV_SCSI_DATA_BY_CDB)
        h.completeAll()
        XCTAssertEqual(h.incoming(1).completion, 1)
        XCTAssertEqual(h.peek(Self.dataBase + 0x40000, 4096), pattern)
    }

    func testResidualCCBReportsTheShortfall() throws {
        let h = try makeHost()
        h.bringUp()
        // INQUIRY for 36 bytes into a 96-byte buffer, residual CCB (opcode 3).
        h.putCCB(0, opcode: 0x03, direction: 1, cdb: [0x12, 0, 0, 0, 36, 0], target: 0,
                 dataLength: 96, data: UInt32(Self.dataBase))
        h.start(mailbox: 0, ccb: 0)
        h.completeAll()
        XCTAssertEqual(h.incoming(0).completion, 1)
        XCTAssertEqual(h.peek32(h.ccbAddress(0) + 4), 60, "data length replaced by the residual")
    }

    func testCheckConditionWritesAutoSense() throws {
        let h = try makeHost()
        h.bringUp()
        // READ(10) past the end of the 2048-block disk; 18-byte sense allocation.
        h.putCCB(0, opcode: 0x00, direction: 1, cdb: [0x28, 0, 0, 0, 0x08, 0, 0, 0, 1, 0], target: 0,
                 dataLength: 512, data: UInt32(Self.dataBase), senseLength: 18, sense: UInt32(Self.senseBase))
        h.start(mailbox: 0, ccb: 0)
        h.completeAll()
        XCTAssertEqual(h.incoming(0), Incoming(ccb: UInt32(h.ccbAddress(0)), adapter: 0, target: 2, completion: 4))
        XCTAssertEqual(h.peek(h.ccbAddress(0) + 14, 2), [0x00, 0x02], "statuses in the CCB too")
        let sense = h.peek(Self.senseBase, 18)
        XCTAssertEqual(sense[0], 0x70)
        XCTAssertEqual(sense[2], 5, "ILLEGAL REQUEST")
        XCTAssertEqual(sense[12], 0x21, "LBA out of range")

        // Sense length 1 disables automatic sense; 0 means 14 bytes.
        h.poke(Self.senseBase, [UInt8](repeating: 0xEE, count: 32))
        h.freeIncoming(0)
        h.putCCB(1, opcode: 0x00, direction: 1, cdb: [0x28, 0, 0, 0, 0x08, 0, 0, 0, 1, 0], target: 0,
                 dataLength: 512, data: UInt32(Self.dataBase), senseLength: 1, sense: UInt32(Self.senseBase))
        h.start(mailbox: 1, ccb: 1)
        h.completeAll()
        XCTAssertEqual(h.peek(Self.senseBase, 1), [0xEE])
        h.putCCB(2, opcode: 0x00, direction: 1, cdb: [0x28, 0, 0, 0, 0x08, 0, 0, 0, 1, 0], target: 0,
                 dataLength: 512, data: UInt32(Self.dataBase), senseLength: 0, sense: UInt32(Self.senseBase))
        h.start(mailbox: 2, ccb: 2)
        h.completeAll()
        XCTAssertEqual(h.peek(Self.senseBase, 15), Array(sense.prefix(14)) + [0xEE])
        // A sense pointer outside RAM: auto-sense failed.
        h.putCCB(3, opcode: 0x00, direction: 1, cdb: [0x28, 0, 0, 0, 0x08, 0, 0, 0, 1, 0], target: 0,
                 dataLength: 512, data: UInt32(Self.dataBase), senseLength: 18, sense: 0xFFFF_0000)
        h.start(mailbox: 3, ccb: 3)
        h.completeAll()
        XCTAssertEqual(h.incoming(3).adapter, 0x1B)
    }

    func testAbsentTargetsTimeOutAndTheAdapterIDIsNoTarget() throws {
        let h = try makeHost()
        h.bringUp()
        h.putCCB(0, opcode: 0x00, direction: 3, cdb: [0, 0, 0, 0, 0, 0], target: 5, dataLength: 0, data: 0)
        h.start(mailbox: 0, ccb: 0)
        h.completeAll()
        XCTAssertEqual(h.incoming(0), Incoming(ccb: UInt32(h.ccbAddress(0)), adapter: 0x11, target: 0, completion: 4))
        h.putCCB(1, opcode: 0x00, direction: 3, cdb: [0, 0, 0, 0, 0, 0], target: 7, dataLength: 0, data: 0)
        h.start(mailbox: 1, ccb: 1)
        XCTAssertEqual(h.submitted, 1, "never reaches the host")
        XCTAssertEqual(h.incoming(1).adapter, 0x11)
    }

    func testHostileCCBsEndInAdapterErrors() throws {
        let h = try makeHost()
        h.bringUp()
        var box = 0
        func run(_ expect: UInt8, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
            h.start(mailbox: box, ccb: box)
            h.completeAll()
            XCTAssertEqual(h.incoming(box).completion, 4, what, file: file, line: line)
            XCTAssertEqual(h.incoming(box).adapter, expect, what, file: file, line: line)
            box += 1
        }
        h.putCCB(0, opcode: 0x55, direction: 0, cdb: [0, 0, 0, 0, 0, 0], target: 0, dataLength: 0, data: 0)
        run(0x16, "invalid CCB opcode")
        h.putCCB(1, opcode: 0x00, direction: 0, cdb: [], target: 0, dataLength: 0, data: 0)
        run(0x1A, "CDB length 0")
        h.putCCB(2, opcode: 0x00, direction: 0, cdb: [0x28, 0, 0, 0, 0, 0], target: 0, dataLength: 0, data: 0)
        h.poke(h.ccbAddress(2) + 2, [13])
        run(0x1A, "CDB length 13")
        h.putCCB(3, opcode: 0x00, direction: 0, cdb: [0, 0, 0, 0, 0, 0], target: 16, dataLength: 0, data: 0)
        run(0x1A, "target 16")
        h.putCCB(4, opcode: 0x02, direction: 1, cdb: [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], target: 0,
                 dataLength: 12, data: UInt32(Self.sgBase))
        run(0x1A, "S/G list length not a multiple of 8")
        h.putCCB(5, opcode: 0x02, direction: 1, cdb: [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], target: 0,
                 dataLength: 16, data: 0xFFFF_FF00)
        run(0x1A, "S/G list outside RAM")
        h.putCCB(6, opcode: 0x02, direction: 1, cdb: [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], target: 0,
                 dataLength: 8 * 1025, data: UInt32(Self.sgBase))
        run(0x1A, "S/G list longer than the adapter's limit")
        h.putSG(7, [(512, 0xFFFF_0000)])
        h.putCCB(7, opcode: 0x02, direction: 1, cdb: [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], target: 0,
                 dataLength: 8, data: UInt32(Self.sgBase + 7 * 0x100))
        run(0x20, "data segment outside RAM (the host's BAD_DMA)")
        h.putCCB(8, opcode: 0x00, direction: 2, cdb: [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], target: 0,
                 dataLength: 512, data: UInt32(Self.dataBase))
        run(0x12, "READ with a checked data-out direction")
        // A CCB pointer that is not RAM: the error can only go to the incoming mailbox.
        h.poke32(Self.mailboxBase + 8 * box, 0xFFFF_FFF0)
        h.poke(Self.mailboxBase + 8 * box + 7, [1])
        h.write(1, 0x02)
        XCTAssertEqual(h.incoming(box), Incoming(ccb: 0xFFFF_FFF0, adapter: 0x1A, target: 0, completion: 4))
        box += 1
        // An unknown action code.
        h.poke32(Self.mailboxBase + 8 * box, UInt32(h.ccbAddress(0)))
        h.poke(Self.mailboxBase + 8 * box + 7, [9])
        h.write(1, 0x02)
        XCTAssertEqual(h.incoming(box).adapter, 0x15)
        XCTAssertEqual(h.submitted, 2, "only the BAD_DMA and direction cases reached the host")
    }

    func testAbortInFlightAndAbortNotFound() throws {
        let h = try makeHost()
        h.bringUp()
        h.putCCB(0, opcode: 0x00, direction: 1, cdb: [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], target: 0,
                 dataLength: 512, data: UInt32(Self.dataBase))
        h.start(mailbox: 0, ccb: 0)
        h.poke32(Self.mailboxBase + 8, UInt32(h.ccbAddress(0)))
        h.poke(Self.mailboxBase + 15, [2])
        h.write(1, 0x02)
        XCTAssertEqual(h.incoming(0).completion, 0, "nothing yet: the command is still running")
        h.completeAll()
        XCTAssertEqual(h.incoming(0), Incoming(ccb: UInt32(h.ccbAddress(0)), adapter: 0, target: 0, completion: 2))
        h.poke32(Self.mailboxBase + 16, 0x1234_5600)
        h.poke(Self.mailboxBase + 23, [2])
        h.write(1, 0x02)
        XCTAssertEqual(h.incoming(1), Incoming(ccb: 0x1234_5600, adapter: 0, target: 0, completion: 3))
    }

    func testBusDeviceResetEndsTheTargetsCommands() throws {
        let h = try makeHost()
        h.bringUp()
        h.putCCB(0, opcode: 0x00, direction: 1, cdb: [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], target: 1,
                 dataLength: 512, data: UInt32(Self.dataBase))
        h.start(mailbox: 0, ccb: 0)
        h.putCCB(1, opcode: 0x81, direction: 0, cdb: [], target: 1, dataLength: 0, data: 0)
        h.start(mailbox: 1, ccb: 1)
        XCTAssertEqual(h.abortCalls.last?.0, 1)
        XCTAssertEqual(h.abortCalls.last?.1, 1)
        XCTAssertEqual(h.incoming(0), Incoming(ccb: UInt32(h.ccbAddress(0)), adapter: 0x25, target: 0, completion: 4))
        XCTAssertEqual(h.incoming(1), Incoming(ccb: UInt32(h.ccbAddress(1)), adapter: 0, target: 0, completion: 1))
        // The SCSI bus reset bit ends everything in flight with "host adapter reset".
        h.putCCB(2, opcode: 0x00, direction: 1, cdb: [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], target: 0,
                 dataLength: 512, data: UInt32(Self.dataBase))
        h.start(mailbox: 2, ccb: 2)
        h.write(0, 0x10)
        XCTAssertEqual(h.abortCalls.last?.0, -1)
        XCTAssertEqual(h.incoming(2).adapter, 0x22)
    }

    func testSoftResetForgetsRequestsInFlight() throws {
        let h = try makeHost()
        h.bringUp()
        h.putCCB(0, opcode: 0x00, direction: 1, cdb: [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], target: 0,
                 dataLength: 512, data: UInt32(Self.dataBase))
        h.start(mailbox: 0, ccb: 0)
        h.write(0, 0x40)
        XCTAssertEqual(h.abortCalls.last?.0, -1, "the targets end what the adapter dropped")
        XCTAssertEqual(h.abortCalls.last?.1, 0, "a soft reset does not reset the bus")
        XCTAssertEqual(h.status & 0x80, 0x80)
        XCTAssertEqual(h.status, 0x30, "mailboxes forgotten: init required")
        h.completeAll()
        XCTAssertEqual(h.incoming(0).completion, 0, "no completion after the reset")
        XCTAssertFalse(h.irq)
    }

    func testIncomingMailboxesFullHoldCompletionsUntilFreed() throws {
        let h = try makeHost()
        h.bringUp(count: 2)
        for i in 0..<2 {
            h.putCCB(i, opcode: 0x00, direction: 3, cdb: [0, 0, 0, 0, 0, 0], target: 0, dataLength: 0, data: 0)
            h.start(mailbox: i, ccb: i)
        }
        h.completeAll()
        // Both incoming mailboxes are full; two more commands complete into the queue.
        for i in 2..<4 {
            h.putCCB(i, opcode: 0x00, direction: 3, cdb: [0, 0, 0, 0, 0, 0], target: 0, dataLength: 0, data: 0)
            h.start(mailbox: i % 2, ccb: i)
        }
        h.completeAll()
        XCTAssertEqual(h.incoming(0, count: 2).ccb, UInt32(h.ccbAddress(0)))
        XCTAssertEqual(h.incoming(1, count: 2).ccb, UInt32(h.ccbAddress(1)))
        h.freeIncoming(0, count: 2)
        h.freeIncoming(1, count: 2)
        h.write(0, 0x20)    // the interrupt handler's reset lets the adapter post again
        XCTAssertEqual(h.incoming(0, count: 2).ccb, UInt32(h.ccbAddress(2)))
        XCTAssertEqual(h.incoming(1, count: 2).ccb, UInt32(h.ccbAddress(3)))
        XCTAssertTrue(h.irq)
    }

    func testLegacy24BitMailboxesAndCCBs() throws {
        let h = try makeHost()
        // Initialize Mailbox: count, 24-bit big-endian address.
        XCTAssertFalse(h.command(0x01, [4, 0x01, 0x00, 0x00]).invalid)
        let out = 0x10000, inbox = 0x10000 + 16
        let ccb = 0x20000
        let pattern = (0..<512).map { UInt8(truncatingIfNeeded: $0 ^ 0x5A) }
        h.poke(Self.dataBase, pattern)
        // WRITE(10) LBA 3, 1 block to target 1: byte 1 = target << 5 | out << 4.
        var c = [UInt8](repeating: 0, count: 64)
        c[0] = 0x00; c[1] = 1 << 5 | 1 << 4; c[2] = 10; c[3] = 14
        c[4] = 0; c[5] = 0x02; c[6] = 0x00                       // 512
        c[7] = 0x10; c[8] = 0x00; c[9] = 0x00                    // 0x100000
        for (i, b) in [0x2A, 0, 0, 0, 0, 3, 0, 0, 1, 0].enumerated() { c[18 + i] = UInt8(b) }
        h.poke(ccb, c)
        h.poke(out, [1, 0x02, 0x00, 0x00])
        h.write(1, 0x02)
        h.completeAll()
        XCTAssertEqual(h.peek(inbox, 4), [1, 0x02, 0x00, 0x00])
        XCTAssertEqual(Array(h.disks[1]![3 * 512 ..< 4 * 512]), pattern)
        XCTAssertEqual(h.command(0x0D, [8], replyLength: 8).reply[4...7], [4, 0x01, 0x00, 0x00])
    }

    func testOutgoingMailboxAvailableInterrupt() throws {
        let h = try makeHost()
        h.bringUp()
        h.write(1, 0x05)
        h.write(1, 0x01)
        XCTAssertEqual(h.interruptRegister, 0, "enabling it raises no Command Complete")
        XCTAssertEqual(h.status & 0x10, 0x10)
        h.putCCB(0, opcode: 0x00, direction: 3, cdb: [0, 0, 0, 0, 0, 0], target: 0, dataLength: 0, data: 0)
        h.start(mailbox: 0, ccb: 0)
        XCTAssertEqual(h.interruptRegister, 0x82, "INTV | OMBR: the outgoing mailbox is free again")
        XCTAssertTrue(h.irq)
    }

    func testBusMasteringOffStopsMailboxProcessing() throws {
        let h = try makeHost()
        h.bringUp()
        h.pciCommand = 0x0001
        h.putCCB(0, opcode: 0x00, direction: 3, cdb: [0, 0, 0, 0, 0, 0], target: 0, dataLength: 0, data: 0)
        h.start(mailbox: 0, ccb: 0)
        XCTAssertEqual(h.submitted, 0)
        h.pciCommand = 0x0007
        h.write(1, 0x02)
        XCTAssertEqual(h.submitted, 1)
    }

    // MARK: fuzz

    /// Random register writes, commands, mailbox and CCB contents and completion orders.
    /// Every step checks the register invariants; afterwards a hard reset must give a
    /// working adapter. 1M operations.
    func testFuzzRegistersCommandsAndMailboxes() throws {
        let operations = 1_000_000
        let h = try makeHost(disks: [0: 64, 3: 64])
        var rng = SplitMix(seed: 0xB05_1061C)
        let ccbOpcodes: [UInt8] = [0, 2, 3, 4, 0x81, 0x55]
        let cdbOps: [UInt8] = [0x00, 0x12, 0x25, 0x28, 0x2A, 0x03, 0xFF]
        for step in 0..<operations {
            switch rng.next() % 16 {
            case 0:
                h.write(0, UInt64(rng.next() & 0xF0 == 0xC0 ? 0x40 : rng.next() & 0x30))
            case 1, 2, 3:
                h.write(1, UInt64(rng.next() & 0xFF))
            case 4:
                _ = h.read(rng.next() % 32, size: [1, 2, 4][Int(rng.next() % 3)], bar: Int(rng.next() % 2))
            case 5:
                h.write(rng.next() % 32, rng.next(), size: [1, 2, 4][Int(rng.next() % 3)], bar: Int(rng.next() % 2))
            case 6:
                // A mailbox setup with a random count (sometimes absurd).
                let count = rng.next() % 8 == 0 ? UInt8(rng.next() & 0xFF) : UInt8(1 + rng.next() % 8)
                let base = rng.next() % 16 == 0 ? UInt32(truncatingIfNeeded: rng.next()) : UInt32(Self.mailboxBase)
                for b in [0x81, count, UInt8(base & 0xFF), UInt8(base >> 8 & 0xFF), UInt8(base >> 16 & 0xFF), UInt8(base >> 24)] {
                    h.write(1, UInt64(b))
                }
            case 7, 8:
                // A random CCB in one of 8 slots, started from a random outgoing mailbox.
                let i = Int(rng.next() % 8)
                var cdb = (0..<10).map { _ in UInt8(rng.next() & 0xFF) }
                cdb[0] = cdbOps[Int(rng.next() % UInt64(cdbOps.count))]
                if cdb[0] == 0x28 || cdb[0] == 0x2A { cdb[2...5] = [0, 0, 0, UInt8(rng.next() % 80)]; cdb[7] = 0; cdb[8] = UInt8(rng.next() % 4) }
                let sgCount = Int(rng.next() % 6)
                h.putSG(i, (0..<sgCount).map { _ in
                    (Int(rng.next() % 2048), rng.next() % 32 == 0 ? Int(truncatingIfNeeded: rng.next() & 0xFFFF_FFFF) : Self.dataBase + Int(rng.next() % 0x80000))
                })
                let op = ccbOpcodes[Int(rng.next() % UInt64(ccbOpcodes.count))]
                h.putCCB(i, opcode: op, direction: UInt8(rng.next() % 4), cdb: Array(cdb.prefix(Int(rng.next() % 13))),
                         target: UInt8(rng.next() % 18), dataLength: op == 2 || op == 4 ? UInt32(sgCount * 8) : UInt32(rng.next() % 4096),
                         data: op == 2 || op == 4 ? UInt32(Self.sgBase + i * 0x100) : UInt32(Self.dataBase),
                         senseLength: UInt8(rng.next() % 20), sense: UInt32(Self.senseBase))
                let box = Int(rng.next() % 8)
                h.poke32(Self.mailboxBase + 8 * box, UInt32(h.ccbAddress(i)))
                h.poke(Self.mailboxBase + 8 * box + 7, [UInt8(rng.next() % 4)])
                h.write(1, 0x02)
            case 9:
                // Random bytes over the mailboxes.
                h.poke(Self.mailboxBase + Int(rng.next() % 256), [UInt8(rng.next() & 0xFF)])
            case 10, 11:
                // Complete some requests, in a random order.
                if !h.queue.isEmpty {
                    let q = h.queue.remove(at: Int(rng.next() % UInt64(h.queue.count)))
                    var r = h.execute(q)
                    q.complete(h.device, q.tag, &r)
                }
            case 12:
                // The driver frees incoming mailboxes and resets the interrupt.
                for j in 0..<16 { h.poke(Self.mailboxBase + 8 * j + 7, [0]) }
                h.write(0, 0x20)
            case 13:
                h.pciCommand = rng.next() % 8 == 0 ? 0x0001 : 0x0007
            default:
                _ = h.read(UInt64(rng.next() % 4))
            }
            let s = UInt8(h.read(0) & 0xFF)
            if s & 0x02 != 0 { XCTFail("reserved status bit set at step \(step)"); break }
            let ir = h.interruptRegister
            if (ir & 0x0F != 0) != (ir & 0x80 != 0) { XCTFail("INTV disagrees at step \(step)"); break }
            if h.queue.count > 256 { XCTFail("more than 256 requests in flight at step \(step)"); break }
        }
        XCTAssertGreaterThan(h.submitted, 5_000, "random CCBs reached the SCSI layer")
        // Whatever happened, a hard reset gives a working adapter.
        h.completeAll()
        h.pciCommand = 0x0007
        h.write(0, 0x80)
        _ = h.status
        XCTAssertEqual(h.status, 0x30)
        h.bringUp()
        h.putCCB(0, opcode: 0x00, direction: 1, cdb: [0x12, 0, 0, 0, 36, 0], target: 3, dataLength: 36,
                 data: UInt32(Self.dataBase))
        h.start(mailbox: 0, ccb: 0)
        h.completeAll()
        XCTAssertEqual(h.incoming(0).completion, 1)
    }
}

/// A small deterministic generator (SplitMix64).
struct SplitMix {
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

struct Incoming: Equatable {
    var ccb: UInt32
    var adapter: UInt8
    var target: UInt8
    var completion: UInt8
}

/// The driver side, as Linux BusLogic does it.
extension MockSCSIHost {
    /// blogic_cmd: wait ready, opcode, parameters while nothing else happens, reply bytes
    /// while Data In Ready until Command Complete, then Interrupt Reset.
    @discardableResult
    func command(_ op: UInt8, _ params: [UInt8] = [], replyLength: Int = 0) -> (reply: [UInt8], invalid: Bool) {
        precondition(status & 0x18 == 0x10, "adapter not ready")
        write(1, UInt64(op))
        for p in params {
            if interruptRegister & 0x04 != 0 || status & 0x04 != 0 { break }
            write(1, UInt64(p))
        }
        if op == 0x95 { return ([], status & 0x01 != 0) }
        var reply: [UInt8] = []
        var last: UInt8 = 0
        for _ in 0..<1000 {
            let ir = interruptRegister
            last = status
            if ir & 0x04 != 0 { break }
            if last & 0x04 != 0 {
                let b = UInt8(read(1))
                if reply.count < replyLength { reply.append(b) }
            }
        }
        write(0, 0x20)
        return (reply, last & 0x01 != 0)
    }

    func le32(_ b: [UInt8], _ o: Int) -> UInt32 {
        UInt32(b[o]) | UInt32(b[o + 1]) << 8 | UInt32(b[o + 2]) << 16 | UInt32(b[o + 3]) << 24
    }

    @discardableResult
    func initMailboxes(count: UInt8) -> Bool {
        let b = UInt32(BusLogicTests.mailboxBase)
        return command(0x81, [count, UInt8(b & 0xFF), UInt8(b >> 8 & 0xFF), UInt8(b >> 16 & 0xFF), UInt8(b >> 24)]).invalid
    }

    /// Hard reset, extended mailboxes (16 by default), strict round robin.
    func bringUp(count: UInt8 = 16) {
        write(0, 0x80)
        _ = status
        poke(BusLogicTests.mailboxBase, [UInt8](repeating: 0, count: Int(count) * 16))
        precondition(!initMailboxes(count: count))
        precondition(!command(0x8F, [1]).invalid)
        unitAttention = []
    }

    func ccbAddress(_ i: Int) -> Int { BusLogicTests.ccbBase + i * 0x100 }

    func putCCB(_ i: Int, opcode: UInt8, direction: UInt8, cdb: [UInt8], target: UInt8, lun: UInt8 = 0,
                dataLength: UInt32, data: UInt32, senseLength: UInt8 = 1, sense: UInt32 = 0) {
        var c = [UInt8](repeating: 0, count: 40)
        c[0] = opcode
        c[1] = direction << 3
        c[2] = UInt8(cdb.count)
        c[3] = senseLength
        for k in 0..<4 { c[4 + k] = UInt8(dataLength >> (8 * k) & 0xFF); c[8 + k] = UInt8(data >> (8 * k) & 0xFF) }
        c[16] = target
        c[17] = lun
        for (k, b) in cdb.prefix(12).enumerated() { c[18 + k] = b }
        for k in 0..<4 { c[36 + k] = UInt8(sense >> (8 * k) & 0xFF) }
        poke(ccbAddress(i), c)
    }

    func putSG(_ i: Int, _ entries: [(Int, Int)]) {
        for (k, e) in entries.enumerated() {
            poke32(BusLogicTests.sgBase + i * 0x100 + 8 * k, UInt32(truncatingIfNeeded: e.0))
            poke32(BusLogicTests.sgBase + i * 0x100 + 8 * k + 4, UInt32(truncatingIfNeeded: e.1))
        }
    }

    /// blogic_write_outbox: CCB pointer first, then the action code, then the kick.
    func start(mailbox: Int, ccb: Int) {
        poke32(BusLogicTests.mailboxBase + 8 * mailbox, UInt32(ccbAddress(ccb)))
        poke(BusLogicTests.mailboxBase + 8 * mailbox + 7, [1])
        write(1, 0x02)
    }

    func incoming(_ i: Int, count: Int = 16) -> Incoming {
        let a = BusLogicTests.mailboxBase + count * 8 + i * 8
        let b = peek(a, 8)
        return Incoming(ccb: le32(b, 0), adapter: b[4], target: b[5], completion: b[7])
    }

    func freeIncoming(_ i: Int, count: Int = 16) {
        poke(BusLogicTests.mailboxBase + count * 8 + i * 8 + 7, [0])
    }
}
