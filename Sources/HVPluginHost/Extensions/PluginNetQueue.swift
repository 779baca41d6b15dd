import HVHostIO
import PluginABI

/// "hv.net-queue/1": frames gathered from guest memory, and receive back-pressure.
extension PluginExtensions {
    static func netQueueTable() -> hv_net_queue_ext {
        var t = hv_net_queue_ext()
        t.struct_size = UInt32(MemoryLayout<hv_net_queue_ext>.size)
        t.send_guest = { port, segments, count, padTo in
            guard let p = PluginNetPort.from(port), let segments else { return HV_EINVAL }
            return p.sendGuest(UnsafeBufferPointer(start: segments, count: Int(count)),
                                                      padTo: Int(padTo))
        }
        t.rx_backpressure = { port, enable in
            guard let p = PluginNetPort.from(port) else { return HV_EINVAL }
            p.port.holdsFramesWhenFull = enable != 0
            return HV_OK
        }
        t.rx_ready = { port in
            guard let p = PluginNetPort.from(port) else { return }
            p.port.receiveReady()
        }
        return t
    }
}

extension PluginNetPort {
    /// Validates a guest scatter list and sends it: the switch copies the bytes from guest
    /// memory straight into the receiving queues. The host pointers live on the stack.
    func sendGuest(_ segments: UnsafeBufferPointer<hv_net_segment>, padTo: Int) -> Int32 {
        guard (1...Int(HV_NET_MAX_SEGMENTS)).contains(segments.count), padTo <= Ethernet.maximumFrameLength else {
            return HV_EINVAL
        }
        return withUnsafeTemporaryAllocation(of: UnsafeRawBufferPointer.self, capacity: segments.count) { buffers in
            var total = 0
            for (i, s) in segments.enumerated() {
                guard s.len > 0, s.reserved == 0 else { return HV_EINVAL }
                total += Int(s.len)
                guard total <= Ethernet.maximumFrameLength else { return HV_EINVAL }
                guard let p = memory.pointer(at: s.gpa, length: Int(s.len)) else { return HV_EFAULT }
                buffers.initializeElement(at: i, to: UnsafeRawBufferPointer(start: p, count: Int(s.len)))
            }
            switch port.send(FrameSegments(UnsafeBufferPointer(buffers), padTo: padTo)) {
            case .sent: return HV_OK
            case .invalidLength: return HV_EINVAL
            case .linkDown: return HV_EAGAIN
            }
        }
    }
}
