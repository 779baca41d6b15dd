/// A VM that cannot be built or powered on for a reason of the host's own (not a
/// plugin's, not a configuration parse error): a name already in use, an unsupported
/// disk mode.
public struct VMError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
