import Glibc
import HVSupport

/// One command as an adapter hands it over.
package struct SCSIRequest: Sendable {
    package var target: Int
    package var lun: UInt32
    package var cdb: [UInt8]
    package var direction: SCSIDataDirection
    /// The initiator's buffer; nil when a segment is not guest RAM.
    package var data: SCSIDataBuffer?
    /// Bytes the segments add up to (reported as residual when nothing moves).
    package var dataLength: Int

    package init(target: Int, lun: UInt32, cdb: [UInt8], direction: SCSIDataDirection, data: SCSIDataBuffer?, dataLength: Int) {
        self.target = target
        self.lun = lun
        self.cdb = cdb
        self.direction = direction
        self.data = data
        self.dataLength = dataLength
    }
}

/// The targets of one SCSI adapter (ids 0..15) and the commands in flight on them.
/// Commands run on the disk I/O queue; each completes exactly once, on a queue thread,
/// never inside `submit` and with no lock of the bus held. Task management (`abortAll`)
/// ends commands and waits for their completions.
package final class SCSIBus: @unchecked Sendable {
    package static let maxTargets = 16

    private let targets: [(any SCSITarget)?]
    private let queue: DiskIOQueue

    private let lock = HostLock()
    // [lock]
    private var inFlight: [UInt64: InFlight] = [:]
    private var nextID: UInt64 = 0

    private final class InFlight {
        let target: Int
        var aborted = false
        init(target: Int) { self.target = target }
    }

    /// `targets[t]` is target t (nil: absent); at most 16.
    package init(targets: [(any SCSITarget)?], queue: DiskIOQueue) {
        precondition(targets.count <= Self.maxTargets)
        self.targets = targets + Array(repeating: nil, count: Self.maxTargets - targets.count)
        self.queue = queue
    }

    /// Bit t set when target t is present.
    package var targetMask: UInt32 {
        targets.enumerated().reduce(0) { $0 | ($1.element != nil ? 1 << UInt32($1.offset) : 0) }
    }

    package func target(_ id: Int) -> (any SCSITarget)? { (0..<Self.maxTargets).contains(id) ? targets[id] : nil }

    /// Queues `request`; `completion` runs once on a queue thread. Returns false (and
    /// never calls `completion`) when the queue has shut down.
    package func submit(_ request: SCSIRequest, completion: @escaping @Sendable (SCSIResponse) -> Void) -> Bool {
        let id = lock.withLock { () -> UInt64 in
            nextID += 1
            inFlight[nextID] = InFlight(target: request.target)
            return nextID
        }
        let queued = queue.submit { [self] in
            Self.markWorkerThread()
            let response = wasAborted(id) ? .host(.aborted, residual: request.dataLength) : execute(request)
            // A command that finished after an abort reached it still ends as aborted:
            // the initiator has forgotten it.
            completion(wasAborted(id) ? .host(.aborted, residual: request.dataLength) : response)
            lock.withLock {
                inFlight[id] = nil
                lock.broadcast()
            }
        }
        if !queued { lock.withLock { inFlight[id] = nil } }
        return queued
    }

    private func wasAborted(_ id: UInt64) -> Bool { lock.withLock { inFlight[id]?.aborted ?? false } }

    private func execute(_ request: SCSIRequest) -> SCSIResponse {
        guard let target = target(request.target) else { return .host(.noTarget, residual: request.dataLength) }
        guard let data = request.data else { return .host(.badDMA, residual: request.dataLength) }
        return target.execute(lun: request.lun, cdb: request.cdb, direction: request.direction, data: data)
    }

    /// Ends the commands in flight for `target` (all for nil): those not finished yet
    /// complete as aborted. With `reset` the targets return to their power-on state and
    /// report UNIT ATTENTION next. Waits for the completions, except on a queue thread
    /// (a completion callback calling in would wait for itself): then it returns false
    /// without waiting.
    @discardableResult
    package func abortAll(target: Int?, reset: Bool) -> Bool {
        let ids = lock.withLock { () -> [UInt64] in
            let hit = inFlight.filter { target == nil || $0.value.target == target }
            for r in hit.values { r.aborted = true }
            return Array(hit.keys)
        }
        if reset {
            for (id, t) in targets.enumerated() where target == nil || target == id { t?.reset() }
        }
        guard !Self.isWorkerThread else { return false }
        lock.withLock {
            while ids.contains(where: { inFlight[$0] != nil }) { lock.wait() }
        }
        return true
    }

    /// Commands in flight that an abort has reached (they complete as aborted).
    var abortedInFlight: Int { lock.withLock { inFlight.values.filter(\.aborted).count } }

    // MARK: Queue threads

    /// Set on every thread that has run a bus command (the disk queue's workers).
    private static let workerKey: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()

    private static func markWorkerThread() {
        if pthread_getspecific(workerKey) == nil { pthread_setspecific(workerKey, UnsafeRawPointer(bitPattern: 1)) }
    }

    private static var isWorkerThread: Bool { pthread_getspecific(workerKey) != nil }
}
