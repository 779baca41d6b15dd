/// A chipset model's register block whose registers are single bytes at absolute ports.
protocol PortRegisterBlock: AnyObject {
    func read(port: UInt16) -> UInt8
    func write(port: UInt16, value: UInt8)
}

extension PIC8259: PortRegisterBlock {}
extension PIT8254: PortRegisterBlock {}
extension RTCCMOS: PortRegisterBlock {}
extension I8042: PortRegisterBlock {}
extension UART16550: PortRegisterBlock {
    func read(port: UInt16) -> UInt8 { read(offset: port &- base) }
    func write(port: UInt16, value: UInt8) { write(offset: port &- base, value: value) }
}

/// One chipset model's region on a bus. Every access runs under the chipset lock, so
/// the interrupts and callbacks a model raises are delivered after it is released.
final class ChipsetRegion: BusDevice {
    unowned let chipset: Chipset
    private let onRead: (UInt64, UnsafeMutableRawBufferPointer) -> Void
    private let onWrite: (UInt64, UnsafeRawBufferPointer) -> Void

    init(chipset: Chipset, read: @escaping (UInt64, UnsafeMutableRawBufferPointer) -> Void,
         write: @escaping (UInt64, UnsafeRawBufferPointer) -> Void) {
        self.chipset = chipset
        onRead = read
        onWrite = write
    }

    /// A region of byte registers at `base`: a wider access reads or writes consecutive
    /// ports, as on the ISA bus.
    static func bytes(_ chipset: Chipset, base: UInt16, _ block: PortRegisterBlock) -> ChipsetRegion {
        ChipsetRegion(chipset: chipset,
                      read: { offset, data in
                          for i in data.indices { data[i] = block.read(port: base &+ UInt16(offset) &+ UInt16(i)) }
                      },
                      write: { offset, data in
                          for i in data.indices { block.write(port: base &+ UInt16(offset) &+ UInt16(i), value: data[i]) }
                      })
    }

    func read(offset: UInt64, data: UnsafeMutableRawBufferPointer) { chipset.access { onRead(offset, data) } }
    func write(offset: UInt64, data: UnsafeRawBufferPointer) { chipset.access { onWrite(offset, data) } }
}
