import PluginABI

/// A plugin's scheduler policy (`hv_sched_ops`) as a ``SchedulerPolicy``: one
/// `hv_sched_policy *` instance made by the plugin's `init(out, pcpu_count)` and
/// released by `deinit`. The pool calls it with its lock held ([sched]).
final class SchedulerPluginPolicy: SchedulerPolicy {
    let name: String
    let pluginName: String
    let pluginPath: String
    private let ops: UnsafePointer<hv_sched_ops>
    private var instance: OpaquePointer?
    private var released = false

    var origin: String { "plugin '\(pluginName)' (\(pluginPath))" }
    var isFallback: Bool { false }

    init(name: String, pluginName: String, pluginPath: String, desc: UnsafePointer<hv_sched_policy_desc>,
         pcpuCount: Int) throws {
        self.name = name
        self.pluginName = pluginName
        self.pluginPath = pluginPath
        guard let ops = desc.pointee.ops, let initOp = ops.pointee.`init` else {
            throw SchedulerPolicyError("scheduler policy '\(name)' of \(pluginPath) has no init op")
        }
        self.ops = ops
        var out: OpaquePointer?
        let rc = initOp(&out, UInt32(pcpuCount))
        guard rc >= 0 else {
            throw SchedulerPolicyError("scheduler policy '\(name)' (plugin '\(pluginName)', \(pluginPath)): init(pcpu_count \(pcpuCount)) failed with \(errnoName(rc))")
        }
        instance = out
    }

    deinit { shutdown() }

    func addVCPU(_ vcpu: Int32, vm: Int32, params: SchedulerParams) throws {
        var p = params.abi
        let rc = ops.pointee.vcpu_add(instance, vcpu, vm, &p)
        guard rc >= 0 else {
            throw SchedulerPolicyError("scheduler policy '\(name)' refused vCPU \(vcpu) (\(params)): vcpu_add returned \(errnoName(rc))")
        }
    }

    func removeVCPU(_ vcpu: Int32) { ops.pointee.vcpu_remove(instance, vcpu) }
    func wake(_ vcpu: Int32, now: UInt64) { ops.pointee.wake(instance, vcpu, now) }
    func block(_ vcpu: Int32, now: UInt64) { ops.pointee.block(instance, vcpu, now) }
    func yield(_ vcpu: Int32, now: UInt64) { ops.pointee.yield?(instance, vcpu, now) }

    func pickNext(pcpu: UInt32, now: UInt64) -> SchedulerPick {
        var pick = hv_sched_pick(struct_size: UInt32(MemoryLayout<hv_sched_pick>.size), vcpu: -1, slice_ns: 0)
        ops.pointee.pick_next(instance, pcpu, now, &pick)
        return SchedulerPick(vcpu: pick.vcpu, sliceNanoseconds: pick.slice_ns)
    }

    func account(_ vcpu: Int32, ranNanoseconds: UInt64) { ops.pointee.account(instance, vcpu, ranNanoseconds) }

    func setParams(_ vcpu: Int32, params: SchedulerParams) throws {
        var p = params.abi
        let rc = ops.pointee.set_params(instance, vcpu, &p)
        guard rc >= 0 else {
            throw SchedulerPolicyError("scheduler policy '\(name)' refused \(params) for vCPU \(vcpu): set_params returned \(errnoName(rc))")
        }
    }

    func dump() -> String? {
        guard let dumpOp = ops.pointee.dump else { return nil }
        var buffer = [CChar](repeating: 0, count: 512)
        buffer.withUnsafeMutableBufferPointer { dumpOp(instance, $0.baseAddress, $0.count) }
        buffer[buffer.count - 1] = 0
        return String(cString: buffer)
    }

    func shutdown() {
        guard !released else { return }
        released = true
        ops.pointee.deinit(instance)
        instance = nil
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
