/// A vCPU's architectural state as its backend saves it for suspend and restore.
/// Register files are kept in the backend's own layout under a name ("regs", "sregs",
/// ...); `backend` says whose layout it is, and a backend refuses any other's.
public struct VCPUState: Equatable, Sendable {
    public struct MSR: Equatable, Sendable {
        public var index: UInt32
        public var value: UInt64
        public init(index: UInt32, value: UInt64) {
            self.index = index
            self.value = value
        }
    }

    public var backend: String
    public var registers: [String: [UInt8]]
    public var msrs: [MSR]

    public init(backend: String, registers: [String: [UInt8]] = [:], msrs: [MSR] = []) {
        self.backend = backend
        self.registers = registers
        self.msrs = msrs
    }
}

/// Why a saved vCPU state does not fit this backend.
public struct VCPUStateError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
