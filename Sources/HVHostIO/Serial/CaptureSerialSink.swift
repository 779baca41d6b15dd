import Glibc
import HVSupport

/// Keeps guest output in memory (up to `capacity` bytes; later bytes are dropped) and
/// lets a test type into the guest. For tests and tools, not for operators.
final class CaptureSerialSink: SerialSink, Sendable {
    private struct State {
        var output: [UInt8] = []
        var receiver: (@Sendable ([UInt8]) -> Int)?
    }
    private let state = HostLocked(State())
    let capacity: Int

    init(capacity: Int = 1 << 20) { self.capacity = capacity }

    func transmit(_ byte: UInt8) {
        state.withLock { s in if s.output.count < capacity { s.output.append(byte) } }
    }

    func startInput(_ receiver: @escaping @Sendable ([UInt8]) -> Int) {
        state.withLock { $0.receiver = receiver }
    }

    func close() {}

    /// Everything the guest sent so far.
    var output: [UInt8] { state.withLock { $0.output } }
    /// The output decoded as UTF-8 (invalid sequences replaced).
    var text: String { String(decoding: output, as: UTF8.self) }

    /// Offers `bytes` to the guest; returns how many it accepted (0 before a UART is attached).
    @discardableResult
    func feed(_ bytes: [UInt8]) -> Int {
        guard let r = state.withLock({ $0.receiver }) else { return 0 }
        return r(bytes)
    }

    /// Polls until the output contains `needle` or `seconds` pass.
    func wait(for needle: String, timeout seconds: Double) -> Bool {
        let deadline = VMClock.hostNanoseconds() &+ UInt64(max(0, seconds) * 1e9)
        while true {
            if text.contains(needle) { return true }
            if VMClock.hostNanoseconds() >= deadline { return false }
            usleep(1000)
        }
    }
}
