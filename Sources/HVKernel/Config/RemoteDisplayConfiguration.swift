import Glibc

/// The VM's VNC server, from ESX's `RemoteDisplay.vnc.*` keys: `enabled` (default
/// FALSE), `port` (default 5900; 0 picks a free one), `ip` (an IPv4 address, default
/// 127.0.0.1: loopback unless the operator says otherwise) and `password` (VNC
/// authentication; 1-8 characters, as only 8 count; none: no authentication).
package struct RemoteDisplayConfiguration: Equatable, Sendable {
    package static let defaultPort = 5900
    package static let defaultAddress = "127.0.0.1"

    package var enabled = false
    package var port = RemoteDisplayConfiguration.defaultPort
    package var address = RemoteDisplayConfiguration.defaultAddress
    package var password: String?

    package init() {}

    static func isIPv4(_ s: String) -> Bool {
        var a = in_addr()
        return inet_pton(AF_INET, s, &a) == 1
    }
}
