import CLinuxNet
import Glibc
import HVSupport
import Synchronization

/// Carrier changes of host interfaces from the kernel's link notifications (an rtnetlink
/// socket in group RTNLGRP_LINK): a cable pulled on a physical NIC, or the far end of a
/// veth set down, arrives as RTM_NEWLINK without IFF_LOWER_UP, within milliseconds and
/// without polling. One monitor per switch with uplinks; its thread calls `changed`.
final class LinkMonitor: @unchecked Sendable {
    private let fd: Int32
    private let stopping = Atomic<Bool>(false)
    private var thread: pthread_t?

    /// The carrier of `interface` now (sysfs; false when unknown).
    static func carrier(of interface: String) -> Bool {
        let f = open("/sys/class/net/\(interface)/carrier", O_RDONLY | O_CLOEXEC)
        guard f >= 0 else { return false }
        defer { close(f) }
        var c: UInt8 = 0
        return read(f, &c, 1) == 1 && c == UInt8(ascii: "1")
    }

    /// Watches the interfaces whose index is a key of `interfaces`; `changed(name, up)` runs
    /// on the monitor's thread for every notification about one of them (the caller
    /// filters repeats).
    init(interfaces: [Int32: String], changed: @escaping @Sendable (String, Bool) -> Void) throws {
        let s = socket(AF_NETLINK, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), NETLINK_ROUTE)
        guard s >= 0 else { throw UplinkError.system("socket(AF_NETLINK)", "link monitor") }
        var address = sockaddr_nl()
        address.nl_family = sa_family_t(AF_NETLINK)
        address.nl_groups = UInt32(RTMGRP_LINK)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, socklen_t(MemoryLayout<sockaddr_nl>.size)) }
        }
        guard bound == 0 else {
            close(s)
            throw UplinkError.system("bind to RTNLGRP_LINK", "link monitor")
        }
        fd = s
        thread = HostThread.spawn(name: "link monitor") { [self] in
            let buffer = UnsafeMutableRawPointer.allocate(byteCount: 16384, alignment: 8)
            defer { buffer.deallocate() }
            while !stopping.load(ordering: .relaxed) {
                var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard poll(&p, 1, 100) > 0 else { continue }
                let n = recv(fd, buffer, 16384, 0)
                guard n > 0 else { continue }
                Self.parse(UnsafeRawBufferPointer(start: buffer, count: n)) { index, up in
                    if let name = interfaces[index] { changed(name, up) }
                }
            }
        }
    }

    /// Walks the netlink messages of one datagram: (interface index, carrier) of each
    /// RTM_NEWLINK. A truncated or malformed message ends the walk.
    private static func parse(_ data: UnsafeRawBufferPointer, _ link: (Int32, Bool) -> Void) {
        let header = MemoryLayout<nlmsghdr>.size, info = MemoryLayout<ifinfomsg>.size
        var at = 0
        while at + header <= data.count {
            let length = Int(data.loadUnaligned(fromByteOffset: at, as: UInt32.self))
            let type = data.loadUnaligned(fromByteOffset: at + 4, as: UInt16.self)
            guard length >= header, at + length <= data.count else { return }
            if type == UInt16(RTM_NEWLINK), length >= header + info {
                let index = data.loadUnaligned(fromByteOffset: at + header + 4, as: Int32.self)
                let flags = data.loadUnaligned(fromByteOffset: at + header + 8, as: UInt32.self)
                link(index, flags & CLN_IFF_LOWER_UP != 0)
            }
            at += (length + 3) & ~3
        }
    }

    func stop() {
        stopping.store(true, ordering: .relaxed)
        if let t = thread { pthread_join(t, nil) }
        thread = nil
        close(fd)
    }
}
