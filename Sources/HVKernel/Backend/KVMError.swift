import Glibc

/// A failed KVM ioctl or system call, with the operator-facing explanation.
public struct KVMError: Error, CustomStringConvertible {
    public let call: String
    public let errno: Int32
    public let hint: String?

    public init(call: String, errno: Int32, hint: String? = nil) {
        self.call = call
        self.errno = errno
        self.hint = hint
    }

    public var description: String {
        var s = "\(call) failed: \(String(cString: strerror(errno))) (errno \(errno))"
        if let hint { s += "; \(hint)" }
        return s
    }
}
