import Glibc

/// Whole-file reads of inputs the host loads once (guest images, expansion ROMs).
package enum HostFile {
    package struct ReadError: Error, CustomStringConvertible {
        package var errno: Int32
        package var description: String { String(cString: strerror(errno)) }
    }

    /// The bytes of the regular file at `path`; EFBIG when it is larger than `limit`.
    package static func read(_ path: String, limit: Int = Int.max) throws(ReadError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ReadError(errno: errno) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw ReadError(errno: errno) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw ReadError(errno: (st.st_mode & S_IFMT) == S_IFDIR ? EISDIR : EINVAL) }
        guard st.st_size <= limit else { throw ReadError(errno: EFBIG) }
        var bytes = [UInt8](repeating: 0, count: Int(st.st_size))
        var filled = 0
        while filled < bytes.count {
            let n = bytes.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + filled, $0.count - filled) }
            if n < 0 {
                if errno == EINTR { continue }
                throw ReadError(errno: errno)
            }
            if n == 0 { break }
            filled += n
        }
        if filled < bytes.count { bytes.removeLast(bytes.count - filled) }
        return bytes
    }

    /// `path` made absolute against `directory` (unless it already is), without "." parts.
    package static func resolve(_ path: String, relativeTo directory: String) -> String {
        normalize(path.hasPrefix("/") ? path : directory + "/" + path)
    }

    package static func normalize(_ path: String) -> String {
        let absolute = path.hasPrefix("/")
        let parts = path.split(separator: "/", omittingEmptySubsequences: true).filter { $0 != "." }
        let joined = parts.joined(separator: "/")
        if absolute { return "/" + joined }
        return joined.isEmpty ? "." : joined
    }
}
