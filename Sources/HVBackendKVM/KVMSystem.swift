import CKVM
import Glibc

/// `/dev/kvm`: the system-level KVM handle. Wraps KVM_GET_API_VERSION,
/// KVM_GET_VCPU_MMAP_SIZE, KVM_GET_SUPPORTED_CPUID, KVM_CHECK_EXTENSION and KVM_CREATE_VM.
package final class KVMSystem: @unchecked Sendable {
    let fd: Int32
    let runMapSize: Int
    let supportedCPUID: [kvm_cpuid_entry2]

    package init(path: String = "/dev/kvm") throws {
        let fd = open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else {
            let e = errno
            let hint: String
            switch e {
            case ENOENT: hint = "\(path) does not exist: load the kvm module or run on a host with virtualization"
            case EACCES, EPERM: hint = "no permission to open \(path): run as root or join the 'kvm' group"
            default: hint = "cannot use \(path)"
            }
            throw KVMError(call: "open(\(path))", errno: e, hint: hint)
        }
        self.fd = fd
        let version = ioctl(fd, CKVM_GET_API_VERSION)
        guard version == 12 else {
            close(fd)
            throw KVMError(call: "KVM_GET_API_VERSION", errno: EINVAL, hint: "API version \(version), expected 12")
        }
        let size = ioctl(fd, CKVM_GET_VCPU_MMAP_SIZE)
        guard size > 0 else {
            let e = errno; close(fd)
            throw KVMError(call: "KVM_GET_VCPU_MMAP_SIZE", errno: e)
        }
        runMapSize = Int(size)
        var cpuid = ckvm_cpuid()
        cpuid.header.nent = UInt32(CKVM_MAX_CPUID_ENTRIES)
        guard ioctl(fd, CKVM_GET_SUPPORTED_CPUID, &cpuid) == 0 else {
            let e = errno; close(fd)
            throw KVMError(call: "KVM_GET_SUPPORTED_CPUID", errno: e)
        }
        supportedCPUID = withUnsafeBytes(of: &cpuid.entries) { raw in
            Array(raw.bindMemory(to: kvm_cpuid_entry2.self).prefix(Int(cpuid.header.nent)))
        }
    }

    deinit { close(fd) }

    /// KVM_CHECK_EXTENSION: 0 when `capability` is absent, else its value (often 1).
    func checkExtension(_ capability: Int32) -> Int32 {
        max(0, ioctl(fd, CKVM_CHECK_EXTENSION, capability))
    }

    /// KVM_CREATE_VM.
    package func makeVirtualMachine() throws -> KVMVirtualMachine {
        let vmfd = ioctl(fd, CKVM_CREATE_VM, CInt(0))
        guard vmfd >= 0 else { throw KVMError(call: "KVM_CREATE_VM", errno: errno) }
        return try KVMVirtualMachine(system: self, fd: vmfd)
    }
}
