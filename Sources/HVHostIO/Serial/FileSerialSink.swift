import Glibc
import HVSupport

/// Guest output appended to a file (created with mode 0644 if missing). Writes go
/// through a 64 KiB buffer drained by a helper thread; overflow is dropped.
package final class FileSerialSink: SerialSink, @unchecked Sendable {
    package let path: String
    private let fd: Int32
    private let output: OutputPump

    package init(path: String) throws {
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

    package func transmit(_ byte: UInt8) { output.enqueue(byte) }
    package func flush() { output.flush() }
    /// Writes what is buffered; the descriptor closes when the sink is released.
    package func close() { output.stop() }
}
