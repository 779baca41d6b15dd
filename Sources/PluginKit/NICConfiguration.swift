import Glibc
import PluginABI

/// What every NIC plugin reads from its configuration: the MAC address and the boot ROM.
package enum NICConfiguration {
    /// Parses "00:50:56:12:34:56" (or with '-'); nil when malformed.
    package static func parseMAC(_ text: String) -> [UInt8]? {
        let trimmed = text.filter { $0 != " " && $0 != "\t" }
        let parts = trimmed.split(omittingEmptySubsequences: false, whereSeparator: { $0 == ":" || $0 == "-" })
        guard parts.count == 6 else { return nil }
        var mac: [UInt8] = []
        for p in parts {
            guard p.count == 2, let b = UInt8(p, radix: 16) else { return nil }
            mac.append(b)
        }
        return mac
    }

    /// The NIC's MAC: a static `address`, else the host's `generatedAddress`. Logs and
    /// returns nil when neither is a usable unicast address.
    package static func macAddress(_ hs: hv_host_services, host: OpaquePointer) -> [UInt8]? {
        if let text = hs.config("address", host: host) {
            guard let m = parseMAC(text), m[0] & 1 == 0 else {
                hs.log(HV_LOG_ERROR, "address = \"\(text.prefix(40))\": expected a unicast MAC address like 00:50:56:00:00:01", host: host)
                return nil
            }
            return m
        }
        if let text = hs.config("generatedAddress", host: host), let m = parseMAC(text), m[0] & 1 == 0 { return m }
        hs.log(HV_LOG_ERROR, "no usable address or generatedAddress for this NIC", host: host)
        return nil
    }

    /// The PCI expansion ROM ("hv.rom/1") from the `bootRom` key: "none" (the host's
    /// answer when the boot order does not name this NIC), "default" (`defaultROM`,
    /// skipped with a warning when it is not installed) or a file path. HV_OK when no
    /// ROM is wanted or it was loaded.
    package static func offerBootROM(_ hs: hv_host_services, host: OpaquePointer, defaultROM: String) -> Int32 {
        let setting = hs.config("bootRom", host: host) ?? "none"
        let trimmed = String(setting.drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
        guard trimmed.lowercased() != "none", !trimmed.isEmpty else { return HV_OK }
        var path = trimmed
        if trimmed.lowercased() == "default" {
            guard access(defaultROM, R_OK) == 0 else {
                hs.log(HV_LOG_WARN, "bootRom: \(defaultROM) is not installed (apt-get install ipxe-qemu); no PXE ROM", host: host)
                return HV_OK
            }
            path = defaultROM
        }
        guard let rom = hs.extensionTable(HV_EXT_ROM, host: host, as: hv_rom_ext.self), let load = rom.pointee.load_file else {
            hs.log(HV_LOG_ERROR, "bootRom = \"\(trimmed)\": the host does not offer \(HV_EXT_ROM)", host: host)
            return HV_ENOTSUP
        }
        return path.withCString { load(host, $0) }
    }
}
