import Glibc

/// Where a migration goes or is received: `tcp:HOST:PORT`, HOST an IPv4 address or
/// `localhost`. Only loopback addresses unless the operator allows others: the stream
/// carries the guest's memory in the clear.
package struct MigrationAddress: CustomStringConvertible, Sendable {
    package let host: String
    package let port: UInt16
    let ipv4: in_addr

    package init(_ text: String, allowRemote: Bool = false) throws {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == "tcp", let port = UInt16(parts[2]) else {
            throw MigrationError("'\(text)' is not a migration address: expected tcp:HOST:PORT (e.g. tcp:127.0.0.1:8000)")
        }
        let host = parts[1] == "localhost" ? "127.0.0.1" : String(parts[1])
        var a = in_addr()
        guard inet_pton(AF_INET, host, &a) == 1 else {
            throw MigrationError("'\(text)': \(parts[1]) is not an IPv4 address")
        }
        let first = UInt8(truncatingIfNeeded: UInt32(bigEndian: a.s_addr) >> 24)
        guard allowRemote || first == 127 else {
            throw MigrationError("'\(text)': \(host) is not a loopback address; migration is loopback-only unless --migration-allow-remote is given")
        }
        self.host = host
        self.port = port
        self.ipv4 = a
    }

    package var description: String { "tcp:\(host):\(port)" }

    var socketAddress: sockaddr_in {
        var s = sockaddr_in()
        s.sin_family = sa_family_t(AF_INET)
        s.sin_port = port.bigEndian
        s.sin_addr = ipv4
        return s
    }
}
