import Glibc
import HVSupport
import Logging
import PluginABI
import Synchronization

/// A plugin library that loaded and passed validation. Its handle stays open for the
/// process lifetime unless `unload()` is called; the C pointers it exposes are valid
/// until then.
package final class LoadedPlugin: @unchecked Sendable, CustomStringConvertible {
    /// A device model from the plugin's `hv.device/1` factory.
    package struct DeviceModel: @unchecked Sendable {
        /// The `.vmx` name (`ethernet0.virtualDev = "vlance"`).
        package let name: String
        /// HV_DEVICE_KIND_*.
        package let kind: UInt32
        package let description: String?
        let flags: UInt32
        package let stateVersion: UInt32
        let pointer: UnsafePointer<hv_device_model>
        /// Declared keys and commands (1.2); empty when the model declares none.
        package let declarations: PluginDeclarations
        package var isThreadSafe: Bool { flags & HV_DEVICE_THREAD_SAFE != 0 }

        /// "nic", "scsi", "display" or "other".
        package var kindName: String { LoadedPlugin.kindName(kind) }
    }

    /// A scheduler policy from the plugin's `hv.sched-policy/1` factory.
    package struct SchedPolicy: @unchecked Sendable {
        /// The name a pool config selects.
        package let name: String
        let description: String?
        let pointer: UnsafePointer<hv_sched_policy_desc>
        /// Declared tunables (as keys) and commands (1.2); empty when it declares none.
        package let declarations: PluginDeclarations

        /// The policy's ops (validated non-NULL, with every mandatory op present).
        var ops: UnsafePointer<hv_sched_ops> { pointer.pointee.ops }
    }

    /// A NIC-teaming policy from the plugin's `hv.teaming-policy/1` factory.
    package struct TeamingPolicy: @unchecked Sendable {
        /// The name a switch config selects.
        package let name: String
        let description: String?
        let pointer: UnsafePointer<hv_teaming_policy_desc>

        /// The policy's ops (validated non-NULL, with every mandatory op present).
        var ops: UnsafePointer<hv_teaming_ops> { pointer.pointee.ops }
    }

    /// The library path as found on the search path.
    package let path: String
    /// `realpath` of `path`.
    let realPath: String
    package let id: String
    package let name: String
    package let version: String
    let vendor: String?
    /// `(major << 16) | minor` as the plugin declares it.
    let abiVersion: UInt32
    /// Every id in `factory_ids`, in the plugin's order.
    package let factoryIDs: [String]
    package let deviceModels: [DeviceModel]
    /// Every policy of the plugin's `hv.sched-policy/1` factory, in the plugin's order.
    package let schedPolicies: [SchedPolicy]
    /// Every policy of the plugin's `hv.teaming-policy/1` factory, in the plugin's order.
    package let teamingPolicies: [TeamingPolicy]
    package let entry: UnsafePointer<hv_plugin_entry>

    private let handle: UnsafeMutableRawPointer
    private let loaded = Mutex(true)

    var abiMajor: UInt32 { abiVersion >> 16 }
    var abiMinor: UInt32 { abiVersion & 0xFFFF }
    /// "1.0".
    package var abiString: String { "\(abiMajor).\(abiMinor)" }

    /// Factory ids this host does not know (listed, not used).
    var unknownFactoryIDs: [String] { factoryIDs.filter { !PluginLoader.knownFactoryIDs.contains($0) } }

    /// Whether `unload()` has not run yet.
    var isLoaded: Bool { loaded.withLock { $0 } }

    init(path: String, realPath: String, handle: UnsafeMutableRawPointer, entry: UnsafePointer<hv_plugin_entry>,
         id: String, name: String, version: String, vendor: String?, factoryIDs: [String],
         deviceModels: [DeviceModel], schedPolicies: [SchedPolicy], teamingPolicies: [TeamingPolicy]) {
        self.path = path
        self.realPath = realPath
        self.handle = handle
        self.entry = entry
        self.id = id
        self.name = name
        self.version = version
        self.vendor = vendor
        self.abiVersion = entry.pointee.abi_version
        self.factoryIDs = factoryIDs
        self.deviceModels = deviceModels
        self.schedPolicies = schedPolicies
        self.teamingPolicies = teamingPolicies
    }

    /// Calls the plugin's `deinit()` (if any) and `dlclose`s the library. The caller
    /// guarantees that every instance, policy and pointer obtained from it is gone.
    /// A second call does nothing.
    func unload() {
        let wasLoaded = loaded.withLock { state in
            defer { state = false }
            return state
        }
        guard wasLoaded else { return }
        if let fini = entry.pointee.deinit { fini() }
        dlclose(handle)
    }

    package var description: String { "\(id) \(version) (\(path))" }

    static func kindName(_ kind: UInt32) -> String {
        switch kind {
        case HV_DEVICE_KIND_NIC: "nic"
        case HV_DEVICE_KIND_SCSI: "scsi"
        case HV_DEVICE_KIND_DISPLAY: "display"
        case HV_DEVICE_KIND_OTHER: "other"
        default: "kind \(kind)"
        }
    }
}

/// Opens plugin libraries and validates everything they declare before the host uses
/// any of it.
///
/// Order, following `hvplugin.h`: the file's place (``PluginLocation``), a look at its
/// dynamic symbol table (a library without `hv_plugin_entry_v1`, or that does not parse,
/// is refused without being loaded), `dlopen(RTLD_NOW |
/// RTLD_LOCAL)`, `dlsym` of
/// `hv_plugin_entry_v1`, call it, validate the descriptor (size, ABI major, id/name/
/// version strings, `get_factory`, `factory_ids`), call `init()` ("after validation,
/// before get_factory()"), then fetch every listed factory and validate the known ones.
/// If a factory fails validation after a successful `init()`, `deinit()` is called
/// before the library is closed.
package struct PluginLoader: Sendable {
    static let knownFactoryIDs: Set<String> = [HV_FACTORY_DEVICE, HV_FACTORY_SCHED_POLICY, HV_FACTORY_TEAMING]

    /// Sizes of the v1.0 structs: the least this host reads. A field appended in a later
    /// minor version is read only when the plugin's `struct_size` covers it.
    enum MinimumSize {
        static let entry = 72
        static let deviceFactory = 24
        static let deviceModel = 48
        static let deviceOps = 64
        static let schedFactory = 24
        static let schedPolicyDesc = 32
        static let schedOps = 96
        static let teamingFactory = 24
        static let teamingPolicyDesc = 32
        static let teamingOps = 64
    }

    /// Most device models one factory may declare.
    static let maximumModels = 64
    /// Most policies one scheduler or teaming factory may declare.
    static let maximumPolicies = 64
    /// Longest id/name/version string accepted (bytes).
    static let maximumStringLength = 256
    /// Most ids `factory_ids` may list before its NULL.
    static let maximumFactoryIDs = 64

    private let logger: Logger

    package init(logger: Logger = Logger(label: "hv.plugins")) {
        self.logger = logger
    }

    /// Loads and validates the library at `path`. `admit` sees the plugin's id once the
    /// descriptor is valid, before `init()` runs, and may refuse it (the catalog uses it
    /// to reject a second plugin with an id already loaded).
    package func load(path: String,
                     admit: (_ id: String) -> PluginLoadError.Reason? = { _ in nil }) throws(PluginLoadError)
        -> LoadedPlugin
    {
        func fail(_ r: PluginLoadError.Reason) -> PluginLoadError { PluginLoadError(path: path, reason: r) }

        // Only a library in a place nobody else can write to, and shown by its own
        // symbol table to export the entry, is dlopen'ed: the others' constructors never
        // run in the host.
        if let unsafe = PluginLocation.problem(with: path) { throw fail(.unsafeLocation(unsafe)) }
        switch PluginELFSymbols.inspect(path, for: HV_PLUGIN_ENTRY_SYMBOL) {
        case .defines: break
        case .lacks: throw fail(.noEntrySymbol)
        case .unreadable(let why): throw fail(.notAPlugin(why))
        }
        _ = dlerror()
        guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
            let why = dlerror().map { String(cString: $0) } ?? "unknown error"
            throw fail(.dlopenFailed(why))
        }
        var initialized = false
        var entryPointer: UnsafePointer<hv_plugin_entry>?
        do throws(PluginLoadError) {
            guard let sym = dlsym(handle, HV_PLUGIN_ENTRY_SYMBOL) else { throw fail(.noEntrySymbol) }
            let entryFn = unsafeBitCast(sym, to: hv_plugin_entry_fn.self)
            guard let entry = entryFn() else { throw fail(.entryReturnedNull) }
            entryPointer = entry
            let info = try validateEntry(entry, path: path)
            if let refusal = admit(info.id) { throw fail(refusal) }

            // A 1.0 entry ends before init_with_info: read only the plugin's struct_size.
            let fields = loadZeroExtended(entry, structSize: entry.pointee.struct_size)
            if let initWithInfo = fields.init_with_info {
                let absolute = PluginSearchPath.realPath(path) ?? path
                let rc = absolute.withCString { cPath in
                    var info = hv_plugin_load_info(struct_size: UInt32(MemoryLayout<hv_plugin_load_info>.size),
                                                   abi_version: (HV_ABI_VERSION_MAJOR << 16) | HV_ABI_VERSION_MINOR,
                                                   plugin_path: cPath)
                    return initWithInfo(&info)
                }
                guard rc >= 0 else { throw fail(.initFailed(code: rc)) }
                initialized = true
            } else if let initFn = fields.`init` {
                let rc = initFn()
                guard rc >= 0 else { throw fail(.initFailed(code: rc)) }
                initialized = true
            }

            let getFactory = entry.pointee.get_factory!
            var models: [LoadedPlugin.DeviceModel] = []
            var sched: [LoadedPlugin.SchedPolicy] = []
            var teaming: [LoadedPlugin.TeamingPolicy] = []
            for id in info.factoryIDs {
                guard let factory = id.withCString({ getFactory($0) }) else { throw fail(.factoryMissing(id: id)) }
                switch id {
                case HV_FACTORY_DEVICE: models = try validateDeviceFactory(factory, path: path)
                case HV_FACTORY_SCHED_POLICY: sched = try validateSchedFactory(factory, path: path)
                case HV_FACTORY_TEAMING: teaming = try validateTeamingFactory(factory, path: path)
                default: logger.debug("\(path): unknown factory id \"\(id)\" listed, not used")
                }
            }
            let plugin = LoadedPlugin(
                path: path, realPath: PluginSearchPath.realPath(path) ?? path, handle: handle, entry: entry,
                id: info.id, name: info.name, version: info.version, vendor: info.vendor,
                factoryIDs: info.factoryIDs, deviceModels: models, schedPolicies: sched, teamingPolicies: teaming)
            logger.debug("loaded plugin \(plugin)")
            return plugin
        } catch {
            if initialized, let fini = entryPointer?.pointee.deinit { fini() }
            dlclose(handle)
            throw error
        }
    }

    // MARK: - Entry

    private struct EntryInfo {
        var id, name, version: String
        var vendor: String?
        var factoryIDs: [String]
    }

    private func validateEntry(_ entry: UnsafePointer<hv_plugin_entry>, path: String) throws(PluginLoadError) -> EntryInfo {
        func fail(_ r: PluginLoadError.Reason) -> PluginLoadError { PluginLoadError(path: path, reason: r) }
        // Read the two leading u32 first: the rest is only read once the size covers it.
        let raw = UnsafeRawPointer(entry)
        let size = raw.load(as: UInt32.self)
        let abi = raw.load(fromByteOffset: 4, as: UInt32.self)
        try checkVersion(structName: "hv_plugin_entry", size: size, abi: abi,
                         minimum: MinimumSize.entry, current: MemoryLayout<hv_plugin_entry>.stride,
                         context: "", path: path)
        let e = entry.pointee
        let id = try requiredString(e.id, field: "plugin id", path: path)
        let name = try requiredString(e.name, field: "plugin name", path: path)
        let version = try requiredString(e.version, field: "plugin version", path: path)
        let vendor = try e.vendor.map { (p) throws(PluginLoadError) in
            try requiredString(p, field: "plugin vendor", path: path, allowEmpty: true)
        }
        guard e.get_factory != nil else { throw fail(.missingFunction("get_factory")) }
        guard let list = e.factory_ids else { throw fail(.badFactoryList("is NULL (at least one id is required)")) }
        var ids: [String] = []
        while let p = list[ids.count] {
            guard ids.count < Self.maximumFactoryIDs else {
                throw fail(.badFactoryList("has more than \(Self.maximumFactoryIDs) entries (missing NULL terminator?)"))
            }
            let id = try requiredString(p, field: "factory_ids[\(ids.count)]", path: path)
            guard !ids.contains(id) else { throw fail(.badFactoryList("lists \"\(id)\" twice")) }
            ids.append(id)
        }
        guard !ids.isEmpty else { throw fail(.badFactoryList("is empty (at least one id is required)")) }
        return EntryInfo(id: id, name: name, version: version, vendor: vendor, factoryIDs: ids)
    }

    /// struct_size and ABI checks shared by the entry and the factories.
    private func checkVersion(structName: String, size: UInt32, abi: UInt32?, minimum: Int, current: Int,
                              context: String, path: String) throws(PluginLoadError) {
        func fail(_ r: PluginLoadError.Reason) -> PluginLoadError { PluginLoadError(path: path, reason: r) }
        if let abi {
            guard abi >> 16 == HV_ABI_VERSION_MAJOR else { throw fail(.abiMajorMismatch(context: context, major: abi >> 16)) }
        }
        guard Int(size) >= minimum else { throw fail(.structTooSmall(structName: structName, size: size, minimum: minimum)) }
        // A plugin built against a newer minor must not have shrunk a struct below ours.
        if let abi, abi & 0xFFFF > HV_ABI_VERSION_MINOR, Int(size) < current {
            throw fail(.structTooSmall(structName: structName, size: size, minimum: current))
        }
    }

    /// A NUL-terminated string of at most `maximumStringLength` bytes.
    private func requiredString(_ p: UnsafePointer<CChar>?, field: String, path: String,
                                allowEmpty: Bool = false) throws(PluginLoadError) -> String {
        func fail(_ r: PluginLoadError.Reason) -> PluginLoadError { PluginLoadError(path: path, reason: r) }
        guard let p else { throw fail(.missingString(field: field)) }
        let n = strnlen(p, Self.maximumStringLength + 1)
        guard n <= Self.maximumStringLength else {
            throw fail(.badString(field: field, problem: "is longer than \(Self.maximumStringLength) bytes (missing NUL?)"))
        }
        guard n > 0 || allowEmpty else { throw fail(.missingString(field: field)) }
        let text = String(decoding: UnsafeRawBufferPointer(start: p, count: n), as: UTF8.self)
        // Plugin strings are echoed in listings and logs: no forged rows or terminal escapes.
        if text.unicodeScalars.contains(where: \.isControlCharacter) {
            throw fail(.badString(field: field, problem: "contains control characters (\"\(text.escapingControlCharacters)\")"))
        }
        return text
    }

    /// Names used in `.vmx` files and pool configs: `[a-z0-9_-]+`.
    static func isValidName(_ s: String) -> Bool {
        !s.isEmpty && s.utf8.allSatisfy { c in
            (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39) || c == 0x5F || c == 0x2D
        }
    }

    // MARK: - Factories

    private func validateDeviceFactory(_ raw: UnsafeRawPointer, path: String) throws(PluginLoadError)
        -> [LoadedPlugin.DeviceModel]
    {
        let id = HV_FACTORY_DEVICE
        func fail(_ problem: String) -> PluginLoadError {
            PluginLoadError(path: path, reason: .invalidFactory(id: id, problem: problem))
        }
        try checkVersion(structName: "hv_device_factory", size: raw.load(as: UInt32.self),
                         abi: raw.load(fromByteOffset: 4, as: UInt32.self), minimum: MinimumSize.deviceFactory,
                         current: MemoryLayout<hv_device_factory>.stride, context: "device factory", path: path)
        let f = raw.assumingMemoryBound(to: hv_device_factory.self).pointee
        guard f.model_count >= 1 else { throw fail("model_count is 0 (at least one model is required)") }
        guard f.model_count <= UInt32(Self.maximumModels) else {
            throw fail("model_count is \(f.model_count), more than the \(Self.maximumModels) a factory may declare")
        }
        guard let list = f.models else { throw fail("models is NULL") }
        var models: [LoadedPlugin.DeviceModel] = []
        for i in 0..<Int(f.model_count) {
            guard let m = list[i] else { throw fail("models[\(i)] is NULL (model_count is \(f.model_count))") }
            let model = try validateDeviceModel(m, index: i, path: path)
            if models.contains(where: { $0.name == model.name }) {
                throw PluginLoadError(path: path, reason: .invalidDeviceModel(
                    model: model.name, problem: "is declared twice by the same factory"))
            }
            models.append(model)
        }
        return models
    }

    private func validateDeviceModel(_ m: UnsafePointer<hv_device_model>, index: Int, path: String)
        throws(PluginLoadError) -> LoadedPlugin.DeviceModel
    {
        func fail(_ model: String, _ problem: String) -> PluginLoadError {
            PluginLoadError(path: path, reason: .invalidDeviceModel(model: model, problem: problem))
        }
        let size = UnsafeRawPointer(m).load(as: UInt32.self)
        guard Int(size) >= MinimumSize.deviceModel else {
            throw fail("#\(index)", "has struct_size \(size), smaller than the \(MinimumSize.deviceModel) bytes of hv_device_model")
        }
        let v = m.pointee
        guard let namePointer = v.name, strnlen(namePointer, 65) > 0 else { throw fail("#\(index)", "has no name") }
        guard strnlen(namePointer, 65) <= 64 else { throw fail("#\(index)", "has a name longer than 64 bytes") }
        let name = String(cString: namePointer)
        guard Self.isValidName(name) else {
            throw fail(name, "has an invalid name (use lowercase letters, digits, '_' and '-')")
        }
        guard (HV_DEVICE_KIND_NIC...HV_DEVICE_KIND_OTHER).contains(v.kind) else {
            throw fail(name, "has unknown kind \(v.kind) (expected 1 nic, 2 scsi, 3 display or 4 other)")
        }
        guard v.create != nil else { throw fail(name, "has no create function") }
        guard let ops = v.ops else { throw fail(name, "has no ops table") }
        let opsSize = UnsafeRawPointer(ops).load(as: UInt32.self)
        guard Int(opsSize) >= MinimumSize.deviceOps else {
            throw fail(name, "has ops struct_size \(opsSize), smaller than the \(MinimumSize.deviceOps) bytes of hv_device_ops")
        }
        guard ops.pointee.destroy != nil else { throw fail(name, "has no destroy op") }
        let description = try v.description.map { (p) throws(PluginLoadError) in
            try requiredString(p, field: "model '\(name)' description", path: path, allowEmpty: true)
        }
        var declarations = PluginDeclarations()
        if Int(size) >= MemoryLayout<hv_device_model>.size {
            switch PluginDeclarations.read(keys: v.keys, keyCount: v.key_count, commands: v.commands,
                                           commandCount: v.command_count) {
            case .success(let d): declarations = d
            case .failure(let p): throw fail(name, p.text)
            }
        }
        return LoadedPlugin.DeviceModel(name: name, kind: v.kind, description: description, flags: v.flags,
                                        stateVersion: v.state_version, pointer: m, declarations: declarations)
    }

    private func validateSchedFactory(_ raw: UnsafeRawPointer, path: String) throws(PluginLoadError)
        -> [LoadedPlugin.SchedPolicy]
    {
        try validatePolicyFactory(
            raw, as: hv_sched_factory.self, id: HV_FACTORY_SCHED_POLICY, context: "scheduler factory", path: path,
            minimum: (MinimumSize.schedFactory, MinimumSize.schedPolicyDesc, MinimumSize.schedOps),
            list: { ($0.policies, $0.policy_count) }, fields: { ($0.name, $0.description, $0.ops) },
            mandatoryOps: { o in [
                ("init", o.`init` != nil), ("deinit", o.deinit != nil), ("vcpu_add", o.vcpu_add != nil),
                ("vcpu_remove", o.vcpu_remove != nil), ("wake", o.wake != nil), ("block", o.block != nil),
                ("pick_next", o.pick_next != nil), ("account", o.account != nil), ("set_params", o.set_params != nil),
            ] }
        ).map { (p) throws(PluginLoadError) in
            var declarations = PluginDeclarations()
            let d = p.pointer.pointee
            if Int(UnsafeRawPointer(p.pointer).load(as: UInt32.self)) >= MemoryLayout<hv_sched_policy_desc>.size {
                switch PluginDeclarations.read(keys: d.keys, keyCount: d.key_count, commands: d.commands,
                                               commandCount: d.command_count) {
                case .success(let decl): declarations = decl
                case .failure(let problem):
                    throw PluginLoadError(path: path, reason: .invalidFactory(
                        id: HV_FACTORY_SCHED_POLICY, problem: "policy '\(p.name)' \(problem.text)"))
                }
            }
            return LoadedPlugin.SchedPolicy(name: p.name, description: p.description, pointer: p.pointer,
                                            declarations: declarations)
        }
    }

    private func validateTeamingFactory(_ raw: UnsafeRawPointer, path: String) throws(PluginLoadError)
        -> [LoadedPlugin.TeamingPolicy]
    {
        try validatePolicyFactory(
            raw, as: hv_teaming_factory.self, id: HV_FACTORY_TEAMING, context: "teaming factory", path: path,
            minimum: (MinimumSize.teamingFactory, MinimumSize.teamingPolicyDesc, MinimumSize.teamingOps),
            list: { ($0.policies, $0.policy_count) }, fields: { ($0.name, $0.description, $0.ops) },
            mandatoryOps: { o in [
                ("init", o.`init` != nil), ("deinit", o.deinit != nil), ("uplink_add", o.uplink_add != nil),
                ("uplink_remove", o.uplink_remove != nil), ("link_changed", o.link_changed != nil),
                ("select_uplink", o.select_uplink != nil),
            ] }
        ).map { LoadedPlugin.TeamingPolicy(name: $0.name, description: $0.description, pointer: $0.pointer) }
    }

    /// The checks shared by the scheduler and teaming factories: the factory's struct_size and
    /// ABI, then for each policy descriptor its struct_size, name and description, a non-NULL
    /// ops table of at least `minimum.ops` bytes with every mandatory op, and a name not
    /// declared twice. Struct names in messages are the C type names (`hv_sched_ops`, ...).
    private func validatePolicyFactory<Factory, Desc, Ops>(
        _ raw: UnsafeRawPointer, as _: Factory.Type, id: String, context: String, path: String,
        minimum: (factory: Int, desc: Int, ops: Int),
        list: (Factory) -> (UnsafePointer<UnsafePointer<Desc>?>?, UInt32),
        fields: (Desc) -> (name: UnsafePointer<CChar>?, description: UnsafePointer<CChar>?, ops: UnsafePointer<Ops>?),
        mandatoryOps: (Ops) -> [(String, Bool)]
    ) throws(PluginLoadError) -> [(name: String, description: String?, pointer: UnsafePointer<Desc>)] {
        func fail(_ problem: String) -> PluginLoadError {
            PluginLoadError(path: path, reason: .invalidFactory(id: id, problem: problem))
        }
        try checkVersion(structName: String(describing: Factory.self), size: raw.load(as: UInt32.self),
                         abi: raw.load(fromByteOffset: 4, as: UInt32.self), minimum: minimum.factory,
                         current: MemoryLayout<Factory>.stride, context: context, path: path)
        let (listPointer, count) = list(raw.assumingMemoryBound(to: Factory.self).pointee)
        let descs = try policyList(listPointer, count: count, id: id, path: path)
        var policies: [(name: String, description: String?, pointer: UnsafePointer<Desc>)] = []
        for (i, d) in descs.enumerated() {
            try checkPolicySize(UnsafeRawPointer(d), index: i, structName: String(describing: Desc.self),
                                minimum: minimum.desc, id: id, path: path)
            let v = fields(d.pointee)
            let (name, description) = try policyStrings(v.name, v.description, index: i, id: id, path: path)
            guard let ops = v.ops else { throw fail("policy '\(name)' has no ops table") }
            let opsSize = UnsafeRawPointer(ops).load(as: UInt32.self)
            guard Int(opsSize) >= minimum.ops else {
                throw fail("policy '\(name)' has ops struct_size \(opsSize), smaller than the \(minimum.ops) bytes of \(Ops.self)")
            }
            if let missing = mandatoryOps(loadZeroExtended(ops, structSize: opsSize)).first(where: { !$0.1 }) {
                throw fail("policy '\(name)' has no \(missing.0) op (mandatory)")
            }
            guard !policies.contains(where: { $0.name == name }) else {
                throw fail("policy '\(name)' is declared twice by the same factory")
            }
            policies.append((name, description, d))
        }
        return policies
    }

    /// `policy_count` in 1...maximumPolicies and that many non-NULL entries in `policies`.
    private func policyList<Desc>(_ list: UnsafePointer<UnsafePointer<Desc>?>?, count: UInt32, id: String,
                                  path: String) throws(PluginLoadError) -> [UnsafePointer<Desc>] {
        func fail(_ problem: String) -> PluginLoadError {
            PluginLoadError(path: path, reason: .invalidFactory(id: id, problem: problem))
        }
        guard count >= 1 else { throw fail("policy_count is 0 (at least one policy is required)") }
        guard count <= UInt32(Self.maximumPolicies) else {
            throw fail("policy_count is \(count), more than the \(Self.maximumPolicies) a factory may declare")
        }
        guard let list else { throw fail("policies is NULL") }
        var descs: [UnsafePointer<Desc>] = []
        for i in 0..<Int(count) {
            guard let d = list[i] else { throw fail("policies[\(i)] is NULL (policy_count is \(count))") }
            descs.append(d)
        }
        return descs
    }

    /// A policy descriptor's struct_size, checked before any other field is read.
    private func checkPolicySize(_ d: UnsafeRawPointer, index: Int, structName: String, minimum: Int, id: String,
                                 path: String) throws(PluginLoadError) {
        let size = d.load(as: UInt32.self)
        guard Int(size) >= minimum else {
            throw PluginLoadError(path: path, reason: .invalidFactory(
                id: id, problem: "policy #\(index) has struct_size \(size), smaller than the \(minimum) bytes of \(structName)"))
        }
    }

    /// A policy descriptor's name (`[a-z0-9_-]`, 1...64 bytes) and optional description.
    private func policyStrings(_ namePointer: UnsafePointer<CChar>?, _ descriptionPointer: UnsafePointer<CChar>?,
                               index: Int, id: String, path: String) throws(PluginLoadError)
        -> (name: String, description: String?)
    {
        func fail(_ problem: String) -> PluginLoadError {
            PluginLoadError(path: path, reason: .invalidFactory(id: id, problem: problem))
        }
        guard let p = namePointer, strnlen(p, 65) > 0 else { throw fail("policy #\(index) name is NULL or empty") }
        guard strnlen(p, 65) <= 64 else { throw fail("policy #\(index) name is longer than 64 bytes") }
        let name = String(cString: p)
        guard Self.isValidName(name) else {
            throw fail("policy name '\(name)' is invalid (use lowercase letters, digits, '_' and '-')")
        }
        let description = try descriptionPointer.map { (p) throws(PluginLoadError) in
            try requiredString(p, field: "policy '\(name)' description", path: path, allowEmpty: true)
        }
        return (name, description)
    }
}

/// A copy of the plugin struct at `pointer` of which only its first `structSize` bytes
/// (the plugin's `struct_size`) are read: a field appended after the plugin was built
/// (an op beyond its table) reads as zero, i.e. NULL.
func loadZeroExtended<T>(_ pointer: UnsafePointer<T>, structSize: UInt32) -> T {
    let size = MemoryLayout<T>.size
    let buffer = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: MemoryLayout<T>.alignment)
    defer { buffer.deallocate() }
    buffer.initializeMemory(as: UInt8.self, repeating: 0, count: size)
    buffer.copyMemory(from: UnsafeRawPointer(pointer), byteCount: min(Int(structSize), size))
    return buffer.load(as: T.self)
}
