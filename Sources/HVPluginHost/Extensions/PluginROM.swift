import Glibc
import HVDevices
import HVSupport
import PluginABI

extension PluginExtensions {
    static func romTable() -> hv_rom_ext {
        var t = hv_rom_ext()
        t.struct_size = UInt32(MemoryLayout<hv_rom_ext>.size)
        t.load_file = { host, path in
            guard let d = PluginDevice.from(host), let path else { return HV_EINVAL }
            let file = HostFile.resolve(String(cString: path), relativeTo: d.context.configDirectory)
            let source = "file \(file)"
            if let refused = PluginExtensions.romRefusal(d, source) { return refused }
            let bytes: [UInt8]
            do throws(HostFile.ReadError) {
                bytes = try HostFile.read(file, limit: Int(PCIExpansionROM.maximumSize))
            } catch {
                switch error.errno {
                case ENOENT, ENOTDIR: return d.refuse(HV_ENOENT, "expansion ROM \(source): \(error)")
                case EFBIG: return d.refuse(HV_EINVAL, "expansion ROM \(source): larger than 16 MiB")
                case EINVAL, EISDIR: return d.refuse(HV_EINVAL, "expansion ROM \(source): not a regular file")
                default: return d.refuse(HV_EIO, "expansion ROM \(source): \(error)")
                }
            }
            return PluginExtensions.installROM(bytes, from: source, on: d)
        }
        t.set_bytes = { host, data, len in
            guard let d = PluginDevice.from(host), let data, len >= 0 else { return HV_EINVAL }
            let source = "of \(len) bytes"
            if let refused = PluginExtensions.romRefusal(d, source) { return refused }
            guard UInt64(len) <= PCIExpansionROM.maximumSize else {
                return d.refuse(HV_EINVAL, "expansion ROM \(source): larger than 16 MiB")
            }
            return PluginExtensions.installROM(Array(UnsafeRawBufferPointer(start: data, count: len)), from: source, on: d)
        }
        return t
    }

    /// Why the device may not set a ROM now, already logged; nil when it may.
    fileprivate static func romRefusal(_ d: PluginDevice, _ source: String) -> Int32? {
        guard d.creating else { return d.refuse(HV_EPERM, "expansion ROM \(source) set after create()") }
        guard let f = d.function else { return d.refuse(HV_EINVAL, "expansion ROM \(source) set before pci_set_identity") }
        guard f.rom == nil else { return d.refuse(HV_EEXIST, "expansion ROM \(source): the function already has one") }
        return nil
    }

    fileprivate static func installROM(_ bytes: [UInt8], from source: String, on d: PluginDevice) -> Int32 {
        guard let rom = PCIExpansionROM(contents: bytes), let f = d.function else {
            return d.refuse(HV_EINVAL, "expansion ROM \(source): empty")
        }
        do { try f.addROM(rom) } catch { return d.refuse(HV_EEXIST, "expansion ROM \(source): \(error)") }
        return HV_OK
    }
}
