import Glibc
import HVSupport

/// A listening IPv4 TCP socket with an accept thread that hands each connection to
/// `accept`. Port 0 picks a free port (see `port`).
final class TCPListener: @unchecked Sendable {
    let address: String
    private(set) var port: Int
    private let fd: Int32
    private let stopped = HostLocked(false)
    private var thread: pthread_t?

    init(address: String, port: Int) throws(RFBError) {
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        guard (0...65535).contains(port), inet_pton(AF_INET, address, &addr.sin_addr) == 1 else {
            throw RFBError("'\(address):\(port)' is not an IPv4 address and port")
        }
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard s >= 0 else { throw RFBError("socket: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(s, 16) == 0 else {
            let why = String(cString: strerror(errno))
            Glibc.close(s)
            throw RFBError("cannot listen on \(address):\(port): \(why)")
        }
        var actual = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &actual) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(s, $0, &length) }
        }
        self.address = address
        self.port = Int(UInt16(bigEndian: actual.sin_port))
        fd = s
    }

    deinit { Glibc.close(fd) }

    func start(name: String, _ accept: @escaping (SocketStream) -> Void) {
        thread = HostThread.spawn(name: name) { [self] in
            while !stopped.withLock({ $0 }) {
                let c = Glibc.accept(fd, nil, nil)
                if c < 0 {
                    if errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE { continue }
                    break
                }
                if stopped.withLock({ $0 }) { Glibc.close(c); break }
                accept(SocketStream(fd: c))
            }
        }
    }

    /// Stops accepting and waits for the accept thread.
    func stop() {
        stopped.withLock { $0 = true }
        _ = Glibc.shutdown(fd, Int32(SHUT_RDWR))
        if let thread { pthread_join(thread, nil) }
        thread = nil
    }
}

/// A VM's VNC server: RFB over TCP for one ``RemoteConsole``.
package final class RFBServer: @unchecked Sendable {
    package let console: RemoteConsole
    private let listener: TCPListener

    package init(console: RemoteConsole, address: String, port: Int) throws(RFBError) {
        self.console = console
        listener = try TCPListener(address: address, port: port)
        listener.start(name: "vnc-accept") { [console] stream in
            console.serve(TCPTransport(stream))
        }
    }

    package var address: String { listener.address }
    package var port: Int { listener.port }

    package func stop() {
        listener.stop()
        console.disconnectAll()
    }
}
