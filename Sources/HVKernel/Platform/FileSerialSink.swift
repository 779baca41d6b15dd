import Glibc

/// Guest output appended to a file (created with mode 0644 if missing). Writes go
/// through a 64 KiB buffer drained by a helper thread; overflow is dropped.
public final class FileSerialSink: SerialSink, @unchecked Sendable {
    public let path: String
    private let fd: Int32
    private let output: OutputPump

    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw SerialSinkError.cannotOpen(path: path, errno: errno) }
        self.fd = fd
        output = OutputPump(fd: fd, name: "serial-file")
    }

    deinit {
        output.stop()
        Glibc.close(fd)
    }

    public func transmit(_ byte: UInt8) { output.enqueue(byte) }
    public func flush() { output.flush() }
    /// Writes what is buffered; the descriptor closes when the sink is released.
    public func close() { output.stop() }
}
