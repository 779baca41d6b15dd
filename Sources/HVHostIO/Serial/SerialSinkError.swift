/// Errors from creating serial sinks.
enum SerialSinkError: Error, CustomStringConvertible, Equatable {
    case cannotOpen(path: String, errno: Int32)
    case pathTooLong(String)
    case notASocket(String)
    case socketFailed(path: String, operation: String, errno: Int32)

    var description: String {
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
