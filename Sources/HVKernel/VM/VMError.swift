/// A VM that cannot be built or powered on for a reason of the host's own (not a
/// plugin's, not a configuration parse error): a name already in use, an unsupported
/// disk mode.
package struct VMError: Error, CustomStringConvertible {
    let message: String
    package init(_ message: String) { self.message = message }
    package var description: String { message }
}
