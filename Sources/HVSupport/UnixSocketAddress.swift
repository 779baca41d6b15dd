import Glibc

/// The `AF_UNIX` address of a filesystem path (`sockaddr_un`) and the two calls that
/// take it, so the `sockaddr` cast lives in one place (the service console and the
/// Unix-socket serial sink use it).
package struct UnixSocketAddress {
    /// Longest path `sockaddr_un` holds, leaving room for the NUL.
    package static let maximumPathLength = MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1

    private var storage = sockaddr_un()

    /// nil when `path` does not fit.
    package init?(path: String) {
        guard path.utf8.count <= Self.maximumPathLength else { return nil }
        storage.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &storage.sun_path) { raw in
            for (i, b) in path.utf8.enumerated() { raw[i] = b }
        }
    }

    /// bind(2): 0, or -1 with `errno` set.
    package func bind(_ fd: Int32) -> Int32 {
        var addr = storage
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
    }

    /// connect(2): 0, or -1 with `errno` set.
    package func connect(_ fd: Int32) -> Int32 {
        var addr = storage
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
    }
}
