import CLinuxNet
import Glibc

/// A TAP device as an uplink (`tap:NAME` in a switch spec): created if it does not exist
/// (and then removed with the process), attached if it does. Frames are read and written
/// whole, without the packet-information header (IFF_NO_PI).
final class TAPDevice: UplinkTransport, @unchecked Sendable {
    let interfaceName: String
    private let fd: Int32
    private let buffer = UnsafeMutableRawPointer.allocate(byteCount: 65536, alignment: 16)

    init(name: String) throws {
        guard !name.isEmpty, name.utf8.count < Int(IFNAMSIZ) else {
            throw UplinkError("uplink 'tap:\(name)': a TAP name is 1..\(IFNAMSIZ - 1) bytes")
        }
        let f = open("/dev/net/tun", O_RDWR | O_CLOEXEC)
        guard f >= 0 else { throw UplinkError.system("open /dev/net/tun", "tap:" + name) }
        var request = ifreq()
        withUnsafeMutableBytes(of: &request.ifr_ifrn.ifrn_name) { raw in
            raw.copyBytes(from: name.utf8)
        }
        request.ifr_ifru.ifru_flags = Int16(CLN_IFF_TAP | CLN_IFF_NO_PI)
        guard ioctl(f, CLN_TUNSETIFF, &request) == 0 else {
            let failure = UplinkError.system("TUNSETIFF", "tap:" + name)
            Glibc.close(f)
            throw failure
        }
        interfaceName = name
        fd = f
    }

    deinit { buffer.deallocate() }

    func transmit(_ parts: [UnsafeRawBufferPointer]) -> Bool {
        withIOVecs(parts) { writev(fd, $0, $1) >= 0 }
    }

    func receive(timeoutMilliseconds: Int32, _ deliver: (UnsafeRawBufferPointer, UInt16?) -> Void) {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, timeoutMilliseconds) > 0 else { return }
        // Drain what is there, then return to let the caller check for a stop.
        for _ in 0..<64 {
            let n = read(fd, buffer, 65536)
            guard n > 0 else { return }
            deliver(UnsafeRawBufferPointer(start: buffer, count: n), nil)
            p.revents = 0
            guard poll(&p, 1, 0) > 0 else { return }
        }
    }

    func close() { Glibc.close(fd) }
}
