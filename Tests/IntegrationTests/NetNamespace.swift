import Foundation
import Glibc
import XCTest

/// A network namespace a test makes, with veth pairs whose host ends become switch uplinks
/// ("physical NICs") and whose far ends sit in the namespace (the "physical network").
/// Names are unique per process and instance; `remove()` deletes the namespace and with
/// it every veth pair (deleting one end of a veth deletes both).
final class NetNamespace {
    let name: String
    private(set) var hostEnds: [String] = []
    private static var counter = 0

    /// Skips the test visibly when `ip netns` is unavailable (not root, no iproute2).
    init() throws {
        Self.counter += 1
        name = "hvu\(getpid() % 100000)n\(Self.counter)"
        guard FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip") || FileManager.default.isExecutableFile(atPath: "/sbin/ip") else {
            throw XCTSkip("no iproute2 (`ip`): network namespace tests need it")
        }
        let r = Self.ip(["netns", "add", name])
        guard r.status == 0 else { throw XCTSkip("`ip netns add` failed (root needed): \(r.stderr)") }
    }

    deinit { remove() }

    /// Makes a veth pair: `hostEnd` stays in the host (up, no address), the far end goes
    /// into the namespace as `farEnd` (up). Returns the host end's name.
    @discardableResult
    func addVeth(_ suffix: String, farEnd: String) throws -> String {
        let host = "\(name)\(suffix)"   // at most 15 bytes
        try run(["link", "add", host, "type", "veth", "peer", "name", "\(host)p"])
        hostEnds.append(host)
        try run(["link", "set", "\(host)p", "netns", name])
        try inside(["link", "set", "\(host)p", "name", farEnd])
        // No IPv6 on the host end: no router solicitations from the host in the captures.
        _ = Self.run("/usr/sbin/sysctl", ["-q", "-w", "net.ipv6.conf.\(host).disable_ipv6=1"])
        try run(["link", "set", host, "up"])
        try inside(["link", "set", farEnd, "up"])
        return host
    }

    /// `ip ARGS` in the host namespace; throws with the output on failure.
    func run(_ args: [String]) throws {
        let r = Self.ip(args)
        if r.status != 0 { throw NSError(domain: "ip \(args.joined(separator: " ")): \(r.stderr)", code: Int(r.status)) }
    }

    /// `ip ARGS` inside the namespace.
    func inside(_ args: [String]) throws { try run(["-n", name] + args) }

    /// A socket made inside the namespace (the calling thread enters it for the call only).
    func socket(_ domain: Int32, _ type: Int32, _ proto: Int32) throws -> Int32 {
        let ns = open("/var/run/netns/\(name)", O_RDONLY | O_CLOEXEC)
        let home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)
        defer { close(ns); close(home) }
        guard ns >= 0, home >= 0, Self.setns(ns, Self.newNet) == 0 else {
            throw NSError(domain: "setns into \(name): \(String(cString: strerror(errno)))", code: 1)
        }
        let fd = Glibc.socket(domain, type, proto)
        let err = errno
        precondition(Self.setns(home, Self.newNet) == 0, "cannot return to the test's network namespace")
        guard fd >= 0 else { throw NSError(domain: "socket in \(name): \(String(cString: strerror(err)))", code: 1) }
        return fd
    }

    /// setns(2) (Glibc declares it only under _GNU_SOURCE, which Swift's Glibc lacks).
    private static let setns: @convention(c) (Int32, Int32) -> Int32 = {
        unsafeBitCast(dlsym(UnsafeMutableRawPointer(bitPattern: 0), "setns")!, to: (@convention(c) (Int32, Int32) -> Int32).self)
    }()
    private static let newNet: Int32 = 0x4000_0000   // CLONE_NEWNET

    func remove() {
        guard !name.isEmpty else { return }
        _ = Self.ip(["netns", "del", name])
        for host in hostEnds { _ = Self.ip(["link", "del", host]) }   // gone already unless it moved back
        hostEnds = []
    }

    private static func ip(_ args: [String]) -> HostHarness.Result {
        run(FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip") ? "/usr/sbin/ip" : "/sbin/ip", args)
    }

    private static func run(_ tool: String, _ args: [String]) -> HostHarness.Result {
        HostHarness.run(tool, args, timeout: 30)
    }
}

/// ICMP echo from a raw socket (made inside a namespace): the "host-side ping".
enum ICMPEcho {
    /// Sends echo requests to `address` every 200 ms until `count` distinct replies came
    /// back or `timeout` passed; returns the replies seen.
    static func ping(_ fd: Int32, _ address: String, count: Int, timeout: TimeInterval) -> Int {
        var to = sockaddr_in()
        to.sin_family = sa_family_t(AF_INET)
        to.sin_addr.s_addr = inet_addr(address)
        let id = UInt16(truncatingIfNeeded: getpid())
        var answered = Set<UInt16>()
        var seq: UInt16 = 0
        let deadline = Date().addingTimeInterval(timeout)
        while answered.count < count && Date() < deadline {
            seq &+= 1
            var packet = [UInt8](repeating: 0, count: 64)
            packet[0] = 8
            packet[4] = UInt8(id >> 8); packet[5] = UInt8(id & 0xFF)
            packet[6] = UInt8(seq >> 8); packet[7] = UInt8(seq & 0xFF)
            for i in 8..<64 { packet[i] = UInt8(truncatingIfNeeded: i) }
            let sum = checksum(packet)
            packet[2] = UInt8(sum >> 8); packet[3] = UInt8(sum & 0xFF)
            _ = withUnsafePointer(to: &to) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, packet, packet.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            let slice = Date().addingTimeInterval(0.2)
            var buffer = [UInt8](repeating: 0, count: 2048)
            while Date() < slice {
                var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard poll(&p, 1, 50) > 0 else { continue }
                let n = recv(fd, &buffer, buffer.count, 0)
                guard n >= 28 else { continue }
                let ihl = Int(buffer[0] & 0x0F) * 4
                guard n >= ihl + 8, buffer[ihl] == 0,
                      UInt16(buffer[ihl + 4]) << 8 | UInt16(buffer[ihl + 5]) == id else { continue }
                answered.insert(UInt16(buffer[ihl + 6]) << 8 | UInt16(buffer[ihl + 7]))
            }
        }
        return answered.count
    }

    static func checksum(_ data: [UInt8]) -> UInt16 {
        var sum: UInt32 = 0
        for i in stride(from: 0, to: data.count - 1, by: 2) { sum += UInt32(data[i]) << 8 | UInt32(data[i + 1]) }
        if data.count % 2 == 1 { sum += UInt32(data[data.count - 1]) << 8 }
        while sum >> 16 != 0 { sum = (sum & 0xFFFF) + (sum >> 16) }
        return ~UInt16(sum)
    }
}

/// Frames seen on one interface inside a namespace (an AF_PACKET socket, all protocols).
final class FrameCapture {
    private let fd: Int32
    /// The capture socket (for per-frame ioctls such as the receive timestamp).
    var descriptor: Int32 { fd }
    let interface: String

    init(_ ns: NetNamespace, interface: String) throws {
        self.interface = interface
        fd = try ns.socket(AF_PACKET, Int32(SOCK_RAW.rawValue), Int32(UInt16(0x0003).bigEndian))   // ETH_P_ALL
        let index = try ns.interfaceIndex(interface)
        var address = [UInt8](repeating: 0, count: 20)   // struct sockaddr_ll
        address[0] = UInt8(AF_PACKET & 0xFF); address[1] = UInt8(AF_PACKET >> 8)
        address[2] = 0x00; address[3] = 0x03
        withUnsafeBytes(of: index) { for i in 0..<4 { address[4 + i] = $0[i] } }
        let rc = address.withUnsafeBytes { raw in
            raw.baseAddress!.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, 20) }
        }
        guard rc == 0 else { throw NSError(domain: "bind capture to \(interface): \(String(cString: strerror(errno)))", code: 1) }
        var on: Int32 = 1
        setsockopt(fd, 263, 8, &on, 4)   // SOL_PACKET, PACKET_AUXDATA
    }

    deinit { close(fd) }

    /// The next frame (from the wire or sent by the namespace) matching `match`, or nil
    /// after `timeout`. A VLAN tag the kernel took off is put back in (PACKET_AUXDATA), so
    /// frames read as they were on the wire.
    func next(timeout: TimeInterval, where match: ([UInt8]) -> Bool) -> [UInt8]? {
        let deadline = Date().addingTimeInterval(timeout)
        var buffer = [UInt8](repeating: 0, count: 2048)
        var control = [UInt8](repeating: 0, count: 128)
        while Date() < deadline {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 20) > 0 else { continue }
            var tci: UInt16?
            let n = buffer.withUnsafeMutableBytes { data in
                control.withUnsafeMutableBytes { cbuf in
                    var iov = iovec(iov_base: data.baseAddress, iov_len: data.count)
                    return withUnsafeMutablePointer(to: &iov) { iovp in
                        var m = msghdr()
                        m.msg_iov = iovp
                        m.msg_iovlen = 1
                        m.msg_control = cbuf.baseAddress
                        m.msg_controllen = cbuf.count
                        let n = recvmsg(fd, &m, 0)
                        // One cmsghdr (16 bytes) of SOL_PACKET/PACKET_AUXDATA: tp_status at 16,
                        // tp_vlan_tci at 32 (struct tpacket_auxdata).
                        if n > 0, m.msg_controllen >= 40, cbuf.load(fromByteOffset: 8, as: Int32.self) == 263,
                           cbuf.load(fromByteOffset: 12, as: Int32.self) == 8,
                           cbuf.load(fromByteOffset: 16, as: UInt32.self) & 0x10 != 0 {
                            tci = cbuf.load(fromByteOffset: 32, as: UInt16.self)
                        }
                        return n
                    }
                }
            }
            guard n >= 14 else { continue }
            var frame = Array(buffer[0..<n])
            if let tci { frame.insert(contentsOf: [0x81, 0x00, UInt8(tci >> 8), UInt8(tci & 0xFF)], at: 12) }
            if match(frame) { return frame }
        }
        return nil
    }

    /// Sends one frame out of the interface.
    func send(_ frame: [UInt8]) { _ = Glibc.send(fd, frame, frame.count, 0) }

    /// A broadcast ARP who-has `target` tell 10.9.0.1 from 02:00:00:00:00:01, tagged with `vlan`.
    static func arpRequest(vlan: UInt16, target: [UInt8]) -> [UInt8] {
        let me: [UInt8] = [2, 0, 0, 0, 0, 1]
        var f = [UInt8](repeating: 0xFF, count: 6) + me + [0x81, 0x00, UInt8(vlan >> 8), UInt8(vlan & 0xFF), 0x08, 0x06]
        f += [0, 1, 8, 0, 6, 4, 0, 1] + me + [10, 9, 0, 1] + [0, 0, 0, 0, 0, 0] + target
        return f + [UInt8](repeating: 0, count: max(0, 64 - f.count))
    }

    /// An ARP reply tagged with `vlan` (any tag, or none, when nil).
    static func isARPReply(_ f: [UInt8], vlan: UInt16?) -> Bool {
        let tagged = f.count >= 18 && etherType(f) == 0x8100
        let l3 = tagged ? 18 : 14
        guard f.count >= l3 + 8, UInt16(f[l3 - 2]) << 8 | UInt16(f[l3 - 1]) == 0x0806, f[l3 + 7] == 2 else { return false }
        guard let vlan else { return true }
        return tagged && (UInt16(f[14]) << 8 | UInt16(f[15])) & 0x0FFF == vlan
    }

    static func etherType(_ f: [UInt8]) -> UInt16 { UInt16(f[12]) << 8 | UInt16(f[13]) }
    static func source(_ f: [UInt8]) -> String { f[6..<12].map { String(format: "%02x", $0) }.joined(separator: ":") }
    /// The IPv4 source address of an untagged IPv4 frame ("" otherwise).
    static func ipSource(_ f: [UInt8]) -> String {
        guard f.count >= 34, etherType(f) == 0x0800 else { return "" }
        return f[26..<30].map(String.init).joined(separator: ".")
    }
}

extension NetNamespace {
    /// An interface's index inside the namespace.
    func interfaceIndex(_ interface: String) throws -> Int32 {
        let r = HostHarness.run("/usr/sbin/ip", ["-n", name, "-o", "link", "show", interface], timeout: 30)
        guard r.status == 0, let colon = r.stdout.firstIndex(of: ":"), let index = Int32(r.stdout[..<colon]) else {
            throw NSError(domain: "no interface \(interface) in \(name): \(r.stderr)", code: 1)
        }
        return index
    }
}
