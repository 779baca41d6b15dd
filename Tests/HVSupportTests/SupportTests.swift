import Glibc
import Synchronization
import Testing
@testable import HVSupport

/// The shared host primitives: byte rings, MAC addresses, the timer queue, locks.
@Suite struct SupportTests {
    @Test func byteRingIsFIFOAndBounded() {
        var ring = ByteRing(capacity: 3)
        let accepted = [ring.push(1), ring.push(2), ring.push(3), ring.push(4)]
        #expect(accepted == [true, true, true, false], "a full ring refuses")
        #expect(ring.isFull && ring.freeSpace == 0)
        let first = ring.pop()
        #expect(first == 1)
        let wrapped = ring.push(4)
        #expect(wrapped, "space is reused after a pop (wrap-around)")
        let rest = [ring.pop(), ring.pop(), ring.pop(), ring.pop()]
        #expect(rest == [2, 3, 4, nil])
        #expect(ring.isEmpty)
    }

    @Test func macAddressParsesAndPrints() throws {
        let mac = try #require(MACAddress("00:50:56:0a:0B:ff"))
        #expect(mac.description == "00:50:56:0A:0B:FF")
        #expect(mac.isVMwareStatic && !mac.isMulticast)
        #expect(MACAddress("00:50:56:0a:0b") == nil)
        #expect(MACAddress("00:50:56:0a:0b:zz") == nil)
        #expect(MACAddress(0x01, 0, 0x5E, 0, 0, 1).isMulticast)
    }

    @Test func timerQueueFiresArmedTimersAndNotCancelledOnes() {
        let clock = VMClock()
        let queue = TimerQueue(clock: clock, name: "support-test")
        queue.start()
        defer { queue.stop() }
        let fired = Atomic<Int>(0)
        let cancelled = Atomic<Int>(0)
        let a = queue.makeTimer { fired.add(1, ordering: .relaxed) }
        let b = queue.makeTimer { cancelled.add(1, ordering: .relaxed) }
        a.arm(at: clock.now() + 1_000_000)
        b.arm(at: clock.now() + 50_000_000)
        b.cancel()
        let deadline = VMClock.hostNanoseconds() + 2_000_000_000
        while fired.load(ordering: .relaxed) == 0 && VMClock.hostNanoseconds() < deadline { usleep(1000) }
        usleep(60_000)
        #expect(fired.load(ordering: .relaxed) == 1)
        #expect(cancelled.load(ordering: .relaxed) == 0)
    }

    @Test func hostLockWaitTimesOutAtItsDeadline() {
        let lock = HostLock()
        let start = VMClock.hostNanoseconds()
        lock.withLock { lock.wait(until: start + 20_000_000) }
        #expect(VMClock.hostNanoseconds() - start >= 15_000_000)
    }
}
