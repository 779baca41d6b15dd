/// Where a virtual UART's bytes go, and where its input comes from.
///
/// The operator picks one per serial port (the `.vmx` key `hv.serial`); the
/// implementations (terminal, file, Unix socket, in-memory capture for tests) live with
/// the host I/O, so a UART and its chipset see only this protocol.
///
/// Thread contract: ``transmit(_:)`` is called on a vCPU or timer thread **with the
/// chipset lock held**: it must never block for long (drop rather than wait) and must not
/// call back into the chipset. The receiver passed to ``startInput(_:)`` is called on the
/// sink's own thread; it returns how many of the bytes the guest side accepted, and the
/// sink offers the rest again later (input is flow-controlled, never lost by the model).
package protocol SerialSink: AnyObject, Sendable {
    /// One byte from the guest.
    func transmit(_ byte: UInt8)
    /// Starts delivering host input to `receiver`. Sinks without input ignore it.
    func startInput(_ receiver: @escaping @Sendable ([UInt8]) -> Int)
    /// Waits until output accepted so far has been handed to the operating system.
    func flush()
    /// Stops the sink's threads and closes its descriptors. Idempotent.
    func close()
}

extension SerialSink {
    package func startInput(_ receiver: @escaping @Sendable ([UInt8]) -> Int) {}
    package func flush() {}
}
