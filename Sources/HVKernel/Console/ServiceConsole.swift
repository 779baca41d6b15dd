import Glibc
import HVHostIO
import HVSupport

/// The service console: a Unix stream socket on which operators (and `hvhost console`)
/// run commands against a live host. One request per connection: the client writes one
/// line of space-separated words, the console writes the reply and closes.
/// Subsystems register their commands (`vms`, `net …`, `sched …`) by first word.
///
/// Clients are served concurrently, each on its own thread, up to
/// `maximumConcurrentClients` (further clients wait in the listen backlog, not refused);
/// a client that does not finish its request line within `requestTimeout` is dropped,
/// so a slow or idle client delays nobody else. The socket is the host user's alone:
/// mode 0600, and every peer's credentials (`SO_PEERCRED`) must be root's or the host
/// process's own uid; with a console group (`--console-group`) the socket is 0660 in that
/// group and its members are answered too. A path holding anything but a stale socket is
/// never replaced, and an exclusive lock on `PATH.lock` (held while the console lives)
/// makes a second host refuse the path even while the first is still starting.
package final class ServiceConsole: @unchecked Sendable {
    typealias Handler = ([String]) throws -> String

    package struct CommandError: Error, CustomStringConvertible {
        let message: String
        package init(_ message: String) { self.message = message }
        package var description: String { message }
    }

    /// Connections served at once; more wait in the listen backlog.
    static let maximumConcurrentClients = 64
    /// The longest request line, newline included.
    static let maximumRequestBytes = 4096

    package let path: String
    /// How long a client has, from its connection, to send its whole request line.
    let requestTimeoutNanoseconds: UInt64
    private let listener: Int32
    /// The socket file we bound (device, inode): `stop` unlinks only that file.
    private let boundFile: (dev: dev_t, ino: ino_t)
    private let lock = HostLock()
    private var commands: [String: (summary: String, handler: Handler)] = [:]
    private var thread: pthread_t?
    private var closed = false
    /// Descriptors of the connections being served (open while listed here).
    private var clients: Set<Int32> = []
    /// Clients whose command is running: `stop` lets them write their reply (a
    /// `suspend` of the host's last VM stops the host while its command replies).
    private var executing: Set<Int32> = []
    /// How long `stop` waits for running commands before it cuts their connections.
    static let stopGraceNanoseconds: UInt64 = 10_000_000_000
    /// Members of this group may use the console too.
    let group: gid_t?
    /// `PATH.lock`, flock'ed exclusively for the console's life.
    private let lockFile: Int32

    /// Listens on `path`. A stale socket there (no server answers) is replaced; a live
    /// console, or a file that is not a socket, is an error and is left alone.
    package init(path: String, requestTimeoutSeconds: Double = 5, group: gid_t? = nil) throws {
        self.path = path
        self.group = group
        self.requestTimeoutNanoseconds = UInt64(max(0.001, requestTimeoutSeconds) * 1e9)
        guard let addr = UnixSocketAddress(path: path) else {
            throw CommandError("console socket path \(path) is longer than \(UnixSocketAddress.maximumPathLength) bytes")
        }
        lockFile = open(path + ".lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard lockFile >= 0 else { throw CommandError("cannot open the console lock \(path).lock: \(Self.errnoText(errno))") }
        guard flock(lockFile, LOCK_EX | LOCK_NB) == 0 else {
            let e = errno
            close(lockFile)
            if e == EWOULDBLOCK {
                throw CommandError("another process is serving a console at \(path) (it holds \(path).lock: is another `hvhost run --console \(path)` running?); refusing to take it over")
            }
            throw CommandError("cannot lock \(path).lock: \(Self.errnoText(e))")
        }
        do { try Self.removeStaleSocket(at: path, address: addr) } catch {
            close(lockFile)
            throw error
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else {
            close(lockFile)
            throw CommandError("socket: \(Self.errnoText(errno))")
        }
        guard addr.bind(fd) == 0 else {
            let e = errno
            close(fd)
            close(lockFile)
            throw CommandError("cannot listen on \(path): bind: \(Self.errnoText(e))")
        }
        // Owner only. Until this chmod the mode follows the umask; the peer-credential
        // check covers that moment.
        var st = stat()
        guard listen(fd, SOMAXCONN) == 0, group.map({ chown(path, uid_t.max, $0) }) ?? 0 == 0,
              chmod(path, group == nil ? 0o600 : 0o660) == 0, lstat(path, &st) == 0 else {
            let e = errno
            close(fd)
            unlink(path)
            close(lockFile)
            throw CommandError("cannot listen on \(path): \(Self.errnoText(e))")
        }
        listener = fd
        boundFile = (st.st_dev, st.st_ino)
        register("help", summary: "list commands") { [unowned self] _ in
            self.lock.withLock { self.commands.sorted { $0.key < $1.key }.map { "\($0.key)\t\($0.value.summary)" } }
                .joined(separator: "\n")
        }
    }

    deinit { stop() }

    /// Adds a command named by its first word; `handler` gets the remaining words.
    /// Handlers may run concurrently (one per client).
    func register(_ word: String, summary: String, handler: @escaping Handler) {
        lock.withLock { commands[word] = (summary, handler) }
    }

    /// Runs one request line as a connection would (also used by tests).
    func execute(_ line: String) -> String {
        let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        guard let first = words.first else { return "error: empty command; try 'help'" }
        guard let command = lock.withLock({ commands[first] }) else {
            return "error: unknown command '\(first)'; try 'help'"
        }
        do { return try command.handler(Array(words.dropFirst())) } catch { return "error: \(error)" }
    }

    package func start() {
        thread = HostThread.spawn(name: "console") { [self] in serve() }
    }

    /// Stops accepting, lets commands already running write their replies (for up to
    /// `stopGraceNanoseconds`), ends the other connections (waiting for their threads)
    /// and removes the socket file if it is still the one this console bound.
    package func stop() {
        let wasOpen: Bool = lock.withLock {
            defer { closed = true; lock.broadcast() }
            return !closed
        }
        guard wasOpen else { return }
        shutdown(listener, Int32(SHUT_RDWR))
        if let t = thread { pthread_join(t, nil) }
        close(listener)
        lock.withLock {
            // Clients still reading their request see end of input; replies still go out.
            for fd in clients.subtracting(executing) { shutdown(fd, Int32(SHUT_RD)) }
            let deadline = VMClock.hostNanoseconds() &+ Self.stopGraceNanoseconds
            while !executing.isEmpty && VMClock.hostNanoseconds() < deadline { lock.wait(until: deadline) }
            for fd in clients { shutdown(fd, Int32(SHUT_RDWR)) }
            while !clients.isEmpty { lock.wait() }
        }
        var st = stat()
        if lstat(path, &st) == 0, st.st_dev == boundFile.dev, st.st_ino == boundFile.ino { unlink(path) }
        close(lockFile)     // the lock file stays: removing it would race the next host's lock
    }

    // MARK: Serving

    private func serve() {
        while true {
            // At the limit, leave further clients in the backlog until one finishes.
            let open: Bool = lock.withLock {
                while !closed && clients.count >= Self.maximumConcurrentClients { lock.wait() }
                return !closed
            }
            guard open else { return }
            // (accept4 needs _GNU_SOURCE, which Glibc's module map does not define.)
            let client = accept(listener, nil, nil)
            if client < 0 {
                switch errno {
                case EINTR, ECONNABORTED: continue
                case EMFILE, ENFILE, ENOBUFS, ENOMEM:
                    // Out of descriptors or memory: retry later rather than spin.
                    var ts = timespec(tv_sec: 0, tv_nsec: 50_000_000)
                    nanosleep(&ts, nil)
                    continue
                default: return // the listener was shut down
                }
            }
            _ = fcntl(client, F_SETFD, FD_CLOEXEC)
            let admitted: Bool = lock.withLock {
                if closed { return false }
                clients.insert(client)
                return true
            }
            guard admitted else { close(client); return }
            let t = HostThread.spawn(name: "console-client") { [self] in
                handle(client)
                lock.withLock {
                    clients.remove(client)
                    close(client)
                    lock.broadcast()
                }
            }
            pthread_detach(t)
        }
    }

    private func handle(_ fd: Int32) {
        let deadline = VMClock.hostNanoseconds() &+ requestTimeoutNanoseconds
        var timeout = timeval(tv_sec: Int(requestTimeoutNanoseconds / 1_000_000_000),
                              tv_usec: Int(requestTimeoutNanoseconds % 1_000_000_000 / 1000))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        // The request is read before a refusal is sent: a client whose request we had
        // not read would get EPIPE (SIGPIPE) writing it and never see the refusal.
        let request = readRequest(fd, deadline: deadline)
        if let refusal = Self.refusal(ofPeer: fd, group: group) {
            reply(refusal, to: fd)
            return
        }
        switch request {
        case .line(let line):
            let admitted: Bool = lock.withLock {
                if closed { return false }
                executing.insert(fd)
                return true
            }
            guard admitted else { reply("error: the host is shutting down", to: fd); return }
            reply(execute(line), to: fd)
            lock.withLock {
                executing.remove(fd)
                lock.broadcast()
            }
        case .tooLong: reply("error: request longer than \(Self.maximumRequestBytes) bytes", to: fd)
        case .timedOut:
            reply("error: no complete request line within \(Double(requestTimeoutNanoseconds) / 1e9) s", to: fd)
        case .closed: break
        }
    }

    private enum Request { case line(String), tooLong, timedOut, closed }

    /// Reads up to the first newline, before `deadline` (host monotonic ns).
    private func readRequest(_ fd: Int32, deadline: UInt64) -> Request {
        var request: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 512)
        while true {
            if let newline = request.firstIndex(of: 0x0A) {
                return .line(String(decoding: request[..<newline], as: UTF8.self))
            }
            if request.count >= Self.maximumRequestBytes { return .tooLong }
            let now = VMClock.hostNanoseconds()
            guard now < deadline else { return .timedOut }
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&p, 1, Int32(min((deadline - now + 999_999) / 1_000_000, 60_000)))
            if ready < 0 && errno != EINTR { return .closed }
            if ready <= 0 { continue }
            let want = min(buffer.count, Self.maximumRequestBytes - request.count)
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, want) }
            if n < 0 && errno == EINTR { continue }
            // End of input: a request without a trailing newline still counts.
            if n <= 0 { return request.isEmpty ? .closed : .line(String(decoding: request, as: UTF8.self)) }
            request += buffer[0..<n]
        }
    }

    /// Writes `text` and a newline (the send timeout bounds a client that does not read).
    private func reply(_ text: String, to fd: Int32) {
        var bytes = Array(text.utf8)
        if bytes.last != 0x0A { bytes.append(0x0A) }
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            sent += n
        }
    }

    /// Why the peer on `fd` may not use the console, or nil when it may: it must run as
    /// root or as this process's effective uid.
    private static func refusal(ofPeer fd: Int32, group: gid_t?) -> String? {
        // struct ucred { pid_t pid; uid_t uid; gid_t gid; } (the type needs _GNU_SOURCE).
        var cred: [UInt32] = [0, 0, 0]
        var length = socklen_t(MemoryLayout<UInt32>.size * cred.count)
        let rc = cred.withUnsafeMutableBytes { getsockopt(fd, SOL_SOCKET, SO_PEERCRED, $0.baseAddress, &length) }
        guard rc == 0, Int(length) == MemoryLayout<UInt32>.size * cred.count else {
            return "error: cannot read the peer's credentials: \(errnoText(errno))"
        }
        let uid = uid_t(cred[1]), gid = gid_t(cred[2])
        if isAllowed(peerUID: uid, hostUID: geteuid()) { return nil }
        guard let group else {
            return "error: permission denied: uid \(uid) is neither root nor the host's user (uid \(geteuid()))"
        }
        if gid == group || groups(ofUID: uid, primary: gid).contains(group) { return nil }
        return "error: permission denied: uid \(uid) is neither root, the host's user (uid \(geteuid())) nor in the console group (gid \(group))"
    }

    static func isAllowed(peerUID: uid_t, hostUID: uid_t) -> Bool { peerUID == 0 || peerUID == hostUID }

    /// The groups of the user with `uid` (the peer's supplementary groups are not in
    /// SO_PEERCRED; the group database is asked).
    private static func groups(ofUID uid: uid_t, primary: gid_t) -> [gid_t] {
        guard let pw = getpwuid(uid), let name = pw.pointee.pw_name else { return [primary] }
        var count: Int32 = 64
        var list = [gid_t](repeating: 0, count: Int(count))
        if getgrouplist(name, primary, &list, &count) < 0 {
            list = [gid_t](repeating: 0, count: Int(count))
            guard getgrouplist(name, primary, &list, &count) >= 0 else { return [primary] }
        }
        return Array(list.prefix(Int(count)))
    }

    // MARK: The socket path

    /// Makes `path` free for a new console: absent is fine; a socket nobody serves is
    /// removed; a socket a live console answers on, or any other kind of file, is refused.
    private static func removeStaleSocket(at path: String, address: UnixSocketAddress) throws {
        var st = stat()
        guard lstat(path, &st) == 0 else {
            if errno == ENOENT { return }
            throw CommandError("cannot use \(path) for the console: \(errnoText(errno))")
        }
        guard (st.st_mode & S_IFMT) == S_IFSOCK else {
            throw CommandError("\(path) exists and is not a socket (\(fileKind(st.st_mode))); refusing to replace it with the console socket: remove it or choose another --console path")
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw CommandError("socket: \(errnoText(errno))") }
        let connected = address.connect(fd)
        let e = errno
        close(fd)
        if connected == 0 {
            throw CommandError("another process is serving a console at \(path) (is another `hvhost run --console \(path)` running?); refusing to take it over")
        }
        guard e == ECONNREFUSED else {
            throw CommandError("cannot check the socket at \(path): connect: \(errnoText(e))")
        }
        guard unlink(path) == 0 || errno == ENOENT else {
            throw CommandError("cannot remove the stale socket \(path): \(errnoText(errno))")
        }
    }

    private static func fileKind(_ mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFREG: "a regular file"
        case S_IFDIR: "a directory"
        case S_IFLNK: "a symbolic link"
        case S_IFIFO: "a FIFO"
        case S_IFCHR: "a character device"
        case S_IFBLK: "a block device"
        default: "mode \(String(mode, radix: 8))"
        }
    }

    private static func errnoText(_ e: Int32) -> String { String(cString: strerror(e)) }

    // MARK: Client

    /// Sends one request to a console at `path` and returns the reply.
    package static func request(_ line: String, at path: String) throws -> String {
        guard let addr = UnixSocketAddress(path: path) else { throw CommandError("socket path too long: \(path)") }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw CommandError("socket: \(errnoText(errno))") }
        defer { close(fd) }
        guard addr.connect(fd) == 0 else {
            throw CommandError("cannot reach the service console at \(path): \(errnoText(errno)) (is `hvhost run --console \(path)` running?)")
        }
        let bytes = Array((line + "\n").utf8)
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        var reply: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            reply += buffer[0..<n]
        }
        return String(decoding: reply, as: UTF8.self)
    }
}
