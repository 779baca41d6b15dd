import Logging
import PluginABI

/// Two plugins offering the same device-model or policy name: the first in search
/// order is used, the other is reported.
package struct PluginConflict: Equatable, Sendable, CustomStringConvertible {
    package enum Kind: String, Sendable {
        case deviceModel = "device model"
        case schedPolicy = "scheduler policy"
        case teamingPolicy = "teaming policy"

        /// "device models", "scheduler policies", "teaming policies".
        var plural: String {
            switch self {
            case .deviceModel: "device models"
            case .schedPolicy: "scheduler policies"
            case .teamingPolicy: "teaming policies"
            }
        }
    }

    package var kind: Kind
    package var name: String
    /// The library whose offering is used.
    var winner: String
    /// The library whose offering is ignored.
    var loser: String

    package var description: String {
        "\(loser): \(kind.rawValue) '\(name)' is also provided by \(winner), which comes first in the search path; this one is ignored"
    }
}

/// A name the catalog could not resolve, or a model of the wrong kind for the device
/// that names it. `description` lists where it looked and what failed, e.g.
/// `vm.vmx:7: ethernet0.virtualDev = "vlanse": no plugin provides device model 'vlanse';
/// searched: /a, /b; did you mean 'vlance'?; known device models: vlance, vmxnet;
/// 1 plugin failed to load: /a/libx.so: ...`.
package struct PluginCatalogError: Error, CustomStringConvertible, Sendable {
    package enum Reason: Sendable {
        /// No loaded plugin provides the name.
        case notFound(known: [String], searchPath: PluginSearchPath, failures: [PluginLoadError])
        /// The model exists but is for another kind of device (a SCSI model named by ethernetN).
        case wrongKind(pluginPath: String, modelKind: String, expectedKind: String)
    }

    package var kind: PluginConflict.Kind
    package var name: String
    package var reason: Reason
    /// Where the name came from, e.g. `vm.vmx:7: ethernet0.virtualDev = "vlanse"`; nil when
    /// looked up directly.
    var context: String?

    package var description: String {
        var s = context.map { $0 + ": " } ?? ""
        switch reason {
        case let .wrongKind(pluginPath, modelKind, expectedKind):
            s += "\(kind.rawValue) '\(name)' (from \(pluginPath)) is a \(modelKind) device, expected a \(expectedKind) device"
        case let .notFound(known, searchPath, failures):
            s += "no plugin provides \(kind.rawValue) '\(name)'; searched: "
            s += searchPath.directories.isEmpty ? "(no directories)" : searchPath.directories.joined(separator: ", ")
            if let close = known.min(by: { pluginEditDistance($0, name) < pluginEditDistance($1, name) }),
               pluginEditDistance(close, name) <= 2 {
                s += "; did you mean '\(close)'?"
            }
            s += known.isEmpty ? "; no \(kind.plural) are available" : "; known \(kind.plural): " + known.joined(separator: ", ")
            if !failures.isEmpty {
                s += "; \(failures.count) plugin\(failures.count == 1 ? "" : "s") failed to load: "
                s += failures.map(\.description).joined(separator: "; ")
            }
        }
        return s
    }
}

/// The model a configured device resolves to.
package struct DeviceModelMatch: @unchecked Sendable {
    let plugin: LoadedPlugin
    package let info: LoadedPlugin.DeviceModel
    /// The plugin's human-readable name (for logs and `hv_host` tagging).
    package var pluginName: String { plugin.name }
    var model: UnsafePointer<hv_device_model> { info.pointer }
}

/// Every plugin on a search path, loaded once: the successes indexed by what they
/// provide, and the failures and conflicts kept for reporting. A bad plugin never stops
/// the others from loading.
package final class PluginCatalog: @unchecked Sendable {
    package let searchPath: PluginSearchPath
    /// Plugins that loaded, in search order.
    package let plugins: [LoadedPlugin]
    /// Libraries that were refused, in search order.
    package let failures: [PluginLoadError]
    /// Names offered twice; the first plugin in search order wins.
    package let conflicts: [PluginConflict]
    /// Libraries in a quiet directory (the hvhost binary's own) that are not plugins.
    let skipped: [String]

    private let modelsByName: [String: (plugin: LoadedPlugin, model: LoadedPlugin.DeviceModel)]
    private let schedByName: [String: (plugin: LoadedPlugin, policy: LoadedPlugin.SchedPolicy)]
    private let teamingByName: [String: (plugin: LoadedPlugin, policy: LoadedPlugin.TeamingPolicy)]

    /// Loads every candidate of `searchPath` with `loader`.
    package convenience init(searchPath: PluginSearchPath, loader: PluginLoader = PluginLoader()) {
        self.init(searchPath: searchPath, candidates: searchPath.candidateList(), loader: loader)
    }

    /// Loads `candidates` (library paths, in priority order); `searchPath` is kept for messages.
    package convenience init(searchPath: PluginSearchPath, candidates: [String], loader: PluginLoader = PluginLoader()) {
        self.init(searchPath: searchPath,
                  candidates: candidates.map { PluginSearchPath.Candidate(path: $0, quiet: false) }, loader: loader)
    }

    /// Loads `candidates` in order; a quiet candidate that is not a plugin goes to
    /// `skipped`. `knownFailures` (libraries refused before, e.g. by a metadata child
    /// they crashed) lead the failures; `willLoad` sees each library before it is loaded.
    package init(searchPath: PluginSearchPath, candidates: [PluginSearchPath.Candidate],
                loader: PluginLoader = PluginLoader(), knownFailures: [PluginLoadError] = [],
                willLoad: ((String) -> Void)? = nil) {
        var plugins: [LoadedPlugin] = []
        var failures: [PluginLoadError] = knownFailures
        var conflicts: [PluginConflict] = []
        var byID: [String: LoadedPlugin] = [:]
        var models: [String: (plugin: LoadedPlugin, model: LoadedPlugin.DeviceModel)] = [:]
        var sched: [String: (plugin: LoadedPlugin, policy: LoadedPlugin.SchedPolicy)] = [:]
        var teaming: [String: (plugin: LoadedPlugin, policy: LoadedPlugin.TeamingPolicy)] = [:]

        var skipped: [String] = []
        for candidate in candidates {
            let path = candidate.path
            let plugin: LoadedPlugin
            willLoad?(path)
            do {
                plugin = try loader.load(path: path) { id in
                    byID[id].map { .duplicateID(id: id, firstPath: $0.path) }
                }
            } catch {
                if candidate.quiet, error.reason.isNotAPlugin {
                    skipped.append(path)
                } else {
                    failures.append(error)
                }
                continue
            }
            byID[plugin.id] = plugin
            plugins.append(plugin)
            // The first plugin to declare a name keeps it; a later one is recorded as a conflict.
            func unclaimed(_ kind: PluginConflict.Kind, _ name: String, firstBy first: LoadedPlugin?) -> Bool {
                guard let first else { return true }
                conflicts.append(PluginConflict(kind: kind, name: name, winner: first.path, loser: path))
                return false
            }
            for m in plugin.deviceModels {
                if unclaimed(.deviceModel, m.name, firstBy: models[m.name]?.plugin) { models[m.name] = (plugin, m) }
            }
            for p in plugin.schedPolicies {
                if unclaimed(.schedPolicy, p.name, firstBy: sched[p.name]?.plugin) { sched[p.name] = (plugin, p) }
            }
            for p in plugin.teamingPolicies {
                if unclaimed(.teamingPolicy, p.name, firstBy: teaming[p.name]?.plugin) { teaming[p.name] = (plugin, p) }
            }
        }
        self.searchPath = searchPath
        self.plugins = plugins
        self.failures = failures
        self.conflicts = conflicts
        self.skipped = skipped
        self.modelsByName = models
        self.schedByName = sched
        self.teamingByName = teaming
    }

    /// Loads every plugin on `searchPath` (the same as `init(searchPath:loader:)`).
    package static func load(searchPath: PluginSearchPath, loader: PluginLoader = PluginLoader()) -> PluginCatalog {
        PluginCatalog(searchPath: searchPath, loader: loader)
    }

    private func notFound(_ kind: PluginConflict.Kind, _ name: String, known: [String]) -> PluginCatalogError {
        PluginCatalogError(kind: kind, name: name,
                           reason: .notFound(known: known, searchPath: searchPath, failures: failures))
    }

    /// `table`'s entry for `name` (matched case-insensitively), or a not-found error listing
    /// the names `table` has.
    private func lookup<Hit>(_ table: [String: Hit], _ kind: PluginConflict.Kind, _ name: String)
        throws(PluginCatalogError) -> Hit
    {
        guard let hit = table[name.lowercased()] else { throw notFound(kind, name, known: table.keys.sorted()) }
        return hit
    }

    /// Device-model names available, sorted.
    var deviceModelNames: [String] { modelsByName.keys.sorted() }
    package var schedPolicyNames: [String] { schedByName.keys.sorted() }
    var teamingPolicyNames: [String] { teamingByName.keys.sorted() }

    /// The plugin and model for a `.vmx` device name (matched case-insensitively).
    package func deviceModel(named name: String) throws(PluginCatalogError)
        -> (plugin: LoadedPlugin, model: UnsafePointer<hv_device_model>)
    {
        let hit = try deviceModelInfo(named: name)
        return (hit.plugin, hit.model.pointer)
    }

    /// The model's metadata (kind, flags, description) as well as its pointer.
    func deviceModelInfo(named name: String) throws(PluginCatalogError)
        -> (plugin: LoadedPlugin, model: LoadedPlugin.DeviceModel)
    {
        try lookup(modelsByName, .deviceModel, name)
    }

    /// The model for a configured device: found by name and checked to be of the
    /// device's `kind` (`HV_DEVICE_KIND_*`, named `kindName` in messages: a NIC model for
    /// ethernetN, ...). Errors start with `context`, where the name came from (e.g.
    /// `vm.vmx:7: ethernet0.virtualDev = "vlanse"`).
    package func deviceModel(named name: String, kind: UInt32, kindName: String, context: String)
        throws(PluginCatalogError) -> DeviceModelMatch
    {
        let hit: (plugin: LoadedPlugin, model: LoadedPlugin.DeviceModel)
        do {
            hit = try deviceModelInfo(named: name)
        } catch {
            var e = error
            e.context = context
            throw e
        }
        guard hit.model.kind == kind else {
            throw PluginCatalogError(
                kind: .deviceModel, name: hit.model.name,
                reason: .wrongKind(pluginPath: hit.plugin.path, modelKind: hit.model.kindName,
                                   expectedKind: kindName),
                context: context)
        }
        return DeviceModelMatch(plugin: hit.plugin, info: hit.model)
    }

    /// The plugin and descriptor of the scheduler policy a pool config names (matched
    /// case-insensitively).
    func schedPolicy(named name: String) throws(PluginCatalogError)
        -> (plugin: LoadedPlugin, desc: UnsafePointer<hv_sched_policy_desc>)
    {
        let hit = try schedPolicyInfo(named: name)
        return (hit.plugin, hit.policy.pointer)
    }

    /// The scheduler policy's metadata (name, description) as well as its pointer.
    func schedPolicyInfo(named name: String) throws(PluginCatalogError)
        -> (plugin: LoadedPlugin, policy: LoadedPlugin.SchedPolicy)
    {
        try lookup(schedByName, .schedPolicy, name)
    }

    /// The plugin and descriptor of the NIC-teaming policy a switch config names
    /// (matched case-insensitively).
    func teamingPolicy(named name: String) throws(PluginCatalogError)
        -> (plugin: LoadedPlugin, desc: UnsafePointer<hv_teaming_policy_desc>)
    {
        let hit = try teamingPolicyInfo(named: name)
        return (hit.plugin, hit.policy.pointer)
    }

    /// The teaming policy's metadata (name, description) as well as its pointer.
    func teamingPolicyInfo(named name: String) throws(PluginCatalogError)
        -> (plugin: LoadedPlugin, policy: LoadedPlugin.TeamingPolicy)
    {
        try lookup(teamingByName, .teamingPolicy, name)
    }
}

/// Levenshtein distance, for "did you mean" hints on short names.
func pluginEditDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a.utf8), b = Array(b.utf8)
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var prev = Array(0...b.count)
    var cur = [Int](repeating: 0, count: b.count + 1)
    for i in 1...a.count {
        cur[0] = i
        for j in 1...b.count {
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        swap(&prev, &cur)
    }
    return prev[b.count]
}
