import Foundation
import Glibc
import Synchronization
import XCTest
@testable import HVHostIO
@testable import HVSupport

final class StorageIOQueueTests: XCTestCase {
    func testRunsAThousandJobsInOrderAndDrainWaits() {
        let queue = DiskIOQueue(name: "io-order")
        defer { queue.shutdown() }
        let log = Mutex<[Int]>([])
        for i in 0..<1000 {
            XCTAssertTrue(queue.submit {
                if i % 100 == 0 { usleep(2_000) }   // make drain() have something to wait for
                log.withLock { $0.append(i) }
            })
        }
        queue.drain()
        XCTAssertEqual(log.withLock { $0 }, Array(0..<1000))
    }

    func testDrainWaitsForARunningJob() {
        let queue = DiskIOQueue(name: "io-drain")
        defer { queue.shutdown() }
        let finished = Atomic<Bool>(false)
        queue.submit {
            usleep(100_000)
            finished.store(true, ordering: .sequentiallyConsistent)
        }
        queue.drain()
        XCTAssertTrue(finished.load(ordering: .sequentiallyConsistent))
        queue.drain()   // idle: returns at once
    }

    func testJobsRunOnAWorkerThread() {
        let queue = DiskIOQueue(name: "io-thread")
        defer { queue.shutdown() }
        let submitter = pthread_self()
        let sameThread = Atomic<Bool>(true)
        let name = Mutex<String>("")
        queue.submit {
            sameThread.store(pthread_equal(pthread_self(), submitter) != 0, ordering: .relaxed)
            var buffer = [CChar](repeating: 0, count: 32)
            let fd = open("/proc/thread-self/comm", O_RDONLY)
            if fd >= 0 {
                let n = read(fd, &buffer, 31)
                close(fd)
                if n > 0 { name.withLock { $0 = String(decoding: buffer.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) } }
            }
        }
        queue.drain()
        XCTAssertFalse(sameThread.load(ordering: .relaxed))
        XCTAssertEqual(name.withLock { $0 }, "io-thread")
    }

    func testJobsMaySubmitMoreJobsAndDrainCoversThem() {
        let queue = DiskIOQueue(name: "io-chain")
        defer { queue.shutdown() }
        let log = Mutex<[Int]>([])
        queue.submit {
            log.withLock { $0.append(1) }
            queue.submit { log.withLock { $0.append(3) } }
        }
        queue.submit { log.withLock { $0.append(2) } }
        queue.drain()
        XCTAssertEqual(log.withLock { $0 }, [1, 2, 3])
    }

    func testSeveralThreadsRunEverything() {
        let queue = DiskIOQueue(name: "io-multi", threads: 4)
        defer { queue.shutdown() }
        let count = Atomic<Int>(0)
        let concurrent = Atomic<Int>(0)
        let peak = Atomic<Int>(0)
        for _ in 0..<200 {
            queue.submit {
                let now = concurrent.wrappingAdd(1, ordering: .sequentiallyConsistent).newValue
                var seen = peak.load(ordering: .relaxed)
                while now > seen {
                    let (done, current) = peak.compareExchange(expected: seen, desired: now, ordering: .relaxed)
                    if done { break }
                    seen = current
                }
                usleep(500)
                concurrent.wrappingSubtract(1, ordering: .sequentiallyConsistent)
                count.wrappingAdd(1, ordering: .relaxed)
            }
        }
        queue.drain()
        XCTAssertEqual(count.load(ordering: .relaxed), 200)
        XCTAssertLessThanOrEqual(peak.load(ordering: .relaxed), 4)
        XCTAssertGreaterThan(peak.load(ordering: .relaxed), 1, "4 workers never overlapped")
    }

    func testShutdownRunsQueuedWorkThenRefusesMore() {
        let queue = DiskIOQueue(name: "io-stop")
        let count = Atomic<Int>(0)
        for _ in 0..<50 {
            queue.submit {
                usleep(200)
                count.wrappingAdd(1, ordering: .relaxed)
            }
        }
        queue.shutdown()
        XCTAssertEqual(count.load(ordering: .relaxed), 50)
        XCTAssertFalse(queue.submit { count.wrappingAdd(1, ordering: .relaxed) })
        queue.shutdown()   // idempotent
        queue.drain()      // nothing left
        XCTAssertEqual(count.load(ordering: .relaxed), 50)
    }

    func testDroppingTheQueueStopsItsWorkers() {
        let count = Atomic<Int>(0)
        do {
            let queue = DiskIOQueue(name: "io-drop")
            for _ in 0..<10 { queue.submit { count.wrappingAdd(1, ordering: .relaxed) } }
        }
        // deinit shut the queue down, which runs what was queued and joins the worker.
        XCTAssertEqual(count.load(ordering: .relaxed), 10)
    }
}
