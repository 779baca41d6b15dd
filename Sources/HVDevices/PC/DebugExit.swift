/// QEMU `isa-debug-exit` compatible result port (iobase 0x501, iosize 2): a write of
/// value `v` asks the VMM to stop the VM with exit status `(v << 1) | 1`. Reads return 0.
package final class DebugExit {
    static let defaultBase: UInt16 = 0x501
    static let size: UInt16 = 2

    /// Receives the value written (low byte: exit statuses are 8 bits wide).
    var exit: (UInt8) -> Void = { _ in }

    init() {}

    /// A write of any width: its low byte is the value.
    func write(_ value: UInt8) { exit(value) }

    /// The process exit status QEMU reports for a written value.
    static func exitStatus(for value: UInt8) -> Int32 { (Int32(value) << 1) | 1 }
}
