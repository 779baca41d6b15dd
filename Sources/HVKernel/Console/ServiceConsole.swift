import Glibc

/// The service console: a Unix stream socket on which operators (and `hvhost console`)
/// run commands against a live host. One request per connection: the client writes one
/// line of space-separated words, the console writes the reply and closes.
/// Subsystems register their commands (`vms`, `net …`, `sched …`) by first word.
public final class ServiceConsole: @unchecked Sendable {
    public typealias Handler = ([String]) throws -> String

    public struct CommandError: Error, CustomStringConvertible {
        public let message: String
        public init(_ message: String) { self.message = message }
        public var description: String { message }
    }

    public let path: String
    private let listener: Int32
    private let lock = HostLock()
    private var commands: [String: (summary: String, handler: Handler)] = [:]
    private var thread: pthread_t?
    private var closed = false

    /// Listens on `path` (a stale socket file there is replaced).
    public init(path: String) throws {
        self.path = path
        guard let addr = UnixSocketAddress(path: path) else {
            throw CommandError("console socket path \(path) is longer than \(UnixSocketAddress.maximumPathLength) bytes")
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw CommandError("socket: \(String(cString: strerror(errno)))") }
        unlink(path)
        guard addr.bind(fd) == 0, listen(fd, 8) == 0 else {
            let e = errno; close(fd)
            throw CommandError("cannot listen on \(path): \(String(cString: strerror(e)))")
        }
        listener = fd
        register("help", summary: "list commands") { [unowned self] _ in
            self.lock.withLock { self.commands.sorted { $0.key < $1.key }.map { "\($0.key)\t\($0.value.summary)" } }
                .joined(separator: "\n")
        }
    }

    deinit { stop() }

    /// Adds a command named by its first word; `handler` gets the remaining words.
    public func register(_ word: String, summary: String, handler: @escaping Handler) {
        lock.withLock { commands[word] = (summary, handler) }
    }

    /// Runs one request line as a connection would (also used by tests).
    public func execute(_ line: String) -> String {
        let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        guard let first = words.first else { return "error: empty command; try 'help'" }
        guard let command = lock.withLock({ commands[first] }) else {
            return "error: unknown command '\(first)'; try 'help'"
        }
        do { return try command.handler(Array(words.dropFirst())) } catch { return "error: \(error)" }
    }

    public func start() {
        thread = HostThread.spawn { [self] in serve() }
    }

    public func stop() {
        let wasOpen: Bool = lock.withLock {
            defer { closed = true }
            return !closed
        }
        guard wasOpen else { return }
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
        if let t = thread { pthread_join(t, nil) }
        unlink(path)
    }

    private func serve() {
        while true {
            let client = accept(listener, nil, nil)
            if client < 0 {
                if errno == EINTR { continue }
                return
            }
            handle(client)
            close(client)
        }
    }

    private func handle(_ fd: Int32) {
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var request: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 512)
        while request.count < 4096, !request.contains(0x0A) {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            request += buffer[0..<n]
        }
        let line = String(decoding: request.prefix { $0 != 0x0A }, as: UTF8.self)
        var reply = Array(execute(line).utf8)
        if reply.last != 0x0A { reply.append(0x0A) }
        var sent = 0
        while sent < reply.count {
            let n = reply[sent...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            sent += n
        }
    }

    /// Sends one request to a console at `path` and returns the reply.
    public static func request(_ line: String, at path: String) throws -> String {
        guard let addr = UnixSocketAddress(path: path) else { throw CommandError("socket path too long: \(path)") }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw CommandError("socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        guard addr.connect(fd) == 0 else {
            throw CommandError("cannot reach the service console at \(path): \(String(cString: strerror(errno))) (is `hvhost run --console \(path)` running?)")
        }
        let bytes = Array((line + "\n").utf8)
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        var reply: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            reply += buffer[0..<n]
        }
        return String(decoding: reply, as: UTF8.self)
    }
}
