import Glibc

/// A failed KVM ioctl or system call, with the operator-facing explanation.
package struct KVMError: Error, CustomStringConvertible {
    let call: String
    let errno: Int32
    let hint: String?

    package init(call: String, errno: Int32, hint: String? = nil) {
        self.call = call
        self.errno = errno
        self.hint = hint
    }

    package var description: String {
        var s = "\(call) failed: \(String(cString: strerror(errno))) (errno \(errno))"
        if let hint { s += "; \(hint)" }
        return s
    }
}
