/// The operator's textual choice of serial sink (e.g. a `.vmx` value or a CLI flag):
/// `none`, `stdio` (stdout + stdin), `stdio-output` (stdout only), `file:<path>`,
/// `unix:<path>`.
public enum SerialSinkSpec: Equatable, Sendable, CustomStringConvertible {
    case none
    case terminal(input: Bool)
    case file(path: String)
    case unixSocket(path: String)

    public init(parsing text: String) throws {
        switch text {
        case "none", "null": self = .none
        case "stdio": self = .terminal(input: true)
        case "stdio-output": self = .terminal(input: false)
        default:
            if text.hasPrefix("file:"), text.count > 5 {
                self = .file(path: String(text.dropFirst(5)))
            } else if text.hasPrefix("unix:"), text.count > 5 {
                self = .unixSocket(path: String(text.dropFirst(5)))
            } else {
                throw SerialSinkError.invalidSpec(text)
            }
        }
    }

    public var description: String {
        switch self {
        case .none: return "none"
        case .terminal(let input): return input ? "stdio" : "stdio-output"
        case .file(let path): return "file:\(path)"
        case .unixSocket(let path): return "unix:\(path)"
        }
    }

    /// Opens the sink (nil for `none`).
    public func makeSink() throws -> (any SerialSink)? {
        switch self {
        case .none: return nil
        case .terminal(let input): return TerminalSerialSink(input: input)
        case .file(let path): return try FileSerialSink(path: path)
        case .unixSocket(let path): return try UnixSocketSerialSink(path: path)
        }
    }
}
