/// A device region on the port-I/O bus. `offset` is relative to the region's base;
/// `size` is 1, 2 or 4. Handlers run on the vCPU thread that made the access; the
/// region's owner serialises access to its own state.
public protocol PortIOHandler: AnyObject {
    func ioRead(offset: UInt16, size: Int) -> UInt32
    func ioWrite(offset: UInt16, size: Int, value: UInt32)
}

/// A device region on the MMIO bus. `offset` is relative to the region's base;
/// `size` is 1, 2, 4 or 8.
public protocol MMIOHandler: AnyObject {
    func mmioRead(offset: UInt64, size: Int) -> UInt64
    func mmioWrite(offset: UInt64, size: Int, value: UInt64)
}
