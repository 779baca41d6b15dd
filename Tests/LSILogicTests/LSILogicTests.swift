import PluginABI
import XCTest

/// The LSILogic plugin (LSI53C1030 Fusion-MPT, Plugins/LSILogic), loaded as
/// `libLSILogic.so` and driven through a mock VMkernel (MockSCSIHost) the way mptbase
/// and SeaBIOS drive the adapter.
final class LSILogicTests: XCTestCase {
    func makeRig(targets: [Int: Int] = [0: 1 << 20, 1: 1 << 20]) throws -> (MockSCSIHost, MPTTestDriver) {
        let host = MockSCSIHost(targets: targets)
        try host.create()
        return (host, MPTTestDriver(host))
    }

    // MARK: identity, reset state

    func testModelIdentityAndBARs() throws {
        let model = try MockSCSIHost.loadModel()
        XCTAssertEqual(String(cString: model.pointee.name), "lsilogic")
        XCTAssertEqual(model.pointee.kind, HV_DEVICE_KIND_SCSI)
        XCTAssertEqual(model.pointee.flags & HV_DEVICE_THREAD_SAFE, HV_DEVICE_THREAD_SAFE)
        let (h, d) = try makeRig()
        XCTAssertEqual(h.identity.vendor_id, 0x1000)
        XCTAssertEqual(h.identity.device_id, 0x0030)
        XCTAssertEqual(h.identity.class_code, 0x01_00_00)
        XCTAssertEqual(h.identity.interrupt_pin, 1)
        XCTAssertEqual(h.barHandlers.keys.sorted(), [0, 1, 2])
        XCTAssertEqual(h.barHandlers[0]!.kind, HV_BAR_IO)
        XCTAssertEqual(h.barHandlers[0]!.size, 256)
        XCTAssertEqual(h.barHandlers[1]!.kind, HV_BAR_MMIO32)
        XCTAssertEqual(h.barHandlers[1]!.size, 0x20000)
        // READY after power-on, no handshake, both interrupts masked.
        XCTAssertEqual(d.doorbell, 0x1000_0000)
        XCTAssertEqual(h.readReg(0x34), 0x9)
        XCTAssertEqual(h.readReg(0x00, bar: 0), 0x1000_0000, "the I/O BAR decodes the same registers")
        XCTAssertEqual(h.readReg(0x44), 0xFFFF_FFFF, "empty reply FIFO")
        XCTAssertFalse(h.irqLevel)
    }

    // MARK: handshake

    func testIOCFactsThroughTheDoorbellHandshake() throws {
        let (_, d) = try makeRig()
        let r = d.iocFacts()
        XCTAssertEqual(r.count, 80)
        XCTAssertEqual(r.le16(0), 0x0102, "MsgVersion MPI 1.2")
        XCTAssertEqual(r[2], 20, "MsgLength")
        XCTAssertEqual(r[3], 0x03)
        XCTAssertEqual(r.le32(8), 0x1111, "MsgContext echoed")
        XCTAssertEqual(r.le16(14), 0, "IOCStatus")
        XCTAssertNotEqual(r[0x16], 0, "BlockSize (mptbase divides by it)")
        XCTAssertEqual(r.le16(0x1A), 32, "RequestFrameSize: 128 bytes")
        XCTAssertEqual(r.le16(0x24), 128, "GlobalCredits")
        XCTAssertEqual(r[0x26], 1, "one port")
        XCTAssertEqual(r[0x2E], 16, "MaxDevices")
        let p = d.portFacts()
        XCTAssertEqual(p[0x15], 0x01, "SCSI port")
        XCTAssertEqual(p.le16(0x18), 7, "initiator id")
        XCTAssertEqual(p.le16(0x1A) & 0x08, 0x08, "ProtocolFlags: initiator")
        XCTAssertEqual(d.portFacts(port: 1).le16(14), 0x0007, "no port 1")
    }

    func testSeaBIOSStyleInitWithoutAcknowledgements() throws {
        let (h, d) = try makeRig()
        // mpt-scsi.c: reset, mask, 6-dword IOC INIT with outsl, reply read with inl x10.
        h.writeReg(0x00, 0x40 << 24, bar: 0)
        h.writeReg(0x34, 0x9, bar: 0)
        h.writeReg(0x30, 0, bar: 0)
        var f = MPTTestDriver.header(function: 0x02, context: 0, dwords: 6)
        f[0] = 2; f[5] = 8; f[6] = 1
        f.put16(0x0C, 4)
        h.writeReg(0x00, 0x42 << 24 | 6 << 16, bar: 0)
        for i in 0..<6 { h.writeReg(0x00, f.le32(i * 4), bar: 0) }
        var reply = [UInt8](repeating: 0, count: 20)
        for i in 0..<10 { reply.put16(i * 2, UInt16(h.readReg(0x00, bar: 0) & 0xFFFF)) }
        h.writeReg(0x30, 0, bar: 0)
        XCTAssertEqual(reply[2], 5)
        XCTAssertEqual(reply[3], 0x02)
        XCTAssertEqual(reply.le16(14), 0)
        XCTAssertEqual(d.iocState, 2, "OPERATIONAL without PORT ENABLE")
        // One 4-byte reply frame; a good READ answers with its context.
        h.writeReg(0x44, 0x8000, bar: 0)
        h.disks[0]![0..<512] = ArraySlice(repeating: 0xA5, count: 512)
        d.post(d.scsiIO(target: 0, cdb: MPTTestDriver.rw10(write: false, lba: 0, blocks: 1), direction: 2, dataLength: 512,
                        sgl: [.simple(MPTTestDriver.data, 512, last: true, eol: true)], context: 0x1234))
        h.drain()
        XCTAssertEqual(h.readReg(0x30) & 0x8, 0x8, "reply interrupt status")
        XCTAssertFalse(h.irqLevel, "masked")
        XCTAssertEqual(d.popReplies(), [0x1234])
        XCTAssertEqual(h.readReg(0x30) & 0x8, 0, "the FIFO is empty again")
        XCTAssertEqual(h.read(MPTTestDriver.data, 512), [UInt8](repeating: 0xA5, count: 512))
    }

    func testDoorbellAbuseNeverWedgesTheIOC() throws {
        let (h, d) = try makeRig()
        // A handshake shorter than a header, unknown doorbell functions, reads past the reply.
        h.writeReg(0x00, 0x42 << 24 | 1 << 16)
        XCTAssertEqual(d.doorbell & 0x0800_0000, 0, "refused")
        h.writeReg(0x00, 0x77 << 24)
        _ = d.iocFacts()
        for _ in 0..<5 { XCTAssertEqual(d.doorbell, 0x1000_0000) }
        // An unknown function through the doorbell: INVALID_FUNCTION reply.
        let r = d.handshake(MPTTestDriver.header(function: 0x3F, context: 9, dwords: 3))
        XCTAssertEqual(r.le16(14), 0x0001)
        // A SCSI IO through the doorbell is refused the same way.
        XCTAssertEqual(d.handshake(MPTTestDriver.header(function: 0x00, context: 9, dwords: 12)).le16(14), 0x0001)
        // Abandoning a reply half-read: a message unit reset ends it.
        h.writeReg(0x00, 0x42 << 24 | 3 << 16)
        for i in 0..<3 { h.writeReg(0x00, MPTTestDriver.header(function: 0x03, context: 1, dwords: 3).le32(i * 4)) }
        _ = h.readReg(0x00)
        h.writeReg(0x00, 0x40 << 24)
        XCTAssertEqual(d.doorbell, 0x1000_0000)
        XCTAssertEqual(d.iocFacts().le16(0), 0x0102)
        // Sub-dword accesses do nothing.
        h.writeReg(0x00, 0x42, size: 1)
        XCTAssertEqual(h.readReg(0x00, size: 2), 0xFFFF)
        XCTAssertEqual(d.doorbell, 0x1000_0000)
    }

    // MARK: SCSI IO

    func testWriteThenReadBackWithChainsAnd64BitElements() throws {
        let (h, d) = try makeRig()
        d.bringUp()
        // WRITE(10) of 8 KiB from two discontiguous 32-bit simple elements.
        var pattern = [UInt8](repeating: 0, count: 8192)
        for i in pattern.indices { pattern[i] = UInt8(truncatingIfNeeded: i &* 7 &+ 3) }
        h.write(Array(pattern[0..<4096]), at: MPTTestDriver.data)
        h.write(Array(pattern[4096...]), at: MPTTestDriver.data + 0x10000)
        d.post(d.scsiIO(target: 1, cdb: MPTTestDriver.rw10(write: true, lba: 16, blocks: 16), direction: 1, dataLength: 8192,
                        sgl: [.simple(MPTTestDriver.data, 4096), .simple(MPTTestDriver.data + 0x10000, 4096, last: true, eol: true)],
                        context: 0x10))
        XCTAssertFalse(h.irqLevel, "nothing completed yet")
        h.drain()
        XCTAssertTrue(h.irqLevel, "reply interrupt")
        XCTAssertEqual(d.popReplies(), [0x10])
        XCTAssertFalse(h.irqLevel, "deasserted once the FIFO is empty")
        XCTAssertEqual(Array(h.disks[1]![8192..<16384]), pattern)

        // READ(10) back into 4 pieces: one 64-bit simple element in the frame, then a
        // 64-bit chain to a buffer with two elements and a second chain with the last.
        let c1 = MPTTestDriver.chainBuffers, c2 = MPTTestDriver.chainBuffers + 0x100
        let buf = MPTTestDriver.data + 0x40000
        var chain1 = MPTTestDriver.Element.simple(buf + 2048, 2048, wide: true).bytes
        chain1 += MPTTestDriver.Element.simple(buf + 4096, 2048, last: true, wide: true).bytes
        chain1 += MPTTestDriver.Element.chain(c2, 12, nextOffset: 0, wide: true).bytes
        h.write(chain1, at: c1)
        h.write(MPTTestDriver.Element.simple(buf + 6144, 2048, last: true, eol: true, wide: true).bytes, at: c2)
        // Frame: SGE at 48 (12 bytes, LAST), chain element at 60 = dword 15.
        d.post(d.scsiIO(target: 1, cdb: MPTTestDriver.rw10(write: false, lba: 16, blocks: 16), direction: 2, dataLength: 8192,
                        sgl: [.simple(buf, 2048, last: true, wide: true), .chain(c1, 36, nextOffset: 6, wide: true)],
                        chainOffset: 15, context: 0x11), index: 1)
        h.drain()
        XCTAssertEqual(d.popReplies(), [0x11])
        XCTAssertEqual(h.read(buf, 8192), pattern)
    }

    func testInquiryUnderrunAndCheckConditionUseAddressReplies() throws {
        let (h, d) = try makeRig()
        d.bringUp()
        // INQUIRY for 36 bytes into a 96-byte buffer: DATA_UNDERRUN with the count.
        d.post(d.scsiIO(target: 0, cdb: [0x12, 0, 0, 0, 36, 0], direction: 2, dataLength: 96,
                        sgl: [.simple(MPTTestDriver.data, 96, last: true, eol: true)], context: 0x20))
        h.drain()
        let replies = d.popReplies()
        XCTAssertEqual(replies.count, 1)
        let r = d.replyFrame(replies[0])
        XCTAssertEqual(r[2], 9, "MsgLength")
        XCTAssertEqual(r.le32(8), 0x20)
        XCTAssertEqual(r[12], 0, "SCSIStatus GOOD")
        XCTAssertEqual(r.le16(14), 0x0045, "DATA_UNDERRUN")
        XCTAssertEqual(r.le32(0x14), 36, "TransferCount")
        XCTAssertEqual(Array(h.read(MPTTestDriver.data + 8, 6)), Array("VMware".utf8))
        d.recycle(replies[0])

        // An unknown opcode: CHECK CONDITION with autosense in the request's sense buffer.
        d.post(d.scsiIO(target: 0, cdb: [0xC7, 0, 0, 0, 0, 0], direction: 0, dataLength: 0, context: 0x21, senseIndex: 2))
        h.drain()
        let r2 = d.replyFrame(d.popReplies()[0])
        XCTAssertEqual(r2[12], 0x02, "CHECK CONDITION")
        XCTAssertEqual(r2[13] & 0x01, 0x01, "autosense valid")
        XCTAssertEqual(r2.le32(0x18), 18, "SenseCount")
        let sense = h.read(MPTTestDriver.senseBuffers + 64, 18)
        XCTAssertEqual(sense[0], 0x70)
        XCTAssertEqual(sense[2], 0x05, "ILLEGAL REQUEST")
        XCTAssertEqual(sense[12], 0x20, "invalid opcode")
    }

    func testTargetAddressingErrors() throws {
        let (h, d) = try makeRig()
        d.bringUp()
        let tur: [UInt8] = [0, 0, 0, 0, 0, 0]
        func status(_ frame: [UInt8]) -> UInt16 {
            d.post(frame)
            h.drain()
            let v = d.popReplies()
            guard v.count == 1, v[0] & 0x8000_0000 != 0 else { XCTFail("expected one address reply, got \(v)"); return 0xFFFF }
            d.recycle(v[0])
            return d.replyFrame(v[0]).le16(14)
        }
        XCTAssertEqual(status(d.scsiIO(target: 3, cdb: tur, direction: 0, dataLength: 0)), 0x0043, "absent target: selection timeout")
        XCTAssertEqual(status(d.scsiIO(target: 7, cdb: tur, direction: 0, dataLength: 0)), 0x0043, "the initiator's own id")
        XCTAssertEqual(status(d.scsiIO(target: 20, cdb: tur, direction: 0, dataLength: 0)), 0x0042, "beyond MaxDevices")
        XCTAssertEqual(status(d.scsiIO(target: 0, cdb: tur, direction: 0, dataLength: 0, bus: 1)), 0x0041, "bus 1")
        XCTAssertEqual(status(d.scsiIO(target: 0, cdb: [], direction: 0, dataLength: 0)), 0x0007, "CDB length 0")
        XCTAssertEqual(status(d.scsiIO(target: 0, cdb: tur, direction: 3, dataLength: 512,
                                       sgl: [.simple(MPTTestDriver.data, 512, last: true, eol: true)])), 0x0007, "bidirectional")
        // A READ past the end: CHECK CONDITION (LBA out of range) from the target.
        d.post(d.scsiIO(target: 0, cdb: MPTTestDriver.rw10(write: false, lba: 4096, blocks: 1), direction: 2, dataLength: 512,
                        sgl: [.simple(MPTTestDriver.data, 512, last: true, eol: true)]))
        h.drain()
        let r = d.replyFrame(d.popReplies()[0])
        XCTAssertEqual(r[12], 0x02)
        XCTAssertEqual(h.read(MPTTestDriver.senseBuffers, 13)[12], 0x21)
        // Direction against the CDB (a READ sent as a write): DATA_OVERRUN.
        XCTAssertEqual(status(d.scsiIO(target: 0, cdb: MPTTestDriver.rw10(write: false, lba: 0, blocks: 1), direction: 1,
                                       dataLength: 512, sgl: [.simple(MPTTestDriver.data, 512, last: true, eol: true)])), 0x0044)
        // Data outside guest RAM: IO_DATA_ERROR, nothing written.
        XCTAssertEqual(status(d.scsiIO(target: 0, cdb: MPTTestDriver.rw10(write: false, lba: 0, blocks: 1), direction: 2,
                                       dataLength: 512, sgl: [.simple(0xF000_0000, 512, last: true, eol: true)])), 0x0046)
    }

    func testHostileSGLsEndInInvalidSGL() throws {
        let (h, d) = try makeRig()
        d.bringUp()
        let read = MPTTestDriver.rw10(write: false, lba: 0, blocks: 8)
        func status(_ sgl: [MPTTestDriver.Element], chainOffset: UInt8 = 0, length: Int = 4096) -> UInt16 {
            d.post(d.scsiIO(target: 0, cdb: read, direction: 2, dataLength: length, sgl: sgl, chainOffset: chainOffset))
            h.drain()
            let v = d.popReplies()
            guard v.count == 1, v[0] & 0x8000_0000 != 0 else { XCTFail("expected one address reply, got \(v)"); return 0xFFFF }
            d.recycle(v[0])
            return d.replyFrame(v[0]).le16(14)
        }
        let submittedBefore = h.submitted
        let c = MPTTestDriver.chainBuffers
        // A chain buffer whose chain element points at itself.
        h.write(MPTTestDriver.Element.simple(MPTTestDriver.data, 8, last: true).bytes + MPTTestDriver.Element.chain(c, 16, nextOffset: 2).bytes, at: c)
        XCTAssertEqual(status([.chain(c, 16, nextOffset: 2)]), 0x0003, "chain loop")
        // Two chain buffers pointing at each other with no data.
        h.write(MPTTestDriver.Element.chain(c + 0x200, 8, nextOffset: 0).bytes, at: c + 0x100)
        h.write(MPTTestDriver.Element.chain(c + 0x100, 8, nextOffset: 0).bytes, at: c + 0x200)
        XCTAssertEqual(status([.chain(c + 0x100, 8, nextOffset: 0)]), 0x0003, "chain ping-pong")
        // SGL shorter than DataLength, with and without EOL.
        XCTAssertEqual(status([.simple(MPTTestDriver.data, 512, last: true, eol: true)]), 0x0003)
        XCTAssertEqual(status([.simple(MPTTestDriver.data, 512, last: true)]), 0x0003)
        // A chain element outside RAM, a chain offset outside the frame, a transaction element.
        XCTAssertEqual(status([.chain(0xF000_0000, 64, nextOffset: 0)]), 0x0003)
        XCTAssertEqual(status([.simple(MPTTestDriver.data, 512, last: true)], chainOffset: 200), 0x0003)
        XCTAssertEqual(status([.raw(0x0000_1000, UInt32(MPTTestDriver.data))]), 0x0003)
        // Elements that run past the end of the 128-byte frame.
        XCTAssertEqual(status((0..<12).map { _ in .simple(MPTTestDriver.data, 8) }, length: 4096), 0x0003)
        XCTAssertEqual(h.submitted, submittedBefore, "nothing reached the SCSI layer")
    }

    // MARK: FIFOs

    func testAddressRepliesWaitForReplyFramesAndOverflowFaults() throws {
        let (h, d) = try makeRig()
        h.writeReg(0x00, 0x40 << 24)
        _ = d.iocInit()
        let tur: [UInt8] = [0, 0, 0, 0, 0, 0]
        // No free frame: the error reply waits.
        d.post(d.scsiIO(target: 3, cdb: tur, direction: 0, dataLength: 0, context: 0x55))
        h.drain()
        XCTAssertEqual(d.popReplies(), [])
        h.writeReg(0x44, UInt32(MPTTestDriver.replyFrames))
        let v = d.popReplies()
        XCTAssertEqual(v, [0x8000_0000 | UInt32(MPTTestDriver.replyFrames) >> 1])
        XCTAssertEqual(d.replyFrame(v[0]).le32(8), 0x55)
        // Context replies do not need frames.
        d.post(d.scsiIO(target: 0, cdb: tur, direction: 0, dataLength: 0, context: 0x56))
        h.drain()
        XCTAssertEqual(d.popReplies(), [0x56])
        // More free frames than the FIFO holds: FAULT, then a diagnostic reset recovers.
        for i in 0..<300 { h.writeReg(0x44, 0x80000 + UInt32(i) * 128) }
        XCTAssertEqual(d.iocState, 4, "FAULT")
        XCTAssertEqual(d.doorbell & 0xFFFF, 0x0006, "fault code INSUFFICIENT_RESOURCES")
        h.writeReg(0x08, 0x04)
        XCTAssertEqual(d.iocState, 4, "the diagnostic register needs the write sequence")
        for k: UInt32 in [0x04, 0x0B, 0x02, 0x07, 0x0D] { h.writeReg(0x04, k) }
        XCTAssertEqual(h.readReg(0x08) & 0x80, 0x80, "DRWE")
        h.writeReg(0x08, 0x04)
        XCTAssertEqual(d.iocState, 1, "READY after the adapter reset")
        XCTAssertEqual(h.readReg(0x08) & 0x20, 0x20, "reset history")
        d.bringUp()
        d.post(d.scsiIO(target: 0, cdb: tur, direction: 0, dataLength: 0, context: 0x57))
        h.drain()
        XCTAssertEqual(d.popReplies(), [0x57])
    }

    func testRequestsOutsideOperationalOrRAMFault() throws {
        let (h, d) = try makeRig()
        d.post(d.scsiIO(target: 0, cdb: [0, 0, 0, 0, 0, 0], direction: 0, dataLength: 0))
        XCTAssertEqual(d.iocState, 4, "request before IOC INIT")
        XCTAssertEqual(d.doorbell & 0xFFFF, 0x0008, "INVALID_STATE")
        h.writeReg(0x00, 0x40 << 24)
        XCTAssertEqual(d.iocState, 1, "a message unit reset leaves FAULT")
        d.bringUp()
        h.writeReg(0x40, 0xF000_0000)
        XCTAssertEqual(d.iocState, 4, "frame outside RAM")
        d.bringUp()
        // Bus mastering off: the frame cannot be fetched.
        h.pciCommand = 0x0002
        h.writeReg(0x40, UInt32(d.frameAddress(0)))
        XCTAssertEqual(d.iocState, 4)
        h.pciCommand = 0x0007
        d.bringUp()
        // An unknown function code in a frame: INVALID_FUNCTION, the IOC stays up.
        d.post(MPTTestDriver.header(function: 0x2F, context: 0x77, dwords: 3))
        let v = d.popReplies()
        XCTAssertEqual(v.count, 1)
        XCTAssertEqual(d.replyFrame(v[0]).le16(14), 0x0001)
        XCTAssertEqual(d.replyFrame(v[0]).le32(8), 0x77)
        XCTAssertEqual(d.iocState, 2)
    }

    // MARK: task management, events

    func testTaskManagementEndsRequestsInFlightBeforeItsReply() throws {
        let (h, d) = try makeRig()
        d.bringUp()
        h.aborts = []
        let read = MPTTestDriver.rw10(write: false, lba: 0, blocks: 1)
        d.post(d.scsiIO(target: 0, cdb: read, direction: 2, dataLength: 512,
                        sgl: [.simple(MPTTestDriver.data, 512, last: true, eol: true)], context: 0x31), index: 0)
        d.post(d.scsiIO(target: 1, cdb: read, direction: 2, dataLength: 512,
                        sgl: [.simple(MPTTestDriver.data + 512, 512, last: true, eol: true)], context: 0x32), index: 1)
        // TARGET RESET of target 0 through the doorbell (mpt_send_handshake_request).
        var tm = MPTTestDriver.header(function: 0x01, context: 0x99, dwords: 13)
        tm[0] = 0
        tm[5] = 0x03
        h.writeReg(0x30, 0)
        h.writeReg(0x00, 0x42 << 24 | 13 << 16)
        h.writeReg(0x30, 0)
        for i in 0..<13 { h.writeReg(0x00, tm.le32(i * 4)) }
        XCTAssertEqual(d.intStatus & 1, 1, "the final doorbell interrupt")
        h.writeReg(0x30, 0)
        XCTAssertEqual(h.aborts.map(\.target), [0])
        XCTAssertEqual(h.aborts.map(\.reset), [1])
        let v = d.popReplies()
        XCTAssertEqual(v.count, 2, "the aborted READ, then the task-management reply")
        let aborted = d.replyFrame(v[0])
        XCTAssertEqual(aborted.le32(8), 0x31)
        XCTAssertEqual(aborted.le16(14), 0x0048, "TASK_TERMINATED")
        let tmr = d.replyFrame(v[1], dwords: 6)
        XCTAssertEqual(tmr[3], 0x01)
        XCTAssertEqual(tmr.le32(8), 0x99)
        XCTAssertEqual(tmr[5], 0x03)
        XCTAssertEqual(tmr.le32(0x14), 1, "TerminationCount")
        // Target 1's READ was untouched.
        h.drain()
        XCTAssertEqual(d.popReplies(), [0x32])
        // The reset target reports UNIT ATTENTION once.
        d.post(d.scsiIO(target: 0, cdb: [0, 0, 0, 0, 0, 0], direction: 0, dataLength: 0))
        h.drain()
        XCTAssertEqual(d.replyFrame(d.popReplies()[0])[12], 0x02)
    }

    func testEventNotificationAndBusResetEvent() throws {
        let (h, d) = try makeRig()
        d.bringUp()
        h.aborts = []
        var ev = MPTTestDriver.header(function: 0x07, context: 0xE0, dwords: 3)
        ev[0] = 1
        d.post(ev)
        var v = d.popReplies()
        XCTAssertEqual(v.count, 1)
        var r = d.replyFrame(v[0], dwords: 8)
        XCTAssertEqual(r[3], 0x07)
        XCTAssertEqual(r[7], 0x80, "continuation: the request stays active")
        XCTAssertEqual(r.le32(0x14), 0x0A, "EVENT_CHANGE")
        XCTAssertEqual(r.le32(0x1C), 1)
        XCTAssertEqual(d.iocFacts()[0x27], 1, "EventState")
        // A bus reset through the request FIFO announces IOC_BUS_RESET after its reply.
        var tm = MPTTestDriver.header(function: 0x01, context: 0x98, dwords: 13)
        tm[5] = 0x04
        d.post(tm, index: 3)
        v = d.popReplies()
        XCTAssertEqual(v.count, 2)
        XCTAssertEqual(d.replyFrame(v[0], dwords: 6)[3], 0x01)
        r = d.replyFrame(v[1], dwords: 8)
        XCTAssertEqual(r.le32(8), 0xE0, "events answer the notification's context")
        XCTAssertEqual(r.le32(0x14), 0x04, "IOC_BUS_RESET")
        XCTAssertEqual(h.aborts.map(\.target), [-1])
        // EVENT ACK answers.
        var ack = MPTTestDriver.header(function: 0x08, context: 0xE1, dwords: 5)
        ack.put32(12, 4)
        d.post(ack, index: 4)
        v = d.popReplies()
        XCTAssertEqual(d.replyFrame(v[0], dwords: 5).le32(8), 0xE1)
    }

    // MARK: configuration pages

    func testConfigPagesReadWriteAndErrors() throws {
        let (h, d) = try makeRig()
        d.bringUp()
        func config(action: UInt8, type: UInt8, number: UInt8, address: UInt32 = 0, buffer: UInt64 = 0x60000,
                    length: Int = 256) -> [UInt8] {
            var f = MPTTestDriver.header(function: 0x04, context: 0xC0, dwords: 10)
            f[0] = action
            f[0x16] = number
            f[0x17] = type
            f.put32(0x18, address)
            f.put32(0x1C, (0xD1 << 24) | UInt32(length) | (action == 2 ? 0x0400_0000 : 0))
            f.put32(0x20, UInt32(buffer))
            d.post(f)
            let v = d.popReplies()
            guard v.count == 1 else { XCTFail("no config reply"); return [] }
            d.recycle(v[0])
            return d.replyFrame(v[0], dwords: 6)
        }
        // SCSI port page 0 header, then contents.
        var r = config(action: 0, type: 3, number: 0)
        XCTAssertEqual(r.le16(14), 0)
        XCTAssertEqual(r[0x15], 3, "PageLength")
        r = config(action: 1, type: 3, number: 0)
        XCTAssertEqual(h.read(0x60000, 4), [r[0x14], 3, 0, 3])
        XCTAssertEqual(h.get32(0x60004) >> 8 & 0xFF, 0x08, "Ultra320 minimum period")
        // SCSI port page 1: the initiator id.
        _ = config(action: 1, type: 3, number: 1)
        XCTAssertEqual(h.get32(0x60004) & 0xFF, 7)
        // SCSI device page 1 of target 2 written, read back; target 3 keeps the default.
        _ = config(action: 1, type: 4, number: 1, address: 2)
        var page = h.read(0x60000, 16)
        page.put32(4, 0x0000_0A01)
        h.write(page, at: 0x61000)
        XCTAssertEqual(config(action: 2, type: 4, number: 1, address: 2, buffer: 0x61000, length: 16).le16(14), 0)
        _ = config(action: 1, type: 4, number: 1, address: 2)
        XCTAssertEqual(h.get32(0x60004), 0x0000_0A01)
        _ = config(action: 1, type: 4, number: 1, address: 3)
        XCTAssertNotEqual(h.get32(0x60004), 0x0000_0A01)
        // Errors: a read-only page written, a page that does not exist, an extended page,
        // device pages beyond target 15, a bad action, a page buffer outside RAM.
        XCTAssertEqual(config(action: 2, type: 3, number: 0, buffer: 0x61000, length: 12).le16(14), 0x0020)
        XCTAssertEqual(config(action: 1, type: 1, number: 9).le16(14), 0x0022)
        XCTAssertEqual(config(action: 1, type: 0x0F, number: 0).le16(14), 0x0021)
        XCTAssertEqual(config(action: 1, type: 4, number: 0, address: 16).le16(14), 0x0022)
        XCTAssertEqual(config(action: 9, type: 1, number: 1).le16(14), 0x0020)
        XCTAssertEqual(config(action: 1, type: 9, number: 0, buffer: 0xF000_0000).le16(14), 0x0003)
        // Manufacturing page 0 names the chip.
        _ = config(action: 1, type: 9, number: 0)
        XCTAssertEqual(Array(h.read(0x60004, 7)), Array("53C1030".utf8))
        XCTAssertEqual(d.iocState, 2)
    }
}
