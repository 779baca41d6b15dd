import Glibc

/// How an uplink reaches the host's network: an AF_PACKET socket bound to an interface
/// (`PacketRingSocket`) or a TAP device (`TAPDevice`).
///
/// Thread contract: `transmit` may be called from any thread (a vNIC's sending thread);
/// `receive` only from the uplink's receive thread; `close` once, after that thread ended.
protocol UplinkTransport: AnyObject, Sendable {
    /// The host interface's name (for a TAP, the device created or attached to).
    var interfaceName: String { get }
    /// Sends one frame gathered from `parts`; false when the host refused it.
    func transmit(_ parts: [UnsafeRawBufferPointer]) -> Bool
    /// Waits up to `timeoutMilliseconds` for frames and hands each to `deliver` with its
    /// VLAN tag when the kernel took the tag off (`nil` for an untagged frame).
    func receive(timeoutMilliseconds: Int32, _ deliver: (UnsafeRawBufferPointer, UInt16?) -> Void)
    func close()
}

/// An uplink could not be opened.
package struct UplinkError: Error, CustomStringConvertible {
    package let description: String
    init(_ description: String) { self.description = description }

    static func system(_ what: String, _ interface: String) -> UplinkError {
        UplinkError("uplink '\(interface)': \(what) failed: \(String(cString: strerror(errno)))")
    }
}

/// Writes `parts` with one `writev`/`sendmsg`-style gather call.
func withIOVecs<R>(_ parts: [UnsafeRawBufferPointer], _ body: (UnsafeMutablePointer<iovec>, Int32) -> R) -> R {
    var vecs = parts.map { iovec(iov_base: UnsafeMutableRawPointer(mutating: $0.baseAddress), iov_len: $0.count) }
    return vecs.withUnsafeMutableBufferPointer { body($0.baseAddress!, Int32($0.count)) }
}
