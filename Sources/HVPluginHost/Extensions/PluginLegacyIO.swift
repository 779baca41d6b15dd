import HVDevices
import PluginABI

/// A region claimed through "hv.legacy-io/1": each access is one call of the plugin's
/// handler with the absolute port or address. Sizes the header does not promise (and
/// the remains of an access clipped at the region's end) read as all ones and are not
/// written.
final class PluginLegacyRegion: BusDevice {
    unowned let device: PluginDevice
    let base: UInt64
    let space: LegacySpace.Space
    let readHandler: hv_legacy_read_fn?
    let writeHandler: hv_legacy_write_fn?
    let opaque: UnsafeMutableRawPointer?

    init(device: PluginDevice, region r: hv_legacy_region, space: LegacySpace.Space) {
        self.device = device
        base = r.base
        self.space = space
        readHandler = r.read
        writeHandler = r.write
        opaque = r.opaque
    }

    private func isAccessSize(_ n: Int) -> Bool { n == 1 || n == 2 || n == 4 || (n == 8 && space == .memory) }

    func read(offset: UInt64, data: UnsafeMutableRawBufferPointer) {
        guard isAccessSize(data.count), let read = readHandler else {
            data.initializeMemory(as: UInt8.self, repeating: 0xFF)
            return
        }
        var value: UInt64 = ~0
        device.call(.windowRead(address: base + offset, size: data.count)) { value = read($0, opaque, base + offset, UInt32(data.count)) }
        data.storeLittleEndian(value)
    }

    func write(offset: UInt64, data: UnsafeRawBufferPointer) {
        guard isAccessSize(data.count), let write = writeHandler else { return }
        device.call(.windowWrite(address: base + offset, size: data.count)) { write($0, opaque, base + offset, UInt32(data.count), data.littleEndianValue) }
    }
}

extension PluginExtensions {
    static func legacyIOTable() -> hv_legacy_io_ext {
        var t = hv_legacy_io_ext()
        t.struct_size = UInt32(MemoryLayout<hv_legacy_io_ext>.size)
        t.claim = { host, region in
            guard let d = PluginDevice.from(host), let desc = region, let legacy = d.context.legacy else { return HV_EINVAL }
            let r = desc.pointee
            let label = r.struct_size >= UInt32(MemoryLayout<hv_legacy_region>.size) && r.name != nil
                ? String(cString: r.name) : "legacy"
            guard d.creating else { return d.refuse(HV_EPERM, "legacy region '\(label)' claimed after create()") }
            guard r.struct_size >= UInt32(MemoryLayout<hv_legacy_region>.size) else {
                return d.refuse(HV_EINVAL, "legacy region '\(label)': struct_size \(r.struct_size) is too small")
            }
            let space: LegacySpace.Space
            switch r.space {
            case HV_LEGACY_PORT: space = .port
            case HV_LEGACY_MEMORY: space = .memory
            default: return d.refuse(HV_EINVAL, "legacy region '\(label)': unknown space \(r.space)")
            }
            guard r.read != nil || r.write != nil else {
                return d.refuse(HV_EINVAL, "legacy region '\(label)' has neither a read nor a write handler")
            }
            let region = PluginLegacyRegion(device: d, region: r, space: space)
            do throws(LegacyClaimError) {
                try legacy.claim(space, base: r.base, size: r.size, name: "\(d.context.prefix) (\(d.modelName)) \(label)",
                                 device: region)
            } catch {
                if case .conflict = error { return d.refuse(HV_EBUSY, "\(error)") }
                return d.refuse(HV_EINVAL, "\(error)")
            }
            d.resources.withLock { d.extensionReleases.append { legacy.release(region) } }
            return HV_OK
        }
        return t
    }
}
