import Foundation
import PluginABI
import XCTest

/// Hostile guests: random register, doorbell, FIFO and frame operations. The adapter
/// must never crash or hang, its doorbell always reads a valid IOC state, and after a
/// diagnostic reset it serves a correct write and read again.
final class LSILogicFuzzTests: XCTestCase {
    struct SplitMix {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
        mutating func chance(_ percent: Int) -> Bool { below(100) < percent }
    }

    /// Operations per run: 1M with HV_SLOW_TESTS=1, else 200k (about 15 s in a debug build).
    static var operations: Int { ProcessInfo.processInfo.environment["HV_SLOW_TESTS"] == "1" ? 1_000_000 : 200_000 }

    func testRandomRegisterDoorbellFIFOAndFrameOperations() throws {
        let h = MockSCSIHost()
        try h.create()
        let d = MPTTestDriver(h)
        var rng = SplitMix(state: 0x5EED_1030)
        let registers: [UInt64] = [0x00, 0x04, 0x08, 0x0C, 0x10, 0x14, 0x30, 0x34, 0x40, 0x44, 0x48]
        /// An address that is RAM most of the time.
        func address(_ rng: inout SplitMix) -> UInt64 {
            rng.chance(85) ? UInt64(0x10000 + rng.below(0x70000)) & ~3 : rng.next() & 0xFFFF_FFFF
        }
        func randomElement(_ rng: inout SplitMix) -> [UInt8] {
            var flags = UInt32(rng.below(256)) << 24
            if rng.chance(60) { flags = (flags & ~0x3000_0000) | (rng.chance(70) ? 0x1000_0000 : 0x3000_0000) }
            let len = rng.chance(80) ? UInt32(rng.below(0x4000)) : UInt32(truncatingIfNeeded: rng.next()) & 0xFF_FFFF
            var chainNext: UInt32 = 0
            if flags & 0x3000_0000 == 0x3000_0000 { chainNext = UInt32(rng.below(40)) << 16 }
            var b = [UInt8](repeating: 0, count: 12)
            b.put32(0, flags | chainNext | (flags & 0x3000_0000 == 0x3000_0000 ? len & 0xFFFF : len))
            let a = address(&rng)
            b.put32(4, UInt32(truncatingIfNeeded: a))
            b.put32(8, rng.chance(90) ? 0 : UInt32(truncatingIfNeeded: rng.next()))
            return Array(b.prefix(flags & 0x0200_0000 != 0 ? 12 : 8))
        }
        func randomFrame(_ rng: inout SplitMix) -> [UInt8] {
            var f = [UInt8](repeating: 0, count: 128)
            if rng.chance(10) {
                for i in f.indices { f[i] = UInt8(truncatingIfNeeded: rng.next()) }
                return f
            }
            f[0] = UInt8(rng.chance(80) ? rng.below(16) : rng.below(256))
            f[1] = rng.chance(90) ? 0 : UInt8(rng.below(4))
            f[2] = rng.chance(60) ? 0 : UInt8(rng.below(40))
            f[3] = UInt8(rng.chance(85) ? rng.below(9) : rng.below(256))
            f[4] = UInt8(rng.chance(90) ? [6, 10, 12, 16][rng.below(4)] : rng.below(256))
            f[5] = UInt8(rng.below(64))
            f.put32(8, UInt32(truncatingIfNeeded: rng.next()))
            f[13] = rng.chance(90) ? 0 : UInt8(rng.below(8))
            f.put32(20, UInt32(rng.below(4)) << 24)
            let ops: [UInt8] = [0x00, 0x12, 0x25, 0x28, 0x2A, 0x03, 0xC7]
            f[24] = ops[rng.below(ops.count)]
            for i in 25..<40 { f[i] = rng.chance(50) ? 0 : UInt8(truncatingIfNeeded: rng.next()) }
            f.put32(40, rng.chance(80) ? UInt32(rng.below(0x8000)) : UInt32(truncatingIfNeeded: rng.next()))
            f.put32(44, UInt32(truncatingIfNeeded: address(&rng)))
            var off = 48
            while off < 128 && rng.chance(75) {
                let e = randomElement(&rng)
                for (i, x) in e.enumerated() where off + i < 128 { f[off + i] = x }
                off += e.count
            }
            if f[3] == 0x04 { f[0] = UInt8(rng.below(8)); f[0x17] = UInt8(rng.below(16)); f[0x16] = UInt8(rng.below(6)) }
            return f
        }

        var completions = 0
        for op in 0..<Self.operations {
            // An IOC left faulted or not initialized is brought back soon, so the deeper
            // states are reached too.
            let faulted = op % 8 == 0 && h.readReg(0x00) >> 28 != 2
            switch faulted ? 99 : rng.below(100) {
            case 0..<18:
                h.writeReg(registers[rng.below(registers.count)], UInt32(truncatingIfNeeded: rng.next()))
            case 18..<30:
                _ = h.readReg(registers[rng.below(registers.count)], bar: UInt32(rng.below(2)))
            case 30..<38:
                // A handshake with a random length and random or plausible dwords.
                let n = rng.below(20)
                h.writeReg(0x00, 0x42 << 24 | UInt32(n) << 16)
                let frame = randomFrame(&rng)
                for i in 0..<rng.below(n + 2) { h.writeReg(0x00, i < 32 ? frame.le32(i * 4) : UInt32(truncatingIfNeeded: rng.next())) }
                for _ in 0..<rng.below(50) { _ = h.readReg(0x00); if rng.chance(50) { h.writeReg(0x30, 0) } }
            case 38..<60:
                let index = rng.below(64)
                h.write(randomFrame(&rng), at: d.frameAddress(index))
                h.writeReg(rng.chance(90) ? 0x40 : 0x48, rng.chance(95) ? UInt32(d.frameAddress(index)) : UInt32(truncatingIfNeeded: rng.next()))
            case 60..<66:
                // Chain buffers full of random elements (loops included).
                var buf: [UInt8] = []
                for _ in 0..<8 { buf += randomElement(&rng) }
                h.write(buf, at: MPTTestDriver.chainBuffers + UInt64(rng.below(16)) * 0x100)
            case 66..<78:
                completions += h.held.count
                h.drain()
            case 78..<86:
                for _ in 0..<rng.below(8) { h.writeReg(0x44, UInt32(truncatingIfNeeded: address(&rng))) }
            case 86..<94:
                for _ in 0..<rng.below(8) where h.readReg(0x44) == 0xFFFF_FFFF { break }
            case 94..<96:
                h.pciCommand = rng.chance(80) ? 0x7 : 0x3
            case 96..<98:
                if rng.chance(50) {
                    h.writeReg(0x00, 0x40 << 24)
                } else {
                    for k: UInt32 in [0x04, 0x0B, 0x02, 0x07, 0x0D] { h.writeReg(0x04, k) }
                    h.writeReg(0x08, UInt32(rng.below(0x800)))
                }
            default:
                // Back to a working IOC now and then, so the deeper states are reached.
                h.pciCommand = 0x7
                h.drain()
                d.diagnosticReset()
                d.bringUp()
            }
            if op % 1000 == 0 {
                let state = h.readReg(0x00) >> 28
                XCTAssertTrue([0, 1, 2, 4].contains(state), "doorbell state \(state) after \(op) operations")
            }
        }
        // Recovery: a diagnostic reset, bring-up, and a verified write and read.
        h.pciCommand = 0x7
        h.drain()
        d.diagnosticReset()
        h.drain()
        d.bringUp()
        // Task management in the fuzz may have left a UNIT ATTENTION: one TEST UNIT READY takes it.
        d.post(d.scsiIO(target: 0, cdb: [0, 0, 0, 0, 0, 0], direction: 0, dataLength: 0, context: 0x4000_0000), index: 2)
        h.drain()
        _ = d.popReplies()
        let pattern = (0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 13) }
        h.write(pattern, at: MPTTestDriver.data)
        d.post(d.scsiIO(target: 0, cdb: MPTTestDriver.rw10(write: true, lba: 8, blocks: 8), direction: 1, dataLength: 4096,
                        sgl: [.simple(MPTTestDriver.data, 4096, last: true, eol: true)], context: 0x4000_0001))
        h.drain()
        XCTAssertEqual(d.popReplies(), [0x4000_0001])
        h.write([UInt8](repeating: 0, count: 4096), at: MPTTestDriver.data)
        d.post(d.scsiIO(target: 0, cdb: MPTTestDriver.rw10(write: false, lba: 8, blocks: 8), direction: 2, dataLength: 4096,
                        sgl: [.simple(MPTTestDriver.data, 4096, last: true, eol: true)], context: 0x4000_0002), index: 1)
        h.drain()
        XCTAssertEqual(d.popReplies(), [0x4000_0002])
        XCTAssertTrue(h.read(MPTTestDriver.data, 4096) == pattern, "the pattern read back")
        XCTAssertGreaterThan(h.submitted, Self.operations / 1000, "the fuzz reached the SCSI layer")
        XCTAssertGreaterThan(completions, Self.operations / 1000, "and its completions")
    }

    /// Completions on another thread while the vCPU thread posts: every request gets
    /// exactly one reply.
    func testConcurrentCompletionsAnswerEveryRequestOnce() throws {
        let h = MockSCSIHost()
        try h.create()
        let d = MPTTestDriver(h)
        d.bringUp()
        let stop = NSLock()
        var done = false
        let drainer = Thread {
            while true {
                stop.lock(); let finished = done; stop.unlock()
                h.drain()
                if finished { return }
            }
        }
        drainer.start()
        var seen: [UInt32: Int] = [:]
        let total = 5000
        var posted = 0
        while seen.count < total {
            // At most 64 outstanding: the frames (and GlobalCredits) are the limit.
            if posted < total && posted - seen.count < 64 {
                let ctx = UInt32(posted + 1)
                d.post(d.scsiIO(target: UInt8(posted % 2), cdb: MPTTestDriver.rw10(write: false, lba: posted % 64, blocks: 1),
                                direction: 2, dataLength: 512,
                                sgl: [.simple(MPTTestDriver.data + UInt64(posted % 64) * 512, 512, last: true, eol: true)],
                                context: ctx), index: posted % 64)
                posted += 1
            }
            for v in d.popReplies() {
                XCTAssertEqual(v & 0x8000_0000, 0, "a context reply")
                seen[v, default: 0] += 1
            }
        }
        stop.lock(); done = true; stop.unlock()
        while !drainer.isFinished { usleep(1000) }
        XCTAssertEqual(seen.count, total)
        XCTAssertTrue(seen.values.allSatisfy { $0 == 1 })
        XCTAssertEqual(d.iocState, 2)
    }
}
