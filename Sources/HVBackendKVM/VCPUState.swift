/// A vCPU's architectural state as its backend saves it for suspend and restore.
/// Register files are kept in the backend's own layout under a name ("regs", "sregs",
/// ...); `backend` says whose layout it is, and a backend refuses any other's.
package struct VCPUState: Equatable, Sendable {
    package struct MSR: Equatable, Sendable {
        package var index: UInt32
        package var value: UInt64
        package init(index: UInt32, value: UInt64) {
            self.index = index
            self.value = value
        }
    }

    package var backend: String
    package var registers: [String: [UInt8]]
    package var msrs: [MSR]

    package init(backend: String, registers: [String: [UInt8]] = [:], msrs: [MSR] = []) {
        self.backend = backend
        self.registers = registers
        self.msrs = msrs
    }
}

/// Why a saved vCPU state does not fit this backend.
struct VCPUStateError: Error, CustomStringConvertible {
    let message: String
    init(_ message: String) { self.message = message }
    var description: String { message }
}
