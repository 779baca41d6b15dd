/// A device region on the port-I/O or the MMIO bus, addressed as hardware addresses
/// it: an offset from the region's base and the bytes of the access (1, 2, 4 or 8;
/// a string I/O instruction is one access per element). The bus clips an access that
/// runs past the region's end, so `offset + data.count` never exceeds the region.
/// Calls arrive on the vCPU thread that made the access; the device serialises its
/// own state.
package protocol BusDevice: AnyObject {
    /// Fills `data` with the bytes at `offset`, little-endian.
    func read(offset: UInt64, data: UnsafeMutableRawBufferPointer)
    func write(offset: UInt64, data: UnsafeRawBufferPointer)
}

extension UnsafeRawBufferPointer {
    /// The access as a little-endian integer (at most 8 bytes are read).
    package var littleEndianValue: UInt64 {
        var v: UInt64 = 0
        for i in 0..<Swift.min(count, 8) { v |= UInt64(self[i]) << (8 * UInt64(i)) }
        return v
    }
}

extension UnsafeMutableRawBufferPointer {
    /// Stores the low `count` bytes of `value`, little-endian.
    package func storeLittleEndian(_ value: UInt64) {
        for i in 0..<Swift.min(count, 8) { self[i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
        for i in Swift.min(count, 8)..<count { self[i] = 0 }
    }
}
