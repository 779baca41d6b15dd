import HVHostIO
import PluginABI

/// "hv.net-offload/1": transmit offloads the VMkernel does for receivers that need them.
extension PluginExtensions {
    static func netOffloadTable() -> hv_net_offload_ext {
        var t = hv_net_offload_ext()
        t.struct_size = UInt32(MemoryLayout<hv_net_offload_ext>.size)
        t.send_offload = { port, frame, len, offload in
            guard let p = PluginNetPort.from(port), let frame, let offload,
                  offload.pointee.struct_size >= UInt32(MemoryLayout<hv_net_offload>.size),
                  (14...Ethernet.maximumFrameLength).contains(len) else { return HV_EINVAL }
            let o = offload.pointee
            let request = FrameOffload(flags: o.flags, checksumStart: Int(o.csum_start), checksumOffset: Int(o.csum_offset),
                                       headerLength: Int(o.hdr_len), mss: Int(o.mss))
            guard request.isValid(for: UnsafeRawBufferPointer(start: frame, count: len)) else { return HV_EINVAL }
            // The host works on its own copy: the plugin's frame is const.
            return withUnsafeTemporaryAllocation(byteCount: len, alignment: 16) { copy in
                copy.copyMemory(from: UnsafeRawBufferPointer(start: frame, count: len))
                switch p.port.send(copy, offload: request) {
                case .sent: return HV_OK
                case .invalidLength: return HV_EINVAL
                case .linkDown: return HV_EAGAIN
                }
            }
        }
        t.set_rx_large = { port, large in
            guard let p = PluginNetPort.from(port) else { return HV_EINVAL }
            p.port.takesLargeFrames = large != 0
            return HV_OK
        }
        return t
    }
}
