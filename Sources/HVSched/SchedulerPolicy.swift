/// Per-vCPU scheduling parameters as a pool hands them to its policy
/// (`hv_sched_params` for a plugin): shares, reservation and limit in percent of one pCPU, the
/// hyperthread-sharing mode and the pool-local pCPU affinity mask (0 = any).
package struct SchedulerParams: Equatable, Sendable, CustomStringConvertible {
    package var shares: UInt32
    package var minPercent: UInt32
    package var maxPercent: UInt32
    package var htSharing: HTSharing
    /// Bit i = the pool's pCPU slot i is allowed; 0 = any.
    package var affinity: UInt64

    package init(shares: UInt32 = 1000, minPercent: UInt32 = 0, maxPercent: UInt32 = 100,
                htSharing: HTSharing = .any, affinity: UInt64 = 0) {
        self.shares = shares
        self.minPercent = minPercent
        self.maxPercent = maxPercent
        self.htSharing = htSharing
        self.affinity = affinity
    }

    /// Whether the vCPU may run on pool-local pCPU `pcpu`.
    package func allows(pcpu: Int) -> Bool {
        affinity == 0 || (pcpu < 64 && affinity & (1 << UInt64(pcpu)) != 0)
    }

    package var description: String {
        "shares=\(shares) min=\(minPercent)% max=\(maxPercent)%" +
            (affinity == 0 ? "" : " affinity=0x\(String(affinity, radix: 16))") +
            (htSharing == .any ? "" : " htsharing=\(htSharing)")
    }
}

/// What a policy's `pick_next` answered: a vCPU id (or -1 to leave the pCPU idle) and
/// how long before the host asks again.
package struct SchedulerPick: Equatable, Sendable {
    package var vcpu: Int32
    package var sliceNanoseconds: UInt64

    package init(vcpu: Int32, sliceNanoseconds: UInt64) {
        self.vcpu = vcpu
        self.sliceNanoseconds = sliceNanoseconds
    }

    package static let idle = SchedulerPick(vcpu: -1, sliceNanoseconds: 0)
}

/// A scheduling policy instance for one pool, Swift side of `hv_sched_ops`.
///
/// **Contract** (the same for plugin policies, through the plugin host's adapter, and the
/// built-in ``FallbackPolicy``). Every call is made with the pool lock held and must not
/// block; a pool runs a plugin's calls on the policy's own thread under a deadline
/// (``SchedulerConfiguration/policyCallDeadlineNanoseconds``) and replaces a policy whose
/// call overran by the fallback, as for an invalid pick. vCPU ids are host-assigned and unique in the host; `vm` groups the sibling
/// vCPUs of one VM.
/// - `addVCPU` is followed at once by `wake` (a vCPU joins a pool when its thread starts:
///   the BSP at power-on, an AP at its first STARTUP IPI). `wake` of a runnable vCPU and
///   `block` of a blocked one do not happen.
/// - `pickNext(pcpu:)` chooses what runs on pool-local pCPU `pcpu`. The vCPU it returns
///   runs there (and nowhere else) until the host next calls `pickNext` for that pCPU
///   or calls `block`/`yield`/`removeVCPU` for that vCPU. Before re-asking for a pCPU
///   whose vCPU's slice ended, the host calls `account(vcpu, ranNs)` with the CPU time
///   the vCPU's thread used (a per-thread CPU clock); on HLT it calls `account` then
///   `block`; on yield `account` then `yield`. The previous vCPU stays runnable and is a
///   candidate for the new pick.
/// - An idle pick (-1) with a non-zero slice asks the host to ask again after it; with a
///   zero slice the host asks again on the next wake, or after 10 ms when runnable
///   vCPUs are waiting.
/// - A pick must name a vCPU of this pool that is runnable, not running on another
///   pCPU and allowed on `pcpu` by its affinity, with a slice in
///   ``SchedulerPool/validSlices``; anything else, or leaving a runnable vCPU without a
///   slot past the watchdog, makes the pool replace the policy by the fallback.
/// - `preempt(now:)` is asked once after every `wake` (also `addVCPU` + `wake`), before
///   any slot is decided: bit i of the result asks the pool to stop the vCPU running on
///   slot i now, as at a slice end (`account`, then `pickNext` for that slot). Bits for
///   idle slots, slots already being preempted and slots beyond the pool are ignored.
///   The default (and a plugin without the op) returns 0: never preempt.
package protocol SchedulerPolicy: AnyObject {
    /// The name a pool config selects ("propshare", "fallback").
    var name: String { get }
    /// Where it came from, for logs: "plugin 'X' (/path/libx.so)" or "built in".
    var origin: String { get }
    /// Whether this is the host's own fallback (the watchdog never replaces it).
    var isFallback: Bool { get }

    func addVCPU(_ vcpu: Int32, vm: Int32, params: SchedulerParams) throws
    func removeVCPU(_ vcpu: Int32)
    func wake(_ vcpu: Int32, now: UInt64)
    func block(_ vcpu: Int32, now: UInt64)
    func yield(_ vcpu: Int32, now: UInt64)
    func pickNext(pcpu: UInt32, now: UInt64) -> SchedulerPick
    func account(_ vcpu: Int32, ranNanoseconds: UInt64)
    func setParams(_ vcpu: Int32, params: SchedulerParams) throws
    /// Slots (bit i = pool-local slot i) whose running vCPU should be preempted now;
    /// asked after every wake. 0 = none (the default).
    func preempt(now: UInt64) -> UInt64
    /// Where the pool's slots sit on the host; called once on a fresh instance before the
    /// first `addVCPU` (`set_topology`). The default ignores it.
    func setTopology(_ topology: PoolTopology)
    /// A one-line summary of the policy's state, when it offers one.
    func dump() -> String?
    /// The policy's `deinit`; no call follows.
    func shutdown()
    /// Runs the policy's command `name` with the operator's words (`sched cmd`), or, with
    /// `tunable`, sets the tunable `name` to the one word given (`sched tune`). Called with
    /// the pool lock held. Throws, without calling the policy, for an unknown name or
    /// words that do not fit the declaration; returns what the command printed.
    func runCommand(_ name: String, words: [String], tunable: Bool) throws -> String
    /// The policy's tunables and commands, one per line ("" when it declares none).
    var commandListing: String { get }
    /// Set when a call ran past the policy's call deadline (its thread was abandoned, the
    /// call's result replaced by an idle pick / no-op): what it did, for the pool's log.
    var overrun: String? { get }
}

extension SchedulerPolicy {
    /// Never preempts on wake.
    package func preempt(now: UInt64) -> UInt64 { 0 }

    package func setTopology(_ topology: PoolTopology) {}

    /// A policy without declared commands refuses every name.
    package func runCommand(_ name: String, words: [String], tunable: Bool) throws -> String {
        throw SchedulerPolicyError("scheduler policy '\(self.name)' (\(origin)) declares no \(tunable ? "tunables" : "commands")")
    }

    package var commandListing: String { "" }
    /// Policies called on the pool's own thread never overrun.
    package var overrun: String? { nil }
}

/// A policy refused an operation (a negative errno from a plugin op).
package struct SchedulerPolicyError: Error, CustomStringConvertible, Sendable {
    let message: String
    package init(_ message: String) { self.message = message }
    package var description: String { message }
}

/// How to make a policy instance for a pool: the built-in fallback, or a policy made
/// elsewhere (a plugin's, which the plugin host wraps as a ``SchedulerPolicy``).
package struct SchedulerPolicySource: @unchecked Sendable, CustomStringConvertible {
    package let name: String
    /// The plugin offering the policy (its name and library path); nil for the built-in fallback.
    package let plugin: (name: String, path: String)?
    private let make: (_ pcpuCount: Int, _ callDeadline: UInt64?) throws -> SchedulerPolicy

    static let fallback = SchedulerPolicySource(name: FallbackPolicy.policyName, plugin: nil) { _, _ in
        FallbackPolicy()
    }

    /// `make` creates an instance for a pool of `pcpuCount` slots (a plugin's `init`);
    /// with a `callDeadline` (ns) every call into it runs under that deadline.
    package init(name: String, plugin: (name: String, path: String)?,
                make: @escaping (_ pcpuCount: Int, _ callDeadline: UInt64?) throws -> SchedulerPolicy) {
        self.name = name
        self.plugin = plugin
        self.make = make
    }

    /// Makes an instance for a pool of `pcpuCount` slots. A pool passes its
    /// `callDeadline`: a plugin call running longer is abandoned (``SchedulerPolicy/overrun``);
    /// without one (the simulator) calls are made directly on the caller's thread.
    package func instantiate(pcpuCount: Int, callDeadline: UInt64? = nil) throws -> SchedulerPolicy {
        try make(pcpuCount, callDeadline)
    }

    package var description: String {
        plugin.map { "'\(name)' (plugin '\($0.name)', \($0.path))" } ?? "'\(name)' (built in)"
    }
}
