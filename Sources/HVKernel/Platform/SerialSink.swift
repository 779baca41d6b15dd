/// Where a virtual UART's bytes go, and where its input comes from.
///
/// The operator picks one per serial port: ``TerminalSerialSink`` (stdout, optionally
/// stdin), ``FileSerialSink`` (append to a file), ``UnixSocketSerialSink`` (the VMM
/// listens on a path; one client at a time). ``CaptureSerialSink`` keeps output in memory
/// for tests. The `.vmx` key `hv.serial` chooses (see `SerialSetting`).
///
/// Thread contract: ``transmit(_:)`` is called on a vCPU or timer thread **with the
/// chipset lock held**: it must never block for long (drop rather than wait) and must not
/// call back into the chipset. The receiver passed to ``startInput(_:)`` is called on the
/// sink's own thread; it returns how many of the bytes the guest side accepted, and the
/// sink offers the rest again later (input is flow-controlled, never lost by the model).
public protocol SerialSink: AnyObject, Sendable {
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
    public func startInput(_ receiver: @escaping @Sendable ([UInt8]) -> Int) {}
    public func flush() {}
}

/// Errors from creating serial sinks.
public enum SerialSinkError: Error, CustomStringConvertible, Equatable {
    case cannotOpen(path: String, errno: Int32)
    case pathTooLong(String)
    case notASocket(String)
    case socketFailed(path: String, operation: String, errno: Int32)

    public var description: String {
        switch self {
        case let .cannotOpen(path, e):
            return "cannot open serial output file '\(path)': \(SerialSinkSupport.errnoText(e))"
        case let .pathTooLong(path):
            return "Unix socket path '\(path)' is longer than 107 bytes; choose a shorter path"
        case let .notASocket(path):
            return "'\(path)' exists and is not a socket; remove it or choose another path"
        case let .socketFailed(path, op, e):
            return "cannot listen on Unix socket '\(path)': \(op) failed: \(SerialSinkSupport.errnoText(e))"
        }
    }
}
