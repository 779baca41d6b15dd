import PluginABI

extension hv_host_services {
    /// A host extension's table by id ("hv.timer/1"), or nil when the host does not offer
    /// it or offers an older, smaller table than this plugin reads (every extension table
    /// starts with its struct_size).
    package func extensionTable<T>(_ id: String, host: OpaquePointer, as _: T.Type) -> UnsafePointer<T>? {
        guard let lookup = get_extension, let raw = id.withCString({ lookup(host, $0) }),
              raw.load(as: UInt32.self) >= UInt32(MemoryLayout<T>.size) else { return nil }
        return raw.assumingMemoryBound(to: T.self)
    }

    /// True when these services are the ones this plugin was built for: the same major
    /// version and at least the table it reads.
    package var isCompatible: Bool {
        struct_size >= UInt32(MemoryLayout<hv_host_services>.size) && abi_version >> 16 == HV_ABI_VERSION_MAJOR
    }

    /// The instance's configuration value for `key` (the host strips the device prefix).
    package func config(_ key: StaticString, host: OpaquePointer) -> String? {
        config_get.flatMap { $0(host, cString(key)) }.map { String(cString: $0) }
    }

    /// Logs `text` for the instance at `level` (HV_LOG_*).
    package func log(_ level: Int32, _ text: String, host: OpaquePointer) {
        guard let log else { return }
        text.withCString { log(host, level, $0) }
    }
}
