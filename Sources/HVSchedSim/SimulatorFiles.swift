import Glibc

/// Reading scenarios and writing CSV/PNG output with plain POSIX calls.
package enum SchedSimFiles {
    /// The whole file as bytes.
    static func read(_ path: String) throws(SchedSimError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SchedSimError("\(path): cannot open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw SchedSimError("\(path): cannot read: \(String(cString: strerror(errno)))") }
            if n == 0 { break }
            out += buf[0..<n]
        }
        return out
    }

    /// Creates or replaces `path` with `bytes`.
    package static func write(_ path: String, _ bytes: [UInt8]) throws(SchedSimError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw SchedSimError("\(path): cannot create: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw SchedSimError("\(path): cannot write: \(String(cString: strerror(errno)))") }
            offset += n
        }
    }

    /// Parses the scenario file at `path` (messages name its file name).
    /// A scenario given as text (`hvhost plugin-check` runs a built-in one).
    package static func scenario(text: String, name: String) throws -> SchedSimScenario {
        try SchedSimScenario.parse(text, name: name)
    }

    package static func loadScenario(_ path: String) throws -> SchedSimScenario {
        let bytes = try read(path)
        let name = path.split(separator: "/").last.map(String.init) ?? path
        return try SchedSimScenario.parse(String(decoding: bytes, as: UTF8.self), name: name)
    }
}
