import PluginABI

/// The host extensions `get_extension` answers, by id. Each table is built once and
/// never changes, as the header promises; `offered` decides per instance (e.g. an
/// extension only a PCI device can use).
enum PluginExtensions {
    struct Extension {
        let table: UnsafeRawPointer
        let offered: (PluginDevice) -> Bool
    }

    static let all: [String: Extension] = [
        HV_EXT_TIMER: Extension(table: allocate(timerTable()), offered: { _ in true }),
        HV_EXT_LEGACY_IO: Extension(table: allocate(legacyIOTable()), offered: { $0.context.legacy != nil }),
        HV_EXT_ROM: Extension(table: allocate(romTable()), offered: { _ in true }),
        HV_EXT_DISPLAY: Extension(table: allocate(displayTable()), offered: { $0.context.display != nil }),
        HV_EXT_INPUT: Extension(table: allocate(inputTable()), offered: { $0.context.input != nil }),
        HV_EXT_RAM_BAR: Extension(table: allocate(ramBARTable()), offered: { _ in true }),
        HV_EXT_MSIX: Extension(table: allocate(msixTable()), offered: { _ in true }),
        HV_EXT_DOORBELL: Extension(table: allocate(doorbellTable()), offered: { _ in true }),
        HV_EXT_NET_QUEUE: Extension(table: allocate(netQueueTable()), offered: { _ in true }),
        HV_EXT_SCSI: Extension(table: allocate(scsiTable()), offered: { _ in true }),
    ]

    static func lookup(_ id: String, for device: PluginDevice) -> UnsafeRawPointer? {
        guard let ext = all[id], ext.offered(device) else { return nil }
        return ext.table
    }

    /// A table that lives as long as the process, like the services table.
    static func allocate<T>(_ value: T) -> UnsafeRawPointer {
        let p = UnsafeMutablePointer<T>.allocate(capacity: 1)
        p.initialize(to: value)
        return UnsafeRawPointer(p)
    }

    private static func timerTable() -> hv_timer_ext {
        var t = hv_timer_ext()
        t.struct_size = UInt32(MemoryLayout<hv_timer_ext>.size)
        t.timer_cancel_wait = { host, timer in
            guard let d = PluginDevice.from(host), let t = d.timer(timer) else { return HV_EINVAL }
            return t.cancelAndWait() ? HV_OK : HV_EDEADLK
        }
        return t
    }
}
