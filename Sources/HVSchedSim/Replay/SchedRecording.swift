import HVSched

/// A live run's scheduling events as `hvhost run --sched-record` wrote them (format
/// version 1, `Plugins/SchedPolicies/RECORDING.md`): the pools, VMs and vCPUs of the
/// header, then every event with its absolute time (ns since recording started).
package struct SchedRecording: Sendable {
    struct Pool: Equatable, Sendable {
        var name: String
        var slots: [Int]
        var policy: String
    }

    struct VM: Equatable, Sendable {
        var id: Int32
        var name: String
        var pool: Int
        var vcpus: Int
        var params: SchedulerParams
    }

    struct VCPU: Equatable, Sendable {
        var id: Int32
        var vm: Int32
        var index: Int
    }

    enum Event: Equatable, Sendable {
        case join(vcpu: Int32)
        case wake(vcpu: Int32)
        /// Halted: the last stint's CPU time and the whole burst's since the wake.
        case block(vcpu: Int32, ran: UInt64, burst: UInt64)
        case yield(vcpu: Int32, ran: UInt64)
        case sliceEnd(vcpu: Int32, ran: UInt64)
        case leave(vcpu: Int32, ran: UInt64)
        case pick(pool: Int, pcpu: Int, vcpu: Int32, slice: UInt64)
        case idle(pool: Int, pcpu: Int, slice: UInt64)
        case params(vcpu: Int32, shares: UInt32, min: UInt32, max: UInt32)
    }

    /// File name, for messages and titles.
    var name: String
    var pcpus: Int
    var duration: UInt64
    var pools: [Pool]
    var vms: [VM]
    var vcpus: [VCPU]
    /// (time, event), in file order.
    var events: [(UInt64, Event)]

    /// Loads a recording file.
    package static func load(_ path: String) throws -> SchedRecording {
        let bytes = try SchedSimFiles.read(path)
        let name = path.split(separator: "/").last.map(String.init) ?? path
        return try parse(String(decoding: bytes, as: UTF8.self), name: name)
    }

    static func parse(_ text: String, name: String) throws(SchedSimScenarioError) -> SchedRecording {
        var r = SchedRecording(name: name, pcpus: 0, duration: 0, pools: [], vms: [], vcpus: [], events: [])
        var lineNo = 0
        var inEvents = false
        var ended = false
        var time: Int64 = 0
        func fail(_ m: String) -> SchedSimScenarioError { SchedSimScenarioError(file: name, line: lineNo, message: m) }
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNo += 1
            let w = raw.split(separator: " ").map(String.init)
            guard let first = w.first, !first.hasPrefix("#") else { continue }
            if ended { throw fail("text after 'end'") }
            if lineNo == 1 {
                guard w.count == 2, first == "hvsched-record" else { throw fail("not a scheduler recording (the first line is not 'hvsched-record VERSION')") }
                guard w[1] == String(SchedulerRecorder.formatVersion) else {
                    throw fail("recording format version \(w[1]); this hvhost reads version \(SchedulerRecorder.formatVersion)")
                }
                continue
            }
            if !inEvents {
                func int(_ i: Int) throws(SchedSimScenarioError) -> Int {
                    guard i < w.count, let v = Int(w[i]), v >= 0 else { throw fail("'\(first)': field \(i + 1) must be a non-negative number") }
                    return v
                }
                func key(_ i: Int, _ k: String) throws(SchedSimScenarioError) {
                    guard i < w.count, w[i] == k else { throw fail("'\(first)': expected '\(k)' as field \(i + 1)") }
                }
                switch first {
                case "pcpus": r.pcpus = try int(1)
                case "duration": r.duration = UInt64(try int(1))
                case "pool":
                    try key(3, "slots"); try key(5, "policy")
                    guard try int(1) == r.pools.count, w.count == 7 else { throw fail("pools must be numbered 0, 1, … in order") }
                    r.pools.append(Pool(name: w[2], slots: w[4].split(separator: ",").compactMap { Int($0) }, policy: w[6]))
                case "vm":
                    guard w.count == 17 else { throw fail("'vm' needs: vm ID NAME pool P vcpus N shares S min M max X affinity A htsharing H") }
                    try key(3, "pool"); try key(5, "vcpus"); try key(7, "shares"); try key(9, "min"); try key(11, "max")
                    try key(13, "affinity"); try key(15, "htsharing")
                    guard try int(4) < r.pools.count else { throw fail("vm '\(w[2])' names pool \(w[4]), which is not declared above") }
                    guard let ht = HTSharing.allCases.first(where: { $0.description == w[16] }) else { throw fail("htsharing '\(w[16])'") }
                    guard let aff = UInt64(w[14]) else { throw fail("affinity '\(w[14])' is not a number") }
                    let p = SchedulerParams(shares: UInt32(try int(8)), minPercent: UInt32(try int(10)), maxPercent: UInt32(try int(12)),
                                            htSharing: ht, affinity: aff)
                    r.vms.append(VM(id: Int32(try int(1)), name: w[2], pool: try int(4), vcpus: try int(6), params: p))
                case "vcpu":
                    try key(2, "vm"); try key(4, "index")
                    let vm = Int32(try int(3))
                    guard r.vms.contains(where: { $0.id == vm }) else { throw fail("vcpu \(w[1]) names VM \(vm), which is not declared above") }
                    r.vcpus.append(VCPU(id: Int32(try int(1)), vm: vm, index: try int(5)))
                case "events": inEvents = true
                default: throw fail("unknown header line '\(first)'")
                }
                continue
            }
            if first == "end" { ended = true; continue }
            guard w.count >= 3, let dt = Int64(first) else { throw fail("expected an event 'DT KIND ARGS'") }
            time += dt
            guard time >= 0 else { throw fail("time runs below zero") }
            func n(_ i: Int) throws(SchedSimScenarioError) -> UInt64 {
                guard i < w.count, let v = UInt64(w[i]) else { throw fail("event '\(w[1])': field \(i + 1) must be a number") }
                return v
            }
            func v(_ i: Int) throws(SchedSimScenarioError) -> Int32 {
                guard i < w.count, let v = Int32(w[i]), r.vcpus.contains(where: { $0.id == v }) else {
                    throw fail("event '\(w[1])' names vCPU '\(i < w.count ? w[i] : "")', which the header does not declare")
                }
                return v
            }
            let e: Event
            switch w[1] {
            case "j": e = .join(vcpu: try v(2))
            case "w": e = .wake(vcpu: try v(2))
            case "b": e = .block(vcpu: try v(2), ran: try n(3), burst: try n(4))
            case "y": e = .yield(vcpu: try v(2), ran: try n(3))
            case "s": e = .sliceEnd(vcpu: try v(2), ran: try n(3))
            case "l": e = .leave(vcpu: try v(2), ran: try n(3))
            case "p": e = .pick(pool: Int(try n(2)), pcpu: Int(try n(3)), vcpu: try v(4), slice: try n(5))
            case "i": e = .idle(pool: Int(try n(2)), pcpu: Int(try n(3)), slice: try n(4))
            case "c": e = .params(vcpu: try v(2), shares: UInt32(try n(3)), min: UInt32(try n(4)), max: UInt32(try n(5)))
            default: throw fail("unknown event kind '\(w[1])' (j w b y s l p i c)")
            }
            r.events.append((UInt64(time), e))
        }
        lineNo = 0
        guard inEvents else { throw fail("no 'events' line: the recording is cut short") }
        guard ended else { throw fail("no 'end' line: the recording is cut short (hvhost did not finish writing it)") }
        guard !r.pools.isEmpty, !r.vms.isEmpty else { throw fail("the header declares no pool or no VM") }
        return r
    }

    /// The pool named `name` (nil: the only pool, else the first with VMs).
    func poolIndex(_ name: String?) throws -> Int {
        if let name {
            guard let i = pools.firstIndex(where: { $0.name == name }) else {
                throw SchedSimError("\(self.name): no pool '\(name)' (pools: \(pools.map(\.name).joined(separator: ", ")))")
            }
            return i
        }
        return pools.indices.first { i in vms.contains { $0.pool == i } } ?? 0
    }

    /// The policy the pool ran when recording started.
    package func policy(pool: String?) throws -> String { pools[try poolIndex(pool)].policy }
}
