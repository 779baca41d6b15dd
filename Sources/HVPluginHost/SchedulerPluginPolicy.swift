import HVSched
import HVSupport
import PluginABI

/// A plugin's scheduler policy (`hv_sched_ops`) as a ``SchedulerPolicy``: one
/// `hv_sched_policy *` instance made by the plugin's `init(out, pcpu_count)` and
/// released by `deinit`. The pool calls it with its lock held ([sched]).
///
/// With a call deadline (a pool's policy) every op runs on the instance's own
/// ``DeadlineCallThread``: an op that overruns (a `pick_next` that loops or sleeps) is
/// abandoned there, answers as an idle pick / no-op, and sets ``overrun`` so the pool
/// switches to the fallback; the plugin is never called again (not even `deinit`, which
/// would race the stuck call). Without one (the simulator) ops run on the caller's thread.
final class SchedulerPluginPolicy: SchedulerPolicy {
    let name: String
    let pluginName: String
    let pluginPath: String
    /// The plugin's table as far as its struct_size goes; ops beyond it (appended after
    /// the plugin was built, e.g. `preempt`) are NULL here.
    private let ops: hv_sched_ops
    /// Declared tunables (as keys) and commands (1.2).
    let declarations: PluginDeclarations
    private var instance: OpaquePointer?
    private var released = false
    private let calls: DeadlineCallThread?
    private(set) var overrun: String?

    var origin: String { "plugin '\(pluginName)' (\(pluginPath))" }
    var isFallback: Bool { false }

    init(name: String, pluginName: String, pluginPath: String, desc: UnsafePointer<hv_sched_policy_desc>,
         declarations: PluginDeclarations = PluginDeclarations(), pcpuCount: Int, callDeadline: UInt64? = nil) throws {
        self.name = name
        self.declarations = declarations
        self.pluginName = pluginName
        self.pluginPath = pluginPath
        guard let table = desc.pointee.ops else {
            throw SchedulerPolicyError("scheduler policy '\(name)' of \(pluginPath) has no init op")
        }
        let ops = loadZeroExtended(table, structSize: UnsafeRawPointer(table).load(as: UInt32.self))
        guard let initOp = ops.`init` else {
            throw SchedulerPolicyError("scheduler policy '\(name)' of \(pluginPath) has no init op")
        }
        self.ops = ops
        calls = callDeadline.map {
            DeadlineCallThread(name: "sched-\(name)", deadline: $0,
                               context: "of scheduler policy '\(name)' (plugin '\(pluginName)', \(pluginPath))")
        }
        let made: (rc: Int32, out: OpaquePointer?)
        let make = { () -> (rc: Int32, out: OpaquePointer?) in
            var out: OpaquePointer?
            let rc = initOp(&out, UInt32(pcpuCount))
            return (rc, out)
        }
        if let calls {
            guard case .returned(let r) = calls.call("init(pcpu_count \(pcpuCount))", make) else {
                released = true
                throw SchedulerPolicyError("scheduler policy '\(name)' (plugin '\(pluginName)', \(pluginPath)): init(pcpu_count \(pcpuCount)) did not return within \(calls.deadline / 1_000_000) ms")
            }
            made = r
        } else {
            made = make()
        }
        guard made.rc >= 0 else {
            calls?.stop()
            throw SchedulerPolicyError("scheduler policy '\(name)' (plugin '\(pluginName)', \(pluginPath)): init(pcpu_count \(pcpuCount)) failed with \(errnoName(made.rc))")
        }
        instance = made.out
    }

    deinit { shutdown() }

    /// Runs one op: directly, or on the call thread under the deadline. After an overrun
    /// every op answers `otherwise` without calling the plugin.
    private func invoke<T>(_ what: @autoclosure () -> String, otherwise: T, _ body: @escaping (OpaquePointer?) -> T) -> T {
        let instance = instance
        guard let calls else { return body(instance) }
        guard overrun == nil else { return otherwise }
        switch calls.call(what(), { body(instance) }) {
        case .returned(let v):
            return v
        case .overran:
            let stuck = calls.abandonedCall ?? what()
            overrun = "did not return from \(stuck) within \(calls.deadline / 1_000_000) ms (its thread is abandoned)"
            return otherwise
        }
    }

    func addVCPU(_ vcpu: Int32, vm: Int32, params: SchedulerParams) throws {
        let ops = ops
        let abi = params.abi
        let rc = invoke("vcpu_add(\(vcpu))", otherwise: HV_EAGAIN) { inst in
            var p = abi
            return ops.vcpu_add(inst, vcpu, vm, &p)
        }
        if let overrun { throw SchedulerPolicyError("scheduler policy '\(name)' \(overrun)") }
        guard rc >= 0 else {
            throw SchedulerPolicyError("scheduler policy '\(name)' refused vCPU \(vcpu) (\(params)): vcpu_add returned \(errnoName(rc))")
        }
    }

    /// Runs an op without a result: directly, or posted to the call thread (it runs
    /// before the next waited-for op, so one hand-off serves a decision).
    private func notify(_ what: @autoclosure () -> String, _ body: @escaping (OpaquePointer?) -> Void) {
        let instance = instance
        guard let calls else { return body(instance) }
        guard overrun == nil else { return }
        if !calls.post(what(), { body(instance) }) {
            overrun = "did not return from \(calls.abandonedCall ?? what()) within \(calls.deadline / 1_000_000) ms (its thread is abandoned)"
        }
    }

    func removeVCPU(_ vcpu: Int32) {
        let ops = ops
        notify("vcpu_remove(\(vcpu))") { ops.vcpu_remove($0, vcpu) }
    }

    func wake(_ vcpu: Int32, now: UInt64) {
        let ops = ops
        notify("wake(\(vcpu))") { ops.wake($0, vcpu, now) }
    }

    func block(_ vcpu: Int32, now: UInt64) {
        let ops = ops
        notify("block(\(vcpu))") { ops.block($0, vcpu, now) }
    }

    func yield(_ vcpu: Int32, now: UInt64) {
        guard let op = ops.yield else { return }
        notify("yield(\(vcpu))") { op($0, vcpu, now) }
    }

    func pickNext(pcpu: UInt32, now: UInt64) -> SchedulerPick {
        let ops = ops
        return invoke("pick_next(pcpu \(pcpu))", otherwise: .idle) { inst in
            var pick = hv_sched_pick(struct_size: UInt32(MemoryLayout<hv_sched_pick>.size), vcpu: -1, slice_ns: 0)
            ops.pick_next(inst, pcpu, now, &pick)
            return SchedulerPick(vcpu: pick.vcpu, sliceNanoseconds: pick.slice_ns)
        }
    }

    /// The plugin's optional `preempt` op (0 when it has none, or its table predates it).
    func preempt(now: UInt64) -> UInt64 {
        guard let op = ops.preempt else { return 0 }
        return invoke("preempt", otherwise: 0) { op($0, now) }
    }

    /// The plugin's optional `set_topology` op (1.3).
    func setTopology(_ topology: PoolTopology) {
        guard let op = ops.set_topology else { return }
        let pcpus = topology.slots.map {
            hv_sched_pcpu(struct_size: UInt32(MemoryLayout<hv_sched_pcpu>.size), host_cpu: $0.hostCPU, package: $0.package,
                          core: $0.core, numa_node: $0.node, llc: $0.llc, smt_siblings: $0.smtSiblings, llc_sharers: $0.llcSharers)
        }
        _ = invoke("set_topology", otherwise: ()) { inst in
            pcpus.withUnsafeBufferPointer { buf in
                var t = hv_sched_topology(struct_size: UInt32(MemoryLayout<hv_sched_topology>.size), pcpu_count: UInt32(buf.count),
                                          pcpu_size: UInt32(MemoryLayout<hv_sched_pcpu>.size), reserved: 0, pcpus: buf.baseAddress)
                op(inst, &t)
            }
        }
    }

    /// Whether the plugin's table has a `preempt` op.
    var hasPreempt: Bool { ops.preempt != nil }

    func account(_ vcpu: Int32, ranNanoseconds: UInt64) {
        let ops = ops
        notify("account(\(vcpu))") { ops.account($0, vcpu, ranNanoseconds) }
    }

    func setParams(_ vcpu: Int32, params: SchedulerParams) throws {
        let ops = ops
        let abi = params.abi
        let rc = invoke("set_params(\(vcpu))", otherwise: HV_EAGAIN) { inst in
            var p = abi
            return ops.set_params(inst, vcpu, &p)
        }
        if let overrun { throw SchedulerPolicyError("scheduler policy '\(name)' \(overrun)") }
        guard rc >= 0 else {
            throw SchedulerPolicyError("scheduler policy '\(name)' refused \(params) for vCPU \(vcpu): set_params returned \(errnoName(rc))")
        }
    }

    func dump() -> String? {
        guard let dumpOp = ops.dump else { return nil }
        return invoke("dump", otherwise: nil) { inst in
            var buffer = [CChar](repeating: 0, count: 512)
            buffer.withUnsafeMutableBufferPointer { dumpOp(inst, $0.baseAddress, $0.count) }
            buffer[buffer.count - 1] = 0
            return String(cString: buffer)
        }
    }

    func runCommand(_ command: String, words: [String], tunable: Bool) throws -> String {
        guard let instance, !released else { throw SchedulerPolicyError("scheduler policy '\(name)' is shut down") }
        guard let c = declarations.command(named: command), c.isTunable == tunable else {
            let candidates = declarations.commands.filter { $0.isTunable == tunable }
            let close = candidates.map(\.name).min { pluginEditDistance($0, command) < pluginEditDistance($1, command) }
                .flatMap { pluginEditDistance($0, command) <= 2 ? "; did you mean '\($0)'?" : nil } ?? ""
            throw SchedulerPolicyError("scheduler policy '\(name)' has no \(tunable ? "tunable" : "command") '\(command)'\(close)" +
                                       (candidates.isEmpty ? "" : "; \(tunable ? "tunables" : "commands"): " + candidates.map(\.signature).joined(separator: ", ")))
        }
        if tunable, let key = declarations.key(named: command), words.count == 1, let problem = key.problem(with: words[0]) {
            throw SchedulerPolicyError("\(command) = \(words[0]): \(problem), expected \(key.expected)")
        }
        let output = c.call(instance: instance, with: try c.parse(words))
        if tunable, let r = output.result.flatMap(Int32.init), r < 0 {
            let help = declarations.key(named: command)?.help.map { " (\($0))" } ?? ""
            throw SchedulerPolicyError("scheduler policy '\(name)' refused \(command) = \(words[0]): \(errnoName(r))\(help)")
        }
        return tunable ? "\(command) = \(words[0])" : output.rendered
    }

    var commandListing: String {
        var lines: [String] = []
        for c in declarations.commands {
            if c.isTunable, let k = declarations.key(named: c.name) {
                lines.append("tunable \(c.name) (\(k.typeText)\(k.defaultValue.map { ", default \($0)" } ?? ""))\(k.help.map { ": \($0)" } ?? "")")
            } else {
                lines.append("command \(c.signature)\(c.help.map { ": \($0)" } ?? "")")
            }
        }
        return lines.joined(separator: "\n")
    }

    func shutdown() {
        guard !released else { return }
        released = true
        let ops = ops
        invoke("deinit", otherwise: ()) { ops.deinit($0) }
        instance = nil
        calls?.stop()
    }
}

extension SchedulerPolicySource {
    /// A plugin's policy: each instance is the plugin's `init` through ``SchedulerPluginPolicy``.
    static func plugin(name: String, pluginName: String, pluginPath: String,
                              desc: UnsafePointer<hv_sched_policy_desc>,
                              declarations: PluginDeclarations = PluginDeclarations()) -> SchedulerPolicySource {
        SchedulerPolicySource(name: name, plugin: (name: pluginName, path: pluginPath)) { pcpuCount, deadline in
            try SchedulerPluginPolicy(name: name, pluginName: pluginName, pluginPath: pluginPath, desc: desc,
                                      declarations: declarations, pcpuCount: pcpuCount, callDeadline: deadline)
        }
    }
}

extension PluginCatalog {
    /// The scheduler policy `name` offered by a loaded plugin, as a pool or the simulator
    /// instantiates it (the resolver ``Scheduler`` takes).
    package func schedulerPolicySource(named name: String) throws -> SchedulerPolicySource {
        let hit = try schedPolicyInfo(named: name)
        return .plugin(name: hit.policy.name, pluginName: hit.plugin.name, pluginPath: hit.plugin.path,
                       desc: hit.policy.pointer, declarations: hit.policy.declarations)
    }
}

extension SchedulerParams {
    /// The ABI struct.
    var abi: hv_sched_params {
        hv_sched_params(struct_size: UInt32(MemoryLayout<hv_sched_params>.size), shares: shares,
                        min_pct: minPercent, max_pct: maxPercent, htsharing: htSharing.rawValue,
                        affinity: affinity)
    }
}

/// "HV_EINVAL (-22)" for a plugin result.
func errnoName(_ rc: Int32) -> String {
    let names: [Int32: String] = [
        HV_EPERM: "HV_EPERM", HV_ENOENT: "HV_ENOENT", HV_EIO: "HV_EIO", HV_EAGAIN: "HV_EAGAIN",
        HV_ENOMEM: "HV_ENOMEM", HV_EFAULT: "HV_EFAULT", HV_EBUSY: "HV_EBUSY", HV_EEXIST: "HV_EEXIST",
        HV_EINVAL: "HV_EINVAL", HV_ENOSPC: "HV_ENOSPC", HV_ERANGE: "HV_ERANGE", HV_ENOSYS: "HV_ENOSYS",
        HV_ENOTSUP: "HV_ENOTSUP",
    ]
    return names[rc].map { "\($0) (\(rc))" } ?? "\(rc)"
}

extension LoadedPlugin {
    /// How to instantiate one of this plugin's scheduler policies (`hvhost plugin-check`).
    package func schedulerPolicySource(_ policy: SchedPolicy) -> SchedulerPolicySource {
        .plugin(name: policy.name, pluginName: name, pluginPath: path, desc: policy.pointer,
                declarations: policy.declarations)
    }
}
