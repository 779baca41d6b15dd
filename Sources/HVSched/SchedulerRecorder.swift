import Glibc
import HVSupport

/// Writes every scheduling event of a live run to a file (`hvhost run --sched-record`),
/// in the line format `sched-sim --replay` reads (version 1, documented in
/// `Plugins/SchedPolicies/RECORDING.md`).
///
/// Pools call ``record(_:)`` with their lock held; it only appends a fixed-size event to
/// an in-memory buffer under the recorder's own short lock. A writer thread swaps the
/// buffer out every 100 ms and formats and writes it with no scheduler lock held, so
/// recording adds an append to each decision, not formatting or I/O. Events go to a
/// side file while the run lasts; ``finish()`` writes the header (pools, VMs and their
/// parameters, which are only all known at the end) and then the events.
package final class SchedulerRecorder: @unchecked Sendable {
    /// The format version in the first line (`hvsched-record 1`).
    package static let formatVersion = 1
    static let flushPeriod: UInt64 = 100_000_000

    package enum Kind: UInt8, Sendable {
        case join, wake, block, yield, sliceEnd, leave, pick, idle, params
    }

    /// One event; what `a` and `b` mean depends on the kind (see `line`).
    package struct Event: Sendable {
        var time: UInt64
        var kind: Kind
        var pool: UInt16
        var pcpu: UInt16
        var vcpu: Int32
        var a: UInt64
        var b: UInt64
    }

    struct PoolInfo {
        var name: String
        var slots: [Int]
        var policy: String
    }

    struct VCPUInfo {
        var vmID: Int32
        var vmName: String
        var index: Int
        var pool: Int
        var params: SchedulerParams
    }

    private let path: String
    private let sidePath: String
    private let sideFD: Int32
    private let epoch: UInt64
    private let pcpuCount: Int
    private let lock = HostLock()
    private let wakeup = HostCondition()
    // [lock]
    private var buffer: [Event] = []
    private var pools: [PoolInfo] = []
    private var vcpus: [Int32: VCPUInfo] = [:]
    private var stopping = false
    private var lastTime: UInt64 = 0
    private var writeError: String?
    private var writer: pthread_t?
    /// Written by the writer thread only.
    private var previousTime: UInt64

    /// Opens `path` for a run of `pcpus` pCPU slots whose pools read time from a clock
    /// that reads `start` now (times in the file count from it).
    package init(path: String, pcpus: Int, start: UInt64) throws {
        self.path = path
        self.sidePath = path + ".events"
        pcpuCount = pcpus
        epoch = start
        previousTime = start
        let fd = open(sidePath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw SchedulerPolicyError("--sched-record \(path): cannot create \(sidePath): \(String(cString: strerror(errno)))")
        }
        sideFD = fd
        buffer.reserveCapacity(4096)
        writer = HostThread.spawn(name: "sched-record") { [self] in writeLoop() }
    }

    /// Names pool number `index` (the order of ``Scheduler/pools``) for the header.
    func declare(pool index: Int, name: String, slots: [Int], policy: String) {
        lock.withLock {
            while pools.count <= index { pools.append(PoolInfo(name: "", slots: [], policy: "")) }
            pools[index] = PoolInfo(name: name, slots: slots, policy: policy)
        }
    }

    /// A vCPU joined pool `pool` (the pool's lock is held): declares it and records `join`.
    func join(time: UInt64, pool: Int, vcpu: Int32, vmID: Int32, vmName: String, index: Int, params: SchedulerParams) {
        lock.withLock {
            vcpus[vcpu] = VCPUInfo(vmID: vmID, vmName: vmName, index: index, pool: pool, params: params)
            append(Event(time: time, kind: .join, pool: UInt16(pool), pcpu: 0, vcpu: vcpu, a: 0, b: 0))
        }
    }

    /// Records an event (the pool's lock is held): an append, nothing more.
    func record(_ kind: Kind, time: UInt64, pool: Int, pcpu: Int = 0, vcpu: Int32, a: UInt64 = 0, b: UInt64 = 0) {
        lock.withLock {
            append(Event(time: time, kind: kind, pool: UInt16(pool), pcpu: UInt16(truncatingIfNeeded: pcpu), vcpu: vcpu, a: a, b: b))
        }
    }

    /// New parameters for a vCPU (the first one's stay in the header).
    func params(time: UInt64, pool: Int, vcpu: Int32, _ p: SchedulerParams) {
        record(.params, time: time, pool: pool, vcpu: vcpu, a: UInt64(p.shares),
               b: UInt64(p.minPercent) << 32 | UInt64(p.maxPercent))
    }

    private func append(_ e: Event) {
        buffer.append(e)
        if e.time > lastTime { lastTime = e.time }
    }

    /// Stops the writer, writes the file (header, then every event) and removes the
    /// side file. Throws when a write failed. Call it once; the writer thread keeps the
    /// recorder alive until then.
    package func finish() throws {
        let t: pthread_t? = lock.withLock {
            stopping = true
            wakeup.signal()
            defer { writer = nil }
            return writer
        }
        if let t { pthread_join(t, nil) }
        let (header, failure) = lock.withLock { (headerText(), writeError) }
        close(sideFD)
        defer { unlink(sidePath) }
        if let failure { throw SchedulerPolicyError("--sched-record \(path): \(failure)") }
        let out = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard out >= 0 else { throw SchedulerPolicyError("--sched-record \(path): cannot create: \(String(cString: strerror(errno)))") }
        defer { close(out) }
        guard Self.writeAll(out, Array(header.utf8)) else {
            throw SchedulerPolicyError("--sched-record \(path): cannot write: \(String(cString: strerror(errno)))")
        }
        let side = open(sidePath, O_RDONLY | O_CLOEXEC)
        guard side >= 0 else { throw SchedulerPolicyError("--sched-record \(sidePath): cannot reopen") }
        defer { close(side) }
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(side, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw SchedulerPolicyError("--sched-record \(sidePath): cannot read back") }
            if n == 0 { break }
            guard Self.writeAll(out, Array(chunk[0..<n])) else {
                throw SchedulerPolicyError("--sched-record \(path): cannot write: \(String(cString: strerror(errno)))")
            }
        }
        guard Self.writeAll(out, Array("end\n".utf8)) else {
            throw SchedulerPolicyError("--sched-record \(path): cannot write")
        }
    }

    /// [lock] Pools, VMs and vCPUs as the run saw them.
    private func headerText() -> String {
        var s = "hvsched-record \(Self.formatVersion)\n"
        s += "# hvhost run --sched-record; format: Plugins/SchedPolicies/RECORDING.md\n"
        s += "pcpus \(pcpuCount)\n"
        s += "duration \(max(lastTime, epoch) - epoch)\n"
        for (i, p) in pools.enumerated() {
            s += "pool \(i) \(p.name) slots \(p.slots.map(String.init).joined(separator: ",")) policy \(p.policy)\n"
        }
        var vms: [Int32: (name: String, pool: Int, count: Int, params: SchedulerParams)] = [:]
        for v in vcpus.values {
            var e = vms[v.vmID] ?? (v.vmName, v.pool, 0, v.params)
            e.count = max(e.count, v.index + 1)
            vms[v.vmID] = e
        }
        for (id, v) in vms.sorted(by: { $0.key < $1.key }) {
            let p = v.params
            s += "vm \(id) \(v.name) pool \(v.pool) vcpus \(v.count) shares \(p.shares) min \(p.minPercent) max \(p.maxPercent)"
            s += " affinity \(p.affinity) htsharing \(p.htSharing)\n"
        }
        for (id, v) in vcpus.sorted(by: { $0.key < $1.key }) {
            s += "vcpu \(id) vm \(v.vmID) index \(v.index)\n"
        }
        s += "events\n"
        return s
    }

    private func writeLoop() {
        var batch: [Event] = []
        batch.reserveCapacity(4096)
        while true {
            let done: Bool = lock.withLock {
                if !stopping && buffer.isEmpty {
                    wakeup.wait(lock, until: VMClock.hostNanoseconds() &+ Self.flushPeriod)
                }
                swap(&batch, &buffer)
                return stopping
            }
            if !batch.isEmpty {
                var text: [UInt8] = []
                text.reserveCapacity(batch.count * 20)
                for e in batch { line(e, into: &text) }
                batch.removeAll(keepingCapacity: true)
                if !Self.writeAll(sideFD, text) {
                    let message = "cannot write \(sidePath): \(String(cString: strerror(errno)))"
                    lock.withLock { if writeError == nil { writeError = message } }
                }
            }
            if done { return }
        }
    }

    /// `DT KIND ARGS`: DT = ns since the previous event (signed: two pools may append
    /// slightly out of clock order).
    private func line(_ e: Event, into out: inout [UInt8]) {
        let dt = Int64(bitPattern: e.time &- previousTime)
        previousTime = e.time
        var s = String(dt)
        switch e.kind {
        case .join: s += " j \(e.vcpu)"
        case .wake: s += " w \(e.vcpu)"
        case .block: s += " b \(e.vcpu) \(e.a) \(e.b)"
        case .yield: s += " y \(e.vcpu) \(e.a)"
        case .sliceEnd: s += " s \(e.vcpu) \(e.a)"
        case .leave: s += " l \(e.vcpu) \(e.a)"
        case .pick: s += " p \(e.pool) \(e.pcpu) \(e.vcpu) \(e.a)"
        case .idle: s += " i \(e.pool) \(e.pcpu) \(e.a)"
        case .params: s += " c \(e.vcpu) \(e.a) \(e.b >> 32) \(e.b & 0xFFFF_FFFF)"
        }
        out += s.utf8
        out.append(10)
    }

    private static func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return false }
            offset += n
        }
        return true
    }
}
