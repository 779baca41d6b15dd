import Glibc
import HVDevices
import Logging
import PluginABI

/// The `hv_host_services` table every device instance receives. Each entry turns the
/// opaque `hv_host *` back into its `PluginDevice` and checks what the plugin passed.
enum PluginHostServices {
    static func describe(_ rc: Int32) -> String {
        rc < 0 ? "\(String(cString: strerror(-rc))) (\(rc))" : "result \(rc)"
    }

    static let table: UnsafePointer<hv_host_services> = {
        let p = UnsafeMutablePointer<hv_host_services>.allocate(capacity: 1)
        p.initialize(to: makeTable())
        return UnsafePointer(p)
    }()


    // swiftlint:disable:next function_body_length
    private static func makeTable() -> hv_host_services {
        var t = hv_host_services()
        t.struct_size = UInt32(MemoryLayout<hv_host_services>.size)
        t.abi_version = (HV_ABI_VERSION_MAJOR << 16) | HV_ABI_VERSION_MINOR

        t.log = { host, level, msg in
            guard let d = PluginDevice.from(host), let msg else { return }
            let text = "\(d.context.vmName): \(d.context.prefix) (\(d.modelName)): \(String(cString: msg))"
            switch level {
            case HV_LOG_ERROR: d.context.logger.error("\(text)")
            case HV_LOG_WARN: d.context.logger.warning("\(text)")
            case HV_LOG_INFO: d.context.logger.info("\(text)")
            default: d.context.logger.debug("\(text)")
            }
        }
        t.config_get = { host, key in
            guard let d = PluginDevice.from(host), let key else { return nil }
            let k = String(cString: key).lowercased()
            return d.resources.withLock {
                if let cached = d.configStrings[k] { return UnsafePointer(cached) }
                guard let value = d.context.configValue(k) else { return nil }
                let copy = strdup(value)!
                d.configStrings[k] = copy
                return UnsafePointer(copy)
            }
        }

        // PCI
        t.pci_set_identity = { host, id in
            guard let d = PluginDevice.from(host), let id else { return HV_EINVAL }
            guard d.creating else { return HV_EPERM }
            guard d.function == nil else { return HV_EEXIST }
            let v = id.pointee
            guard v.struct_size >= UInt32(MemoryLayout<hv_pci_identity>.size), v.vendor_id != 0xFFFF, v.vendor_id != 0,
                  v.interrupt_pin <= 4, v.class_code <= 0xFF_FFFF else { return HV_EINVAL }
            d.function = PCIFunction(
                name: "\(d.context.prefix) (\(d.modelName))",
                identity: PCIIdentity(vendorID: v.vendor_id, deviceID: v.device_id, classCode: v.class_code,
                                      revision: v.revision, subsystemVendorID: v.subsystem_vendor_id,
                                      subsystemID: v.subsystem_id, interruptPin: v.interrupt_pin))
            return HV_OK
        }
        t.pci_add_bar = { host, desc in
            guard let d = PluginDevice.from(host), let desc else { return HV_EINVAL }
            guard d.creating else { return HV_EPERM }
            guard let f = d.function else { return HV_EINVAL }
            let b = desc.pointee
            guard b.struct_size >= UInt32(MemoryLayout<hv_bar_desc>.size) else { return HV_EINVAL }
            let kind: PCIBARDescription.Kind
            switch b.kind {
            case HV_BAR_IO: kind = .io
            case HV_BAR_MMIO32: kind = .memory32
            case HV_BAR_MMIO64: kind = .memory64
            default: return HV_EINVAL
            }
            do {
                try f.addBAR(PCIBARDescription(index: Int(b.index), kind: kind, size: b.size,
                                               prefetchable: b.flags & HV_BAR_PREFETCHABLE != 0),
                             device: PluginBAR(device: d, index: b.index, size: b.size, isIO: kind == .io,
                                               read: b.read, write: b.write))
            } catch PCIError.badBAR(_, _, let reason) {
                d.context.logger.error("\(d.context.prefix) (\(d.modelName)): BAR\(b.index): \(reason)")
                return reason.contains("already used") ? HV_EEXIST : HV_EINVAL
            } catch { return HV_EINVAL }
            return HV_OK
        }
        t.pci_add_msi = { host, vectors in
            guard let d = PluginDevice.from(host) else { return HV_EINVAL }
            guard d.creating else { return HV_EPERM }
            guard let f = d.function else { return HV_EINVAL }
            do { try f.addMSI(vectors: Int(vectors)) } catch { return HV_EINVAL }
            return HV_OK
        }
        t.pci_command = { host in
            guard let d = PluginDevice.from(host), let f = d.function else { return 0 }
            return d.context.pci.command(of: f)
        }
        t.pci_bar_address = { host, bar in
            guard let d = PluginDevice.from(host), let f = d.function, bar < 6 else { return 0 }
            return d.context.pci.mappedAddress(of: f, bar: Int(bar))
        }

        // Interrupts
        t.irq_set_level = { host, level in
            guard let d = PluginDevice.from(host), let f = d.function else { return }
            d.context.pci.setINTx(f, asserted: level != 0)
        }
        t.msi_notify = { host, vector in
            guard let d = PluginDevice.from(host), let f = d.function else { return HV_EINVAL }
            switch d.context.pci.sendMSI(f, vector: Int(vector)) {
            case .sent: return HV_OK
            case .notEnabled: return HV_ENOENT
            case .masked: return HV_EAGAIN
            case .outOfRange: return HV_ERANGE
            }
        }

        // Guest memory
        // size_t arrives as Int: a length of 2^63 or more is negative here, and gpa + len
        // may wrap. Both are guest ranges that do not exist: HV_EFAULT, before any buffer
        // is formed.
        t.mem_read = { host, gpa, buf, len in
            guard let d = PluginDevice.from(host), let buf else { return HV_EINVAL }
            guard isGuestRange(gpa, len) else { return HV_EFAULT }
            do { try d.context.memory.read(at: gpa, into: UnsafeMutableRawBufferPointer(start: buf, count: len)) }
            catch { return HV_EFAULT }
            return HV_OK
        }
        t.mem_write = { host, gpa, buf, len in
            guard let d = PluginDevice.from(host), let buf else { return HV_EINVAL }
            guard isGuestRange(gpa, len) else { return HV_EFAULT }
            do { try d.context.memory.write(at: gpa, from: UnsafeRawBufferPointer(start: buf, count: len)) }
            catch { return HV_EFAULT }
            return HV_OK
        }
        t.mem_map = { host, gpa, len, writable in
            guard let d = PluginDevice.from(host), len > 0, isGuestRange(gpa, len),
                  let p = d.context.memory.pointer(at: gpa, length: len) else { return nil }
            if writable != 0 { d.context.memory.markDirty(gpa: gpa, length: len) }
            return p
        }

        // Time
        t.clock_ns = { host in PluginDevice.from(host)?.context.clock.now() ?? 0 }
        t.timer_create = { host, callback, opaque in
            guard let d = PluginDevice.from(host), let callback, !d.destroyed else { return nil }
            let timer = PluginTimer(device: d, callback: callback, opaque: opaque)
            d.resources.withLock { d.timers.append(timer) }
            return timer.handle
        }
        t.timer_arm = { host, timer, deadline in
            guard let d = PluginDevice.from(host), let t = d.timer(timer) else { return }
            t.arm(at: deadline)
        }
        t.timer_cancel = { host, timer in
            guard let d = PluginDevice.from(host), let t = d.timer(timer) else { return }
            t.cancel()
        }

        // Saved state
        t.state_put = { writer, name, type, data, len in
            guard let w = StateWriter.handles.lookup(writer), let name, let data else { return HV_EINVAL }
            guard let fixed = DeviceStateSection.fixedLength(of: type), len >= 0 else { return HV_EINVAL }
            if let n = fixed, n != len { return HV_EINVAL }
            guard len <= 16 << 20 else { return HV_ERANGE }
            let bytes = Array(UnsafeRawBufferPointer(start: data, count: len))
            w.section.fields[String(cString: name)] = .init(type: type, bytes: bytes)
            return HV_OK
        }
        t.state_get = { reader, name, type, data, len in
            guard let r = StateReader.handles.lookup(reader), let name, let data else { return HV_EINVAL }
            guard let field = r.section.fields[String(cString: name)] else { return HV_ENOENT }
            guard field.type == type, field.bytes.count == len else { return HV_EINVAL }
            field.bytes.withUnsafeBytes { data.copyMemory(from: $0.baseAddress!, byteCount: len) }
            return HV_OK
        }

        installBackendServices(&t)
        t.get_extension = { host, id in
            guard let d = PluginDevice.from(host), let id else { return nil }
            return PluginExtensions.lookup(String(cString: id), for: d)
        }
        return t
    }
}

/// Whether `len` bytes at `gpa` form a range at all: a size_t below 2^63 that does not
/// wrap past the top of the guest-physical space.
func isGuestRange(_ gpa: UInt64, _ len: Int) -> Bool {
    len >= 0 && !gpa.addingReportingOverflow(UInt64(len)).overflow
}

extension PluginDevice {
    func timer(_ handle: OpaquePointer?) -> PluginTimer? {
        guard let handle else { return nil }
        return resources.withLock { timers.first { $0.handle == handle } }
    }
}
