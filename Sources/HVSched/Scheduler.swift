import Glibc
import HVSupport
import Logging
import Synchronization

/// A VM as the scheduler knows it: its pool, host-assigned VM id and the parameters
/// every one of its vCPUs joins with (updated by `sched set`).
package final class SchedulerVM: @unchecked Sendable {
    package let id: Int32
    package let name: String
    package let vcpuCount: Int
    package let pool: SchedulerPool
    /// [scheduler lock] Per-vCPU parameters (shares already divided among the vCPUs).
    internal(set) package var params: SchedulerParams
    /// [scheduler lock] The VM-level share setting (for `sched stats`).
    var shares: ShareAllocation

    package init(id: Int32, name: String, vcpuCount: Int, pool: SchedulerPool, params: SchedulerParams, shares: ShareAllocation) {
        self.id = id
        self.name = name
        self.vcpuCount = vcpuCount
        self.pool = pool
        self.params = params
        self.shares = shares
    }
}

/// What the scheduler needs to know about a VM that powers on. The VM assembly fills it
/// from the configuration (`displayName`, `numvcpus`, `hv.sched.pool`, `sched.cpu.*`).
package struct SchedulerVMRequest: Equatable, Sendable {
    package var name: String
    package var vcpuCount: Int
    /// The pool the VM's vCPUs join.
    var poolName: String
    /// The VM-level controls; shares are divided among the vCPUs.
    package var cpu: CPUSchedulingParameters

    package init(name: String, vcpuCount: Int, poolName: String = SchedulerConfiguration.defaultPoolName,
                cpu: CPUSchedulingParameters = CPUSchedulingParameters()) {
        self.name = name
        self.vcpuCount = vcpuCount
        self.poolName = poolName
        self.cpu = cpu
    }
}

/// A VM the scheduler cannot take, with the request setting at fault (so the caller can
/// name the configuration key that set it).
package struct SchedulerRegistrationError: Error, CustomStringConvertible, Sendable {
    package enum Setting: Sendable {
        /// `poolName`: no such pool.
        case pool
        /// `cpu.affinity`: no slot of the pool is allowed.
        case affinity
        /// `cpu.minPercent`: the pool cannot reserve it.
        case minimum
    }

    package let setting: Setting
    package let message: String

    init(setting: Setting, message: String) {
        self.setting = setting
        self.message = message
    }

    package var description: String { message }
}

/// The host's CPU scheduler: its pCPU slots, grouped in pools, each run by a policy
/// (a plugin's or the built-in fallback), and the VMs registered with them.
package final class Scheduler: @unchecked Sendable {
    /// Finds a plugin policy by name (the catalog's `schedPolicy(named:)`).
    package typealias PolicyResolver = (String) throws -> SchedulerPolicySource

    package let configuration: SchedulerConfiguration
    package let pools: [SchedulerPool]
    package let logger: Logger
    private let resolver: PolicyResolver
    private let lock = HostLock()
    private var vms: [Int32: SchedulerVM] = [:]
    private let nextVMID = Atomic<Int32>(1)
    private let nextVCPUID = Atomic<Int32>(0)
    private var started = false
    private let clock: SchedulerClock
    private var recorder: SchedulerRecorder?

    package init(configuration: SchedulerConfiguration = .standard(),
                resolvePolicy: @escaping PolicyResolver = { name in
                    throw SchedulerPolicyError("no scheduler policy '\(name)': no plugins are loaded")
                },
                clock: SchedulerClock = MonotonicSchedulerClock(), logger: Logger) throws {
        self.configuration = configuration
        self.resolver = resolvePolicy
        self.logger = logger
        self.clock = clock
        var pools: [SchedulerPool] = []
        // Only pinned slots have a place on the host.
        let pinned = configuration.slots.contains { $0.hostCPU != nil }
        let host = configuration.hostTopology ?? (pinned ? try? HostTopology.read() : nil)
        for spec in configuration.pools {
            let source = try Scheduler.source(named: spec.policy, resolver: resolvePolicy)
            let policy = try source.instantiate(pcpuCount: spec.slots.count,
                                                callDeadline: configuration.policyCallDeadlineNanoseconds)
            let slots = spec.slots.enumerated().map { local, index in
                PCPUSlot(index: index, localIndex: local, hostCPU: configuration.slots[index].hostCPU)
            }
            pools.append(SchedulerPool(name: spec.name, slots: slots, policy: policy, clock: clock,
                                       watchdogNanoseconds: configuration.watchdogNanoseconds,
                                       policyCallDeadline: configuration.policyCallDeadlineNanoseconds,
                                       hostTopology: host, logger: logger))
        }
        self.pools = pools
    }

    deinit { stop() }

    private static func source(named name: String?, resolver: PolicyResolver) throws -> SchedulerPolicySource {
        guard let name, !["fallback", "builtin", "built-in"].contains(name.lowercased()) else { return .fallback }
        return try resolver(name)
    }

    /// Starts every pool's timer thread (also done by the first ``register(_:)``).
    package func start() {
        let first: Bool = lock.withLock {
            defer { started = true }
            return !started
        }
        if first { for p in pools { p.start() } }
    }

    package func stop() {
        for p in pools { p.stop() }
        lock.withLock { started = false }
    }

    package func pool(named name: String) -> SchedulerPool? { pools.first { $0.name == name } }

    // MARK: Recording

    /// Records every pool's scheduling events to `path` from now on (`--sched-record`).
    package func startRecording(to path: String) throws {
        let r = try SchedulerRecorder(path: path, pcpus: configuration.slots.count, start: clock.now())
        for (i, p) in pools.enumerated() { p.attach(r, index: i) }
        lock.withLock { recorder = r }
    }

    /// Writes the recording out (after every VM has stopped); nil without one.
    package func finishRecording() throws {
        guard let r = lock.withLock({ recorder }) else { return }
        try r.finish()
    }

    var poolNames: [String] { pools.map(\.name) }

    /// A fresh host-unique vCPU id.
    package func makeVCPUID() -> Int32 { nextVCPUID.wrappingAdd(1, ordering: .relaxed).oldValue }

    // MARK: VMs

    /// Registers a VM about to power on: finds its pool, turns its CPU controls into
    /// per-vCPU parameters and reserves its minimum (admission control). Errors say which
    /// of the request's settings is at fault.
    package func register(_ request: SchedulerVMRequest) throws(SchedulerRegistrationError) -> SchedulerVM {
        guard let pool = pool(named: request.poolName) else {
            throw SchedulerRegistrationError(setting: .pool, message: "no scheduler pool '\(request.poolName)' on this host; pools: \(poolNames.joined(separator: ", ")) (see hvhost run --pool)")
        }
        var mask: UInt64 = 0
        if case .cpus(let cpus) = request.cpu.affinity {
            for s in pool.slots where cpus.contains(s.index) { mask |= 1 << UInt64(s.localIndex) }
            guard mask != 0 else {
                throw SchedulerRegistrationError(setting: .affinity, message: "none of these pCPU slots is in pool '\(pool.name)' (slots \(pool.slots.map { String($0.index) }.joined(separator: ",")))")
            }
        }
        let cpu = request.cpu
        let params = SchedulerParams(shares: cpu.sharesPerVCPU(vcpus: request.vcpuCount), minPercent: UInt32(cpu.minPercent),
                                     maxPercent: UInt32(cpu.maxPercent), htSharing: cpu.htSharing, affinity: mask)
        let id = nextVMID.wrappingAdd(1, ordering: .relaxed).oldValue
        do {
            try pool.reserve(vm: id, percent: params.minPercent * UInt32(request.vcpuCount), vmName: request.name)
        } catch {
            throw SchedulerRegistrationError(setting: .minimum, message: "\(error)")
        }
        let vm = SchedulerVM(id: id, name: request.name, vcpuCount: request.vcpuCount, pool: pool,
                             params: params, shares: cpu.shares)
        lock.withLock { vms[id] = vm }
        start()
        return vm
    }

    /// Forgets a VM that stopped (its vCPUs have left their pool) and frees its reservation.
    package func unregister(_ vm: SchedulerVM) {
        vm.pool.unreserve(vm: vm.id)
        vm.pool.wakeLatency.forget(vm: vm.id)
        lock.withLock { _ = vms.removeValue(forKey: vm.id) }
    }

    /// The per-vCPU parameters a VM's vCPU joins with now.
    package func params(of vm: SchedulerVM) -> SchedulerParams { lock.withLock { vm.params } }

    var registeredVMs: [SchedulerVM] { lock.withLock { vms.values.sorted { $0.id < $1.id } } }

    package func vm(named name: String) -> SchedulerVM? { registeredVMs.first { $0.name == name } }

    /// `sched set`: changes a VM's shares, min and/or max while it runs (`set_params`
    /// for each of its vCPUs); returns the new per-vCPU parameters.
    @discardableResult
    package func setParameters(vm name: String, shares: ShareAllocation? = nil, minPercent: Int? = nil,
                              maxPercent: Int? = nil) throws -> SchedulerParams {
        guard let vm = vm(named: name) else {
            throw SchedulerPolicyError("no VM named '\(name)' (running: \(registeredVMs.map(\.name).joined(separator: ", ")))")
        }
        var p = params(of: vm)
        let oldShares = lock.withLock { vm.shares }
        if let shares {
            p.shares = CPUSchedulingParameters(shares: shares).sharesPerVCPU(vcpus: vm.vcpuCount)
        }
        if let minPercent {
            guard (0...100).contains(minPercent) else { throw SchedulerPolicyError("min=\(minPercent): expected 0...100 (percent of one pCPU per vCPU)") }
            p.minPercent = UInt32(minPercent)
        }
        if let maxPercent {
            guard (1...100).contains(maxPercent) else { throw SchedulerPolicyError("max=\(maxPercent): expected 1...100 (percent of one pCPU per vCPU)") }
            p.maxPercent = UInt32(maxPercent)
        }
        guard p.minPercent <= p.maxPercent else {
            throw SchedulerPolicyError("min \(p.minPercent)% is above max \(p.maxPercent)%")
        }
        let old = params(of: vm)
        if p.minPercent != old.minPercent {
            try vm.pool.reserve(vm: vm.id, percent: p.minPercent * UInt32(vm.vcpuCount), vmName: vm.name)
        }
        let members = vm.pool.allMembers.filter { $0.vmID == vm.id }
        var done: [PoolMember] = []
        do {
            for m in members {
                try vm.pool.setParams(m, p)
                done.append(m)
            }
        } catch {
            // Put back what was changed.
            for m in done { try? vm.pool.setParams(m, old) }
            try? vm.pool.reserve(vm: vm.id, percent: old.minPercent * UInt32(vm.vcpuCount), vmName: vm.name)
            throw error
        }
        lock.withLock {
            vm.params = p
            vm.shares = shares ?? oldShares
        }
        logger.info("\(name): scheduling parameters now \(p) per vCPU")
        return p
    }

    // MARK: Policies

    /// `sched policy <pool> <policy>`: swaps a pool's policy while its VMs run.
    package func replacePolicy(pool name: String, with policy: String) throws {
        guard let pool = pool(named: name) else {
            throw SchedulerPolicyError("no scheduler pool '\(name)'; pools: \(poolNames.joined(separator: ", "))")
        }
        try pool.replacePolicy(with: Scheduler.source(named: policy, resolver: resolver))
    }

    /// `sched tune <pool> <key> <value>` and `sched cmd <pool> <command> <args…>`.
    package func policyCommand(pool name: String, _ command: String, words: [String], tunable: Bool) throws -> String {
        guard let pool = pool(named: name) else {
            throw SchedulerPolicyError("no scheduler pool '\(name)'; pools: \(poolNames.joined(separator: ", "))")
        }
        return try pool.runPolicyCommand(command, words: words, tunable: tunable)
    }

    package func snapshots() -> [PoolSnapshot] { pools.map { $0.snapshot() } }
}
