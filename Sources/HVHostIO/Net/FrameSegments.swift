/// One Ethernet frame as a NIC hands it to its port: host buffers gathered in order, then
/// zeros up to `padTo` bytes. The switch copies it straight into each receiving port's
/// queue, so a frame gathered from guest memory is copied once on its way in.
/// The buffers are read only during `VirtualPort.send(_:)`.
package struct FrameSegments {
    package let segments: UnsafeBufferPointer<UnsafeRawBufferPointer>
    /// Bytes in `segments`.
    let dataLength: Int
    /// The frame's length: the data, or `padTo` when that is longer.
    let length: Int

    package init(_ segments: UnsafeBufferPointer<UnsafeRawBufferPointer>, padTo: Int = 0) {
        self.segments = segments
        var total = 0
        for s in segments { total &+= s.count }
        dataLength = total
        length = max(total, padTo)
    }

    /// Copies the whole frame (data and padding) to `destination`, which has room for `length` bytes.
    func copy(to destination: UnsafeMutableRawPointer) {
        var at = 0
        for s in segments where s.count > 0 {
            (destination + at).copyMemory(from: s.baseAddress!, byteCount: s.count)
            at += s.count
        }
        if length > at { (destination + at).initializeMemory(as: UInt8.self, repeating: 0, count: length - at) }
    }

    /// Destination and source MAC of a frame in one buffer (at least 12 bytes).
    static func addresses(of frame: UnsafeRawBufferPointer) -> (destination: UInt64, source: UInt64) {
        (Ethernet.destination(of: frame), Ethernet.source(of: frame))
    }

    /// Destination and source MAC (bytes 0-11, padding reads as zeros).
    func addresses() -> (destination: UInt64, source: UInt64) {
        var header = (UInt64(0), UInt64(0))
        return withUnsafeMutableBytes(of: &header) { h in
            var at = 0
            for s in segments where at < 12 && s.count > 0 {
                let n = min(s.count, 12 - at)
                (h.baseAddress! + at).copyMemory(from: s.baseAddress!, byteCount: n)
                at += n
            }
            let bytes = UnsafeRawBufferPointer(h)
            return (Ethernet.destination(of: bytes), Ethernet.source(of: bytes))
        }
    }
}
