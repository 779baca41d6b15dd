import Glibc
import HVDevices
import HVMemory
import HVSupport
import PluginABI

/// "hv.ram-bar/1", "hv.msix/1" and "hv.doorbell/1": PCI resources the host decodes or
/// maps itself. Each entry checks what the plugin passed and turns the PCI layer's
/// refusals into result codes, logging why.
extension PluginExtensions {
    static func ramBARTable() -> hv_ram_bar_ext {
        var t = hv_ram_bar_ext()
        t.struct_size = UInt32(MemoryLayout<hv_ram_bar_ext>.size)
        t.ram_bar_add = { host, desc, hostPointer in
            guard let d = PluginDevice.from(host), let desc, let hostPointer else { return HV_EINVAL }
            guard d.creating else { return HV_EPERM }
            guard let f = d.function else { return HV_EINVAL }
            let b = desc.pointee
            guard b.struct_size >= UInt32(MemoryLayout<hv_ram_bar_desc>.size) else { return HV_EINVAL }
            let kind: PCIBARDescription.Kind
            switch b.kind {
            case HV_BAR_MMIO32: kind = .memory32
            case HV_BAR_MMIO64: kind = .memory64
            default: return d.refuse(PCIDeclarationError(.invalid, "\(f.name): RAM BAR\(b.index): kind \(b.kind) is not HV_BAR_MMIO32 or HV_BAR_MMIO64"))
            }
            guard b.size >= UInt64(HV_RAM_BAR_PAGE_SIZE), b.size & (b.size - 1) == 0, b.size <= 1 << 32 else {
                return d.refuse(PCIDeclarationError(.invalid, "\(f.name): RAM BAR\(b.index): size \(b.size) must be a power of two of 4 KiB...4 GiB"))
            }
            do {
                let memory = try SharedMemoryRegion(size: b.size, name: "\(d.context.vmName)-\(d.context.prefix)-bar\(b.index)")
                let ram = PCIRAMBAR(memory: memory)
                ram.onBackendError = { [weak d] why in d?.logBackend("RAM BAR\(b.index): \(why)") }
                try f.addRAMBAR(PCIBARDescription(index: Int(b.index), kind: kind, size: b.size,
                                                  prefetchable: b.flags & HV_BAR_PREFETCHABLE != 0), ram: ram)
                hostPointer.pointee = memory.base
            } catch let e as GuestMemoryError {
                d.context.logger.error("\(d.context.prefix) (\(d.modelName)): RAM BAR\(b.index): \(e)")
                return HV_ENOMEM
            } catch { return d.refuse(error) }
            return HV_OK
        }
        t.ram_bar_dirty = { host, bar, bitmap, words in
            guard let d = PluginDevice.from(host), let bitmap, bar < 6,
                  let ram = d.function?.barDevices[Int(bar)] as? PCIRAMBAR else { return HV_EINVAL }
            guard words >= (ram.pageCount + 63) / 64 else { return HV_ERANGE }
            let pages = ram.takeDirtyPages()
            var count: Int32 = 0
            for (i, word) in pages.enumerated() {
                bitmap[i] = word
                count += Int32(word.nonzeroBitCount)
            }
            return count
        }
        return t
    }

    static func msixTable() -> hv_msix_ext {
        var t = hv_msix_ext()
        t.struct_size = UInt32(MemoryLayout<hv_msix_ext>.size)
        t.msix_add = { host, desc in
            guard let d = PluginDevice.from(host), let desc else { return HV_EINVAL }
            guard d.creating else { return HV_EPERM }
            guard let f = d.function else { return HV_EINVAL }
            let x = desc.pointee
            guard x.struct_size >= UInt32(MemoryLayout<hv_msix_desc>.size), x.bar < 6 else { return HV_EINVAL }
            do {
                try f.addMSIX(vectors: Int(x.vectors), bar: Int(x.bar), tableOffset: UInt64(x.table_offset),
                              pbaOffset: UInt64(x.pba_offset))
            } catch { return d.refuse(error) }
            return HV_OK
        }
        t.msix_notify = { host, vector in
            guard let d = PluginDevice.from(host), let f = d.function else { return HV_EINVAL }
            return PluginHostServices.code(d.context.pci.sendMSIX(f, vector: Int(vector)))
        }
        return t
    }

    static func doorbellTable() -> hv_doorbell_ext {
        var t = hv_doorbell_ext()
        t.struct_size = UInt32(MemoryLayout<hv_doorbell_ext>.size)
        t.doorbell_add = { host, desc in
            guard let d = PluginDevice.from(host), let desc else { return HV_EINVAL }
            guard d.creating else { return HV_EPERM }
            guard let f = d.function else { return HV_EINVAL }
            let b = desc.pointee
            guard b.struct_size >= UInt32(MemoryLayout<hv_doorbell_desc>.size), let ring = b.ring, b.bar < 6 else {
                return HV_EINVAL
            }
            do {
                let doorbells = try d.doorbellThread()
                let doorbell = PCIDoorbell(bar: Int(b.bar), offset: b.offset, size: Int(b.size),
                                           datamatch: b.flags & HV_DOORBELL_DATAMATCH != 0 ? b.datamatch : nil,
                                           event: try EventFD())
                try f.addDoorbell(doorbell)
                doorbells.add(doorbell, ring: ring, opaque: b.opaque)
            } catch let e as HostCallError {
                d.context.logger.error("\(d.context.prefix) (\(d.modelName)): doorbell: \(e)")
                return HV_ENOMEM
            } catch { return d.refuse(error) }
            return HV_OK
        }
        return t
    }
}

extension PluginHostServices {
    static func code(_ result: PCIHostBridge.MSIResult) -> Int32 {
        switch result {
        case .sent: return HV_OK
        case .notEnabled: return HV_ENOENT
        case .masked: return HV_EAGAIN
        case .outOfRange: return HV_ERANGE
        }
    }
}

extension PluginDevice {
    /// Logs why a declaration was refused (the error names the function) and returns
    /// the plugin's result code.
    func refuse(_ error: Error) -> Int32 {
        context.logger.error("\(context.vmName): \(error)")
        switch error {
        case let e as PCIDeclarationError:
            switch e.kind {
            case .invalid: return HV_EINVAL
            case .duplicate: return HV_EEXIST
            case .full: return HV_ENOSPC
            }
        case PCIError.badBAR(_, _, let reason) where reason.contains("already used"): return HV_EEXIST
        default: return HV_EINVAL
        }
    }

    func logBackend(_ message: String) {
        context.logger.warning("\(context.vmName): \(context.prefix) (\(modelName)): \(message)")
    }

    /// The instance's doorbell thread, made with the first doorbell.
    func doorbellThread() throws -> PluginDoorbells {
        if let t = doorbells { return t }
        let t = try PluginDoorbells(device: self)
        doorbells = t
        return t
    }
}
