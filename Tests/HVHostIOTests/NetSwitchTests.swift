import Foundation
import Synchronization
import XCTest
@testable import HVHostIO
@testable import HVSupport

/// What one port's NIC has received; thread-safe. `accepting = false` simulates a full ring.
/// Reading what was received first waits until the switch has delivered everything.
private final class Inbox: Sendable {
    let sw: VirtualSwitch
    let frames = Mutex<[[UInt8]]>([])
    let threads = Mutex<[pthread_t]>([])
    let links = Mutex<[Bool]>([])
    let accepting = Atomic<Bool>(true)

    init(_ sw: VirtualSwitch) { self.sw = sw }

    var received: [[UInt8]] {
        XCTAssertTrue(sw.waitUntilDelivered(), "\(sw) did not settle")
        return frames.withLock { $0 }
    }
    var count: Int { received.count }
    var linkEvents: [Bool] { links.withLock { $0 } }

    func receive(_ frame: UnsafeRawBufferPointer) -> PortReceiveResult {
        threads.withLock { $0.append(pthread_self()) }
        guard accepting.load(ordering: .relaxed) else { return .full }
        frames.withLock { $0.append(Array(frame)) }
        return .taken
    }
}

/// A late-bound reference, for closures that need the port they are given to.
private final class PortBox: Sendable {
    let port = Mutex<VirtualPort?>(nil)
}

private let broadcast: [UInt8] = [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]

private func mac(_ last: UInt8) -> [UInt8] { [0x00, 0x50, 0x56, 0x00, 0x00, last] }

private func frame(to dst: [UInt8], from src: [UInt8], payload: [UInt8] = [0x08, 0x00, 1, 2, 3, 4]) -> [UInt8] {
    dst + src + payload
}

private func makePort(_ sw: VirtualSwitch, _ name: String, _ last: UInt8,
                      queue: PortQueueLimits = .standard) -> (VirtualPort, Inbox) {
    let inbox = Inbox(sw)
    let port = sw.makePort(name: name, mac: mac(last), queue: queue,
                           receive: { inbox.receive($0) },
                           linkChanged: { up in inbox.links.withLock { $0.append(up) } })
    return (port, inbox)
}

final class NetSwitchTests: XCTestCase {
    /// Every switch a test makes; tearDown unplugs their ports, which ends the receive threads.
    private var made: [VirtualSwitch] = []

    private func makeSwitch(_ name: String = "vSwitch0") -> VirtualSwitch {
        let sw = VirtualSwitch(name: name)
        made.append(sw)
        return sw
    }

    override func tearDown() {
        for sw in made { for p in sw.ports { sw.removePort(p) } }
        made = []
    }

    func testPortIdentity() {
        let sw = makeSwitch()
        let (a, _) = makePort(sw, "vm1.ethernet0", 1)
        XCTAssertEqual(a.name, "vm1.ethernet0")
        XCTAssertEqual(a.mac, MACAddress(0x00, 0x50, 0x56, 0x00, 0x00, 0x01))
        XCTAssertTrue(a.isLinkUp)
        XCTAssertTrue(a.virtualSwitch === sw)
        XCTAssertEqual(sw.ports.map(\.name), ["vm1.ethernet0"])
    }

    func testLearnedUnicastGoesOnlyToThatPort() {
        let sw = makeSwitch()
        let (a, inA) = makePort(sw, "a", 1)
        let (b, inB) = makePort(sw, "b", 2)
        let (_, inC) = makePort(sw, "c", 3)

        // B announces itself; everyone else sees the broadcast.
        XCTAssertEqual(b.send(frame(to: broadcast, from: mac(2))), .sent)
        XCTAssertEqual(inA.count, 1)
        XCTAssertEqual(inC.count, 1)
        XCTAssertTrue(sw.learnedPort(for: b.mac) === b)

        let unicast = frame(to: mac(2), from: mac(1), payload: [0x08, 0x00, 0xAB])
        XCTAssertEqual(a.send(unicast), .sent)
        XCTAssertEqual(inB.received, [unicast])
        XCTAssertEqual(inC.count, 1, "a learned unicast must not flood")
        XCTAssertEqual(inA.count, 1)

        // Now A is learned too: B's reply reaches only A.
        let reply = frame(to: mac(1), from: mac(2))
        XCTAssertEqual(b.send(reply), .sent)
        XCTAssertEqual(inA.received.last, reply)
        XCTAssertEqual(inA.count, 2)
        XCTAssertEqual(inC.count, 1)
    }

    func testUnknownUnicastFloodsToAllOtherPorts() {
        let sw = makeSwitch()
        let (a, inA) = makePort(sw, "a", 1)
        let (_, inB) = makePort(sw, "b", 2)
        let (_, inC) = makePort(sw, "c", 3)
        let f = frame(to: mac(0x99), from: mac(1))
        XCTAssertEqual(a.send(f), .sent)
        XCTAssertEqual(inB.received, [f])
        XCTAssertEqual(inC.received, [f])
        XCTAssertEqual(inA.count, 0)
    }

    func testBroadcastAndMulticastFlood() {
        let sw = makeSwitch()
        let (a, inA) = makePort(sw, "a", 1)
        let (b, inB) = makePort(sw, "b", 2)
        let (_, inC) = makePort(sw, "c", 3)
        let group: [UInt8] = [0x01, 0x00, 0x5E, 0x00, 0x00, 0xFB]
        // A group address used as a source is never learned...
        XCTAssertEqual(b.send(frame(to: broadcast, from: group)), .sent)
        XCTAssertEqual(sw.learnedAddressCount, 0)
        // ...and frames to it flood.
        XCTAssertEqual(a.send(frame(to: group, from: mac(1))), .sent)
        XCTAssertEqual(a.send(frame(to: broadcast, from: mac(1))), .sent)
        XCTAssertEqual(inB.count, 2)
        XCTAssertEqual(inC.count, 3)   // also the first broadcast from b
        XCTAssertEqual(inA.count, 1)   // only b's broadcast
    }

    func testNeverEchoesToSender() {
        let sw = makeSwitch()
        let (a, inA) = makePort(sw, "a", 1)
        let (_, inB) = makePort(sw, "b", 2)
        XCTAssertEqual(a.send(frame(to: broadcast, from: mac(1))), .sent)
        XCTAssertEqual(inA.count, 0)
        // A frame to the sender's own (learned) address goes nowhere.
        XCTAssertEqual(a.send(frame(to: mac(1), from: mac(1))), .sent)
        XCTAssertEqual(inA.count, 0)
        XCTAssertEqual(inB.count, 1)
    }

    func testStationMoveRelearnsAddress() {
        let sw = makeSwitch()
        let (a, inA) = makePort(sw, "a", 1)
        let (b, inB) = makePort(sw, "b", 2)
        let (c, inC) = makePort(sw, "c", 3)
        _ = a.send(frame(to: broadcast, from: mac(0x77)))
        _ = b.send(frame(to: broadcast, from: mac(0x77)))   // the station moved to b
        XCTAssertTrue(sw.learnedPort(for: MACAddress(0, 0x50, 0x56, 0, 0, 0x77)) === b)
        let before = (inA.count, inB.count)
        _ = c.send(frame(to: mac(0x77), from: mac(3)))
        XCTAssertEqual(inA.count, before.0)
        XCTAssertEqual(inB.count, before.1 + 1)
        XCTAssertEqual(inC.count, 2)
    }

    func testLinkDownPortNeitherSendsNorReceives() {
        let sw = makeSwitch()
        let (a, inA) = makePort(sw, "a", 1)
        let (b, inB) = makePort(sw, "b", 2)
        let (_, inC) = makePort(sw, "c", 3)
        _ = b.send(frame(to: broadcast, from: mac(2)))   // learn b

        b.setLink(up: false)
        b.setLink(up: false)                              // no change, no callback
        XCTAssertFalse(b.isLinkUp)
        XCTAssertEqual(inB.linkEvents, [false])
        XCTAssertEqual(inA.linkEvents, [])

        XCTAssertEqual(b.send(frame(to: mac(1), from: mac(2))), .linkDown)
        XCTAssertEqual(inA.count, 1)
        XCTAssertEqual(b.counters.txDrops, 1)
        XCTAssertEqual(b.counters.txFrames, 1)

        XCTAssertEqual(a.send(frame(to: broadcast, from: mac(1))), .sent)
        XCTAssertEqual(a.send(frame(to: mac(2), from: mac(1))), .sent)   // learned on b
        XCTAssertEqual(inB.count, 0)
        XCTAssertEqual(inC.count, 2)   // b's first broadcast + a's broadcast
        XCTAssertEqual(b.counters.rxFrames, 0)
        XCTAssertEqual(b.counters.rxDrops, 0, "link-down ports do not count frames they never saw")

        b.setLink(up: true)
        XCTAssertEqual(inB.linkEvents, [false, true])
        XCTAssertEqual(a.send(frame(to: mac(2), from: mac(1))), .sent)
        XCTAssertEqual(inB.count, 1)
        XCTAssertEqual(b.send(frame(to: mac(1), from: mac(2))), .sent)
        XCTAssertEqual(inA.count, 2)
    }

    func testCountersAndReceiveRingFull() {
        let sw = makeSwitch()
        let (a, _) = makePort(sw, "a", 1)
        let (b, inB) = makePort(sw, "b", 2)
        let f60 = frame(to: mac(2), from: mac(1), payload: [UInt8](repeating: 0xEE, count: 48))
        XCTAssertEqual(f60.count, 60)
        XCTAssertEqual(a.send(f60), .sent)
        XCTAssertEqual(a.send(f60), .sent)
        XCTAssertEqual(inB.count, 2)
        inB.accepting.store(false, ordering: .relaxed)
        XCTAssertEqual(a.send(f60), .sent)
        XCTAssertEqual(a.send(Array(f60.prefix(10))), .invalidLength)

        var expectA = PortCounters()
        expectA.txFrames = 3
        expectA.txBytes = 180
        expectA.txDrops = 1
        XCTAssertTrue(sw.waitUntilDelivered())
        XCTAssertEqual(a.counters, expectA)

        var expectB = PortCounters()
        expectB.rxFrames = 2
        expectB.rxBytes = 120
        expectB.rxDrops = 1
        XCTAssertEqual(b.counters, expectB)
        XCTAssertTrue(b.counters.description.contains("rx 2 frames/120 B (1 dropped)"))
    }

    func testBadLengthsAreRejectedAndCounted() {
        let sw = makeSwitch()
        let (a, _) = makePort(sw, "a", 1)
        let (_, inB) = makePort(sw, "b", 2)
        XCTAssertEqual(a.send([]), .invalidLength)
        XCTAssertEqual(a.send([UInt8](repeating: 0xFF, count: 13)), .invalidLength)
        XCTAssertEqual(a.send([UInt8](repeating: 0xFF, count: 65536)), .invalidLength)
        XCTAssertEqual(inB.count, 0)
        XCTAssertEqual(a.counters.txDrops, 3)
        XCTAssertEqual(a.counters.txFrames, 0)

        XCTAssertEqual(a.send(broadcast + mac(1) + [0x08, 0x00]), .sent)   // 14 bytes
        XCTAssertEqual(a.send(broadcast + mac(1) + [UInt8](repeating: 0, count: 65535 - 12)), .sent)
        XCTAssertEqual(inB.received.map(\.count), [14, 65535])

        // The raw-buffer entry point validates the same way (a NULL/0 buffer too).
        XCTAssertEqual(a.send(UnsafeRawBufferPointer(start: nil, count: 0)), .invalidLength)
        XCTAssertEqual(a.counters.txDrops, 4)
    }

    func testRegistryNamesAreCaseSensitiveAndSwitchesIsolated() {
        let registry = SwitchRegistry()
        let vmNetwork = registry.virtualSwitch(named: "VM Network")
        XCTAssertTrue(registry.virtualSwitch(named: "VM Network") === vmNetwork)
        XCTAssertNil(registry.existingSwitch(named: "vm network"))
        let other = registry.virtualSwitch(named: "vm network")
        XCTAssertFalse(other === vmNetwork)
        XCTAssertTrue(registry.existingSwitch(named: "vm network") === other)
        XCTAssertEqual(registry.switches.map(\.name), ["VM Network", "vm network"])

        let (a1, in1) = makePort(vmNetwork, "a", 1)
        let (_, in2) = makePort(vmNetwork, "b", 2)
        let (b1, in3) = makePort(other, "c", 3)
        let (_, in4) = makePort(other, "d", 4)
        // Even the same MAC on both switches does not leak frames across.
        let (_, in5) = makePort(other, "e", 2)
        XCTAssertEqual(a1.send(frame(to: broadcast, from: mac(1))), .sent)
        XCTAssertEqual(a1.send(frame(to: mac(2), from: mac(1))), .sent)
        XCTAssertEqual(in2.count, 2)
        XCTAssertEqual(in3.count + in4.count + in5.count, 0)
        XCTAssertEqual(b1.send(frame(to: broadcast, from: mac(3))), .sent)
        XCTAssertEqual(in1.count, 0)
        XCTAssertEqual(in2.count, 2)
        XCTAssertEqual(in4.count, 1)
    }

    func testReceiverMaySendFromInsideReceive() {
        let sw = makeSwitch()
        let (a, inA) = makePort(sw, "a", 1)
        let responderBox = PortBox()
        let requests = Atomic<Int>(0)
        let responder = sw.makePort(name: "echo", mac: mac(2), receive: { f in
            requests.wrappingAdd(1, ordering: .relaxed)
            // Reply to the sender, and flood a broadcast too, from inside receive.
            guard let me = responderBox.port.withLock({ $0 }) else { return .dropped }
            let source = Array(f[6..<12])
            _ = me.send(frame(to: source, from: mac(2), payload: [0x08, 0x00] + f[14...]))
            _ = me.send(frame(to: broadcast, from: mac(2)))
            return .taken
        }, linkChanged: { _ in })
        responderBox.port.withLock { $0 = responder }

        let done = expectation(description: "no deadlock")
        let sender = a
        Thread.detachNewThread {
            for i in 0..<100 {
                _ = sender.send(frame(to: mac(2), from: mac(1), payload: [0x08, 0x00, UInt8(i)]))
            }
            done.fulfill()
        }
        wait(for: [done], timeout: 10)
        XCTAssertEqual(inA.count, 200)
        XCTAssertEqual(requests.load(ordering: .relaxed), 100)
        XCTAssertEqual(inA.received.filter { $0.count == 15 }.map { $0[14] }, (0..<100).map { UInt8($0) })
        XCTAssertEqual(responder.counters.txFrames, 200)
        responderBox.port.withLock { $0 = nil }
    }

    func testConcurrentSendersLoseNothing() {
        let sw = makeSwitch()
        // Queues deep enough for everything: this test is about ordering, not overload.
        let deep = PortQueueLimits(frames: 16384, bytes: 1 << 20)
        let (sink, inSink) = makePort(sw, "sink", 0x10, queue: deep)
        let senders = (1...4).map { makePort(sw, "s\($0)", UInt8($0), queue: deep) }
        _ = sink.send(frame(to: broadcast, from: mac(0x10)))   // learn the sink
        for (p, _) in senders { _ = p.send(frame(to: broadcast, from: p.mac.array)) }   // and the senders
        let perThread = 2000

        let group = DispatchGroup()
        for (index, (port, _)) in senders.enumerated() {
            group.enter()
            Thread.detachNewThread {
                for seq in 0..<perThread {
                    let payload: [UInt8] = [0x88, 0xB5, UInt8(index), UInt8(seq >> 8), UInt8(seq & 0xFF)]
                    // Every 10th frame is a broadcast, the rest go to the sink only.
                    let dst = seq % 10 == 0 ? broadcast : mac(0x10)
                    let r = port.send(frame(to: dst, from: port.mac.array, payload: payload))
                    precondition(r == .sent)
                }
                group.leave()
            }
        }
        XCTAssertEqual(group.wait(timeout: .now() + 30), .success)

        let broadcastsPerThread = perThread / 10
        // The sink: every data frame, in per-sender order.
        let data = inSink.received.filter { $0.count == 17 }
        XCTAssertEqual(data.count, 4 * perThread)
        for index in 0..<4 {
            let seqs = data.filter { Int($0[14]) == index }.map { Int($0[15]) << 8 | Int($0[16]) }
            XCTAssertEqual(seqs, Array(0..<perThread), "sender \(index) frames lost or reordered")
        }
        let sinkCounters = sink.counters
        XCTAssertEqual(sinkCounters.rxFrames, UInt64(4 * perThread + 4))   // + the senders' announcements
        XCTAssertEqual(sinkCounters.rxDrops, 0)

        var txTotal: UInt64 = 0, rxTotal: UInt64 = 0
        for (port, inbox) in senders {
            let c = port.counters
            XCTAssertEqual(c.txFrames, UInt64(perThread + 1))
            XCTAssertEqual(c.txBytes, UInt64(perThread * 17 + 18))
            XCTAssertEqual(c.txDrops, 0)
            // Each sender sees the other three senders' broadcasts (plus announcements).
            XCTAssertEqual(inbox.received.filter { $0.count == 17 }.count, 3 * broadcastsPerThread)
            XCTAssertEqual(c.rxFrames, UInt64(inbox.count))
            txTotal += c.txFrames
            rxTotal += c.rxFrames
        }
        XCTAssertEqual(txTotal, UInt64(4 * (perThread + 1)))
        XCTAssertEqual(rxTotal + sinkCounters.rxFrames,
                       UInt64(4 * perThread + 4) + UInt64(4 * 3 * broadcastsPerThread) + 4 * 3 + 4)
    }

    func testRemovedPortIsForgottenAndSilent() {
        let sw = makeSwitch()
        let (a, _) = makePort(sw, "a", 1)
        let (b, inB) = makePort(sw, "b", 2)
        let (_, inC) = makePort(sw, "c", 3)
        _ = b.send(frame(to: broadcast, from: mac(2)))
        sw.removePort(b)
        sw.removePort(b)   // twice is harmless
        XCTAssertEqual(sw.ports.map(\.name), ["a", "c"])
        XCTAssertNil(sw.learnedPort(for: b.mac))
        XCTAssertFalse(b.isLinkUp)
        b.setLink(up: true)
        XCTAssertFalse(b.isLinkUp)
        XCTAssertEqual(inB.linkEvents, [])
        XCTAssertEqual(b.send(frame(to: broadcast, from: mac(2))), .linkDown)
        // Unicast to b's old address now floods to the remaining ports only.
        XCTAssertEqual(a.send(frame(to: mac(2), from: mac(1))), .sent)
        XCTAssertEqual(inB.count, 0)
        XCTAssertEqual(inC.count, 2)
        // A port of another switch is ignored.
        let other = makeSwitch("other")
        other.removePort(a)
        XCTAssertEqual(sw.ports.count, 2)
    }

    func testRemovePortWaitsForDeliveryInProgress() {
        let sw = makeSwitch()
        let (a, _) = makePort(sw, "a", 1)
        let inside = DispatchSemaphore(value: 0)
        let finished = Atomic<Bool>(false)
        let slow = sw.makePort(name: "slow", mac: mac(2), receive: { _ in
            inside.signal()
            usleep(200_000)
            finished.store(true, ordering: .sequentiallyConsistent)
            return .taken
        }, linkChanged: { _ in })
        Thread.detachNewThread { _ = a.send(frame(to: broadcast, from: mac(1))) }
        inside.wait()
        sw.removePort(slow)
        XCTAssertTrue(finished.load(ordering: .sequentiallyConsistent),
                      "removePort returned while the port's receive was still running")
    }

    func testMACTableIsBounded() {
        let sw = makeSwitch()
        let (a, _) = makePort(sw, "a", 1)
        let (_, inB) = makePort(sw, "b", 2, queue: PortQueueLimits(frames: 8192, bytes: 1 << 20))
        for i in 0..<(VirtualSwitch.macTableCapacity + 500) {
            let src: [UInt8] = [0x02, 0x00, 0x00, UInt8(i >> 16 & 0xFF), UInt8(i >> 8 & 0xFF), UInt8(i & 0xFF)]
            XCTAssertEqual(a.send(frame(to: broadcast, from: src)), .sent)
        }
        XCTAssertEqual(sw.learnedAddressCount, VirtualSwitch.macTableCapacity)
        XCTAssertEqual(inB.count, VirtualSwitch.macTableCapacity + 500)
    }

    // MARK: - Ports are queues

    func testReceiveRunsOnThePortsOwnThreadNeverTheSenders() {
        let sw = makeSwitch()
        let (a, inA) = makePort(sw, "a", 1)
        let (b, inB) = makePort(sw, "b", 2)
        _ = a.send(frame(to: broadcast, from: mac(1)))
        _ = a.send(frame(to: mac(2), from: mac(1)))
        let helper = Mutex<pthread_t?>(nil)
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            helper.withLock { $0 = pthread_self() }
            for _ in 0..<3 { _ = b.send(frame(to: mac(1), from: mac(2))) }
            done.signal()
        }
        done.wait()
        XCTAssertEqual(inB.count, 2)
        XCTAssertEqual(inA.count, 3)
        let bThreads = inB.threads.withLock { $0 }, aThreads = inA.threads.withLock { $0 }
        guard let sender = helper.withLock({ $0 }) else { return XCTFail("the helper thread did not run") }
        XCTAssertEqual(Set(bThreads).count, 1, "one receive thread per port")
        XCTAssertEqual(Set(aThreads).count, 1, "one receive thread per port")
        XCTAssertEqual(pthread_equal(bThreads[0], pthread_self()), 0, "b's receive ran on the sending (test) thread")
        XCTAssertEqual(pthread_equal(aThreads[0], sender), 0, "a's receive ran on the sending thread")
        XCTAssertEqual(pthread_equal(aThreads[0], bThreads[0]), 0, "two ports share a receive thread")
    }

    /// A receiver stuck in `receive`: the queue fills (the frame being delivered counts),
    /// and what does not fit is dropped and counted; sending never waits for the receiver.
    func testFullQueueDropsAndCounts() {
        let sw = makeSwitch()
        let (a, _) = makePort(sw, "a", 1)
        let entered = DispatchSemaphore(value: 0), gate = DispatchSemaphore(value: 0)
        let got = Mutex<[[UInt8]]>([])
        let b = sw.makePort(name: "b", mac: mac(2), queue: PortQueueLimits(frames: 4, bytes: 1 << 17), receive: { f in
            entered.signal()
            gate.wait()
            got.withLock { $0.append(Array(f)) }
            return .taken
        }, linkChanged: { _ in })
        let frames = (0..<11).map { frame(to: mac(2), from: mac(1), payload: [0x08, 0x00, UInt8($0)]) }
        XCTAssertEqual(a.send(frames[0]), .sent)
        entered.wait()
        for f in frames[1...] { XCTAssertEqual(a.send(f), .sent) }
        XCTAssertEqual(b.counters.rxDrops, 7, "4 frames fit (1 being delivered + 3 waiting); 7 do not")
        XCTAssertEqual(b.queuedFrames, 4)
        for _ in 0..<4 { gate.signal() }
        XCTAssertTrue(sw.waitUntilDelivered())
        XCTAssertEqual(got.withLock { $0 }, Array(frames[0..<4]))
        XCTAssertEqual(b.counters.rxFrames, 4)
        XCTAssertEqual(b.counters.rxBytes, 4 * 15)
        XCTAssertEqual(b.counters.rxDrops, 7)
        XCTAssertEqual(a.counters.txFrames, 11, "the sender's side saw every frame go out")
    }

    /// The byte bound, and records wrapping to the start of the arena: frames are never
    /// split, and what was stored comes out intact and in order.
    func testQueueBytesWrapAroundAndBoundTheQueue() {
        let sw = makeSwitch()
        let (a, _) = makePort(sw, "a", 1)
        let entered = DispatchSemaphore(value: 0), gate = DispatchSemaphore(value: 0)
        let got = Mutex<[[UInt8]]>([])
        let b = sw.makePort(name: "b", mac: mac(2), queue: PortQueueLimits(frames: 64, bytes: 70000), receive: { f in
            entered.signal()
            gate.wait()
            got.withLock { $0.append(Array(f)) }
            return .taken
        }, linkChanged: { _ in })
        func big(_ size: Int, _ tag: UInt8) -> [UInt8] {
            frame(to: mac(2), from: mac(1), payload: (0..<(size - 12)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ Int(tag)) })
        }
        let (fa, fb, fc, fd, fe) = (big(30000, 1), big(30000, 2), big(20000, 3), big(15000, 4), big(9000, 5))
        XCTAssertEqual(a.send(fa), .sent)          // at 0, being delivered
        entered.wait()
        XCTAssertEqual(a.send(fb), .sent)          // at 30000
        XCTAssertEqual(a.send(fc), .sent)          // 10000 left at the end, 0 at the start: dropped
        XCTAssertEqual(b.counters.rxDrops, 1)
        gate.signal()                               // fa done; fb (at 30000) is delivered next
        entered.wait()
        XCTAssertEqual(a.send(fc), .sent)          // wraps to 0
        XCTAssertEqual(a.send(fd), .sent)          // 10000 free before fb: dropped
        XCTAssertEqual(a.send(fe), .sent)          // fits at 20000
        XCTAssertEqual(b.counters.rxDrops, 2)
        XCTAssertEqual(b.queuedFrames, 3)
        for _ in 0..<3 { gate.signal() }
        XCTAssertTrue(sw.waitUntilDelivered())
        XCTAssertEqual(got.withLock { $0 }, [fa, fb, fc, fe])
        XCTAssertEqual(b.counters.rxFrames, 4)
    }

    /// Back-pressure: a port that holds frames keeps the one its NIC had no room for at the
    /// head of the queue, delivers nothing until `receiveReady`, and only drops what does
    /// not fit into the queue.
    func testHeldFramesWaitForReceiveReady() {
        let sw = makeSwitch()
        let (a, _) = makePort(sw, "a", 1)
        let room = Atomic<Int>(0)
        let got = Mutex<[[UInt8]]>([])
        let b = sw.makePort(name: "b", mac: mac(2), queue: PortQueueLimits(frames: 8, bytes: 1 << 17), receive: { f in
            guard room.load(ordering: .sequentiallyConsistent) > 0 else { return .full }
            room.wrappingSubtract(1, ordering: .sequentiallyConsistent)
            got.withLock { $0.append(Array(f)) }
            return .taken
        }, linkChanged: { _ in })
        XCTAssertFalse(b.holdsFramesWhenFull)
        b.holdsFramesWhenFull = true
        let frames = (0..<12).map { frame(to: mac(2), from: mac(1), payload: [0x08, 0x00, UInt8($0)]) }
        for f in frames[0..<5] { XCTAssertEqual(a.send(f), .sent) }
        XCTAssertTrue(sw.waitUntilDelivered(), "a held queue is idle")
        XCTAssertEqual(got.withLock { $0.count }, 0)
        XCTAssertEqual(b.queuedFrames, 5)
        XCTAssertEqual(b.counters.rxDrops, 0, "held, not dropped")

        room.store(2, ordering: .sequentiallyConsistent)
        b.receiveReady()
        XCTAssertTrue(sw.waitUntilDelivered())
        XCTAssertEqual(got.withLock { $0 }, Array(frames[0..<2]))
        XCTAssertEqual(b.queuedFrames, 3)

        // While held the queue still bounds what waits: 3 + 6 > 8.
        for f in frames[5..<11] { XCTAssertEqual(a.send(f), .sent) }
        XCTAssertEqual(b.counters.rxDrops, 1)
        XCTAssertEqual(b.queuedFrames, 8)
        b.receiveReady()   // no room yet: tried again, held again
        XCTAssertTrue(sw.waitUntilDelivered())
        XCTAssertEqual(got.withLock { $0.count }, 2)

        room.store(100, ordering: .sequentiallyConsistent)
        b.receiveReady()
        XCTAssertTrue(sw.waitUntilDelivered())
        XCTAssertEqual(got.withLock { $0 }, Array(frames[0..<10]))
        XCTAssertEqual(b.counters.rxFrames, 10)

        // Without holding, "no room" drops at once.
        room.store(0, ordering: .sequentiallyConsistent)
        b.holdsFramesWhenFull = false
        XCTAssertEqual(a.send(frames[11]), .sent)
        XCTAssertTrue(sw.waitUntilDelivered())
        XCTAssertEqual(b.counters.rxDrops, 2)
        XCTAssertEqual(b.queuedFrames, 0)
    }
}
