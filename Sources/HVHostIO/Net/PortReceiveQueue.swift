import Glibc
import HVSupport
import Synchronization

/// What a port's receiver did with a frame (the `receive` closure of `VirtualSwitch.makePort`).
package enum PortReceiveResult: Sendable {
    /// Taken, or deliberately ignored (e.g. the NIC's address filter rejected it).
    case taken
    /// Refused (receiver off, frame too long...): dropped and counted in `rxDrops`.
    case dropped
    /// No room now (the NIC's receive ring is full). A port that holds frames
    /// (`VirtualPort.holdsFramesWhenFull`) keeps the frame at the head of its queue and
    /// delivers nothing more until `VirtualPort.receiveReady()`; any other port drops it
    /// and counts it in `rxDrops`.
    case full
}

/// Bounds of a port's receive queue; its buffers are allocated once, when the port is made.
package struct PortQueueLimits: Sendable, Equatable {
    /// Frames waiting (including the one being delivered).
    let frames: Int
    /// Bytes of frame data; at least one maximum-size frame.
    package let bytes: Int

    /// 512 frames (a PCnet's largest ring) in 1 MiB: room for 512 full-size frames.
    static let standard = PortQueueLimits(frames: 512, bytes: 1 << 20)

    init(frames: Int, bytes: Int) {
        precondition(frames >= 1 && bytes >= Ethernet.maximumFrameLength,
                     "PortQueueLimits: at least 1 frame and \(Ethernet.maximumFrameLength) bytes")
        self.frames = frames
        self.bytes = bytes
    }
}

/// A port's bounded receive queue and the host thread that drains it.
///
/// Senders copy frames in (`enqueue`, any thread, under the queue lock); the port's own
/// receive thread hands them to the receiver one at a time, in order, without the lock,
/// so no sender ever runs the receiving NIC's code. A full queue drops the new frame and
/// counts it (a NIC out of descriptors). Frame data lives in one preallocated arena used
/// as a ring of variable-length records (a record never wraps; when the tail cannot take
/// a frame the next one starts at offset 0), plus a ring of (offset, length) entries:
/// no allocation per frame.
final class PortReceiveQueue: @unchecked Sendable {
    typealias Receiver = @Sendable (UnsafeRawBufferPointer) -> PortReceiveResult

    /// Frames handed to the receiver per lock round trip.
    private static let batch = 32

    private let receiver: Receiver
    private let lock = HostLock()
    /// The receive thread waits here for frames, a `receiveReady`, or `stop`.
    private let work = HostCondition()
    /// `waitUntilIdle` waits here.
    private let idle = HostCondition()
    private let arena: UnsafeMutableRawPointer
    private let capacity: Int
    private let depth: Int
    private let offsets: UnsafeMutablePointer<Int>
    private let lengths: UnsafeMutablePointer<Int>

    // Under `lock`.
    private var head = 0
    private var count = 0
    /// End of the newest record (where the next one goes if it fits).
    private var writeOffset = 0
    /// Frames at [head, head + inFlight) are being delivered outside the lock.
    private var inFlight = 0
    private var sleeping = false
    /// Waiting for `receiveReady` after a `.full`.
    private var held = false
    private var readyCalls: UInt64 = 0
    private var holdWhenFull = false
    private var stopping = false
    /// `stopping`, readable by the receive thread between frames without the lock.
    private let halt = Atomic<Bool>(false)
    private var idleWaiters = 0
    private var thread: pthread_t?
    private var framesIn: UInt64 = 0
    private var rxFrames: UInt64 = 0
    private var rxBytes: UInt64 = 0
    private var rxDrops: UInt64 = 0

    init(limits: PortQueueLimits, threadName: String, receiver: @escaping Receiver) {
        self.receiver = receiver
        capacity = limits.bytes
        depth = limits.frames
        arena = .allocate(byteCount: capacity, alignment: 16)
        offsets = .allocate(capacity: depth)
        offsets.initialize(repeating: 0, count: depth)
        lengths = .allocate(capacity: depth)
        lengths.initialize(repeating: 0, count: depth)
        start(name: threadName)
    }

    deinit {
        arena.deallocate()
        offsets.deallocate()
        lengths.deallocate()
    }

    // MARK: - Senders

    /// Copies a frame in; false (and counted in `rxDrops`) when it does not fit. After
    /// `stop()` frames are refused without counting: the port is gone.
    func enqueue(_ frame: FrameSegments) -> Bool {
        let length = frame.length
        lock.lock()
        defer { lock.unlock() }
        guard !stopping else { return false }
        guard count < depth, let at = place(length) else {
            rxDrops &+= 1
            return false
        }
        frame.copy(to: arena + at)
        let slot = (head + count) % depth
        offsets[slot] = at
        lengths[slot] = length
        count += 1
        framesIn &+= 1
        writeOffset = at + length
        if sleeping && !held { work.signal() }
        return true
    }

    /// Where a record of `length` bytes fits, or nil. Records occupy [offsets[head],
    /// writeOffset) when not wrapped, else [offsets[head], capacity) and [0, writeOffset).
    private func place(_ length: Int) -> Int? {
        guard count > 0 else { return 0 }
        let oldest = offsets[head]
        if writeOffset > oldest {
            if capacity - writeOffset >= length { return writeOffset }
            return oldest >= length ? 0 : nil
        }
        return oldest - writeOffset >= length ? writeOffset : nil
    }

    // MARK: - Back-pressure

    /// Whether a `.full` keeps the frame queued (true) or drops it (false).
    func setHoldWhenFull(_ hold: Bool) {
        lock.withLock {
            holdWhenFull = hold
            if !hold { release() }
        }
    }

    var holdsWhenFull: Bool { lock.withLock { holdWhenFull } }

    /// The receiver has room again: delivery resumes. Never calls the receiver itself.
    func receiveReady() {
        lock.withLock {
            readyCalls &+= 1
            release()
        }
    }

    private func release() {
        guard held else { return }
        held = false
        if sleeping { work.signal() }
    }

    // MARK: - Observing

    /// Frames waiting (including one being delivered).
    var queuedFrames: Int { lock.withLock { count } }

    /// Frames ever taken into the queue.
    var framesQueued: UInt64 { lock.withLock { framesIn } }

    /// Snapshot of the receive counters.
    var counters: (frames: UInt64, bytes: UInt64, drops: UInt64) { lock.withLock { (rxFrames, rxBytes, rxDrops) } }

    /// Waits until the receive thread has nothing it could deliver: the queue is empty, or
    /// held for `receiveReady`, and no delivery is in progress. False on timeout.
    func waitUntilIdle(timeout nanoseconds: UInt64) -> Bool {
        let deadline = Self.monotonicNow() &+ nanoseconds
        lock.lock()
        defer { lock.unlock() }
        idleWaiters += 1
        defer { idleWaiters -= 1 }
        while !isIdle && !stopping {
            if Self.monotonicNow() >= deadline { return false }
            idle.wait(lock, until: deadline)
        }
        return true
    }

    private var isIdle: Bool { (count == 0 || held) && inFlight == 0 }

    private static func monotonicNow() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }

    // MARK: - The receive thread

    private func start(name: String) {
        // The thread keeps the queue alive until stop() ends it.
        thread = HostThread.spawn(name: name) { [self] in run() }
    }

    /// Stops the receive thread after the delivery in progress (if any) returns, and
    /// refuses frames from now on. Called from the receive thread itself (inside the
    /// receiver) it cannot wait for itself: that call returns at once.
    func stop() {
        lock.lock()
        stopping = true
        halt.store(true, ordering: .relaxed)
        work.signal()
        idle.broadcast()
        let t = thread
        thread = nil
        lock.unlock()
        guard let t else { return }
        if pthread_equal(t, pthread_self()) != 0 { pthread_detach(t) } else { pthread_join(t, nil) }
    }

    private func run() {
        lock.lock()
        while true {
            while !stopping && (count == 0 || held) {
                if idleWaiters > 0 { idle.broadcast() }
                sleeping = true
                work.wait(lock)
                sleeping = false
            }
            if stopping { break }
            let first = head
            let n = min(count, Self.batch)
            let readyBefore = readyCalls
            inFlight = n
            lock.unlock()

            var done = 0, taken: UInt64 = 0, bytes: UInt64 = 0, dropped: UInt64 = 0
            var full = false
            while done < n && !halt.load(ordering: .relaxed) {
                let slot = (first + done) % depth
                let frame = UnsafeRawBufferPointer(start: arena + offsets[slot], count: lengths[slot])
                switch receiver(frame) {
                case .taken:
                    taken += 1
                    bytes += UInt64(frame.count)
                case .dropped:
                    dropped += 1
                case .full:
                    full = true
                }
                if full { break }
                done += 1
            }

            lock.lock()
            inFlight = 0
            if full && !holdWhenFull {
                done += 1
                dropped += 1
            } else if full && readyCalls == readyBefore {
                held = true   // a receiveReady that raced with the refusal retries at once instead
            }
            head = (head + done) % depth
            count -= done
            rxFrames &+= taken
            rxBytes &+= bytes
            rxDrops &+= dropped
        }
        idle.broadcast()
        lock.unlock()
    }
}
