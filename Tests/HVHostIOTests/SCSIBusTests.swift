import Foundation
import Glibc
import Synchronization
import XCTest
@testable import HVHostIO
@testable import HVSupport

/// The bus: commands run on the disk I/O queue, absent targets time out, unaddressable
/// buffers fail, and task management ends commands and waits for their completions.
final class SCSIBusTests: XCTestCase {
    var queue: DiskIOQueue!
    var disk: MemoryDisk!
    var bus: SCSIBus!

    override func setUp() {
        queue = DiskIOQueue(name: "scsi-bus-test")
        disk = MemoryDisk(sectors: 64)
        bus = SCSIBus(targets: [nil, SCSIDiskTarget(disk: disk, seed: "bus/1")], queue: queue)
    }

    override func tearDown() {
        queue.shutdown()
    }

    private func request(target: Int = 1, cdb: [UInt8] = [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0],
                         buffer: TestBuffer? = TestBuffer(count: 512)) -> SCSIRequest {
        SCSIRequest(target: target, lun: 0, cdb: cdb, direction: .toInitiator, data: buffer, dataLength: 512)
    }

    private func submitAndWait(_ r: SCSIRequest) -> SCSIResponse? {
        let result = Mutex<SCSIResponse?>(nil)
        XCTAssertTrue(bus.submit(r) { response in result.withLock { $0 = response } })
        queue.drain()
        return result.withLock { $0 }
    }

    func testTargetMaskAbsentTargetAndUnaddressableBuffer() {
        XCTAssertEqual(bus.targetMask, 0b10)
        XCTAssertEqual(submitAndWait(request(target: 0)), .host(.noTarget, residual: 512))
        XCTAssertEqual(submitAndWait(request(target: 15)), .host(.noTarget, residual: 512))
        XCTAssertEqual(submitAndWait(request(buffer: nil)), .host(.badDMA, residual: 512))
        XCTAssertEqual(submitAndWait(request()), .good(residual: 0))
    }

    func testCompletionRunsOnAQueueThreadAfterSubmitReturns() {
        let submitter = pthread_self()
        let returned = Atomic<Bool>(false)
        let sawReturn = Atomic<Bool>(false)
        let sameThread = Atomic<Bool>(true)
        let gate = DispatchSemaphore(value: 0)
        queue.submit { gate.wait() }
        XCTAssertTrue(bus.submit(request()) { _ in
            sawReturn.store(returned.load(ordering: .sequentiallyConsistent), ordering: .sequentiallyConsistent)
            sameThread.store(pthread_equal(pthread_self(), submitter) != 0, ordering: .sequentiallyConsistent)
        })
        returned.store(true, ordering: .sequentiallyConsistent)
        gate.signal()
        queue.drain()
        XCTAssertTrue(sawReturn.load(ordering: .sequentiallyConsistent))
        XCTAssertFalse(sameThread.load(ordering: .sequentiallyConsistent))
    }

    func testResetAbortsQueuedCommandsWaitsForThemAndRaisesUnitAttention() throws {
        let gate = DispatchSemaphore(value: 0)
        queue.submit { gate.wait() }     // holds the queue: the commands below stay queued
        let responses = Mutex<[SCSIResponse]>([])
        for _ in 0..<3 {
            XCTAssertTrue(bus.submit(request()) { r in responses.withLock { $0.append(r) } })
        }
        let aborted = Atomic<Bool>(false)
        let abortReturned = expectation(description: "abortAll returned")
        let thread = HostThread.spawn(name: "abort") { [bus] in
            XCTAssertEqual(bus!.abortAll(target: 1, reset: true), true)
            aborted.store(true, ordering: .sequentiallyConsistent)
            abortReturned.fulfill()
        }
        // abortAll marks the commands, then waits for their completions.
        let deadline = Date().addingTimeInterval(30)
        while bus.abortedInFlight < 3 && Date() < deadline { usleep(1000) }
        XCTAssertEqual(bus.abortedInFlight, 3)
        XCTAssertFalse(aborted.load(ordering: .sequentiallyConsistent), "still waiting for the completions")
        gate.signal()
        wait(for: [abortReturned], timeout: 30)
        pthread_join(thread, nil)
        XCTAssertEqual(responses.withLock { $0 }, Array(repeating: .host(.aborted, residual: 512), count: 3))
        let ua = try XCTUnwrap(submitAndWait(request()))
        XCTAssertEqual([ua.status, ua.sense[2], ua.sense[12], ua.sense[13]], [2, 6, 0x29, 0])
        XCTAssertEqual(submitAndWait(request()), .good(residual: 0))
    }

    func testAbortOfAnotherTargetLeavesCommandsAlone() {
        let big = MemoryDisk(sectors: 64)
        bus = SCSIBus(targets: [SCSIDiskTarget(disk: big, seed: "bus/0"), SCSIDiskTarget(disk: disk, seed: "bus/1")], queue: queue)
        let gate = DispatchSemaphore(value: 0)
        queue.submit { gate.wait() }
        let responses = Mutex<[SCSIResponse]>([])
        XCTAssertTrue(bus.submit(request(target: 1)) { r in responses.withLock { $0.append(r) } })
        XCTAssertTrue(bus.abortAll(target: 0, reset: true), "nothing in flight for target 0: returns at once")
        gate.signal()
        queue.drain()
        XCTAssertEqual(responses.withLock { $0 }, [.good(residual: 0)])
    }

    func testAbortFromInsideACompletionDoesNotWaitForItself() {
        let result = Mutex<Bool?>(nil)
        XCTAssertTrue(bus.submit(request()) { [bus] _ in
            result.withLock { $0 = bus!.abortAll(target: nil, reset: false) }
        })
        queue.drain()
        XCTAssertEqual(result.withLock { $0 }, false)
    }
}
