import Glibc
import HVPluginHost

/// `plugins` and `validate` load plugins only to read what they declare, and loading
/// runs a library's constructors and `init`: they do it in a short-lived child hvhost
/// (the same command line) so a plugin that crashes or hangs cannot take the command
/// down. The child reports each library it is about to load on a progress pipe; when it
/// dies by a signal or overruns its time, the parent names the last library it opened
/// as the culprit and runs the child again without it (the library is listed as failed
/// with what it did), up to ``maximumAttempts`` culprits.
enum MetadataChild {
    /// Set in the child's environment: do the work here.
    static let childVariable = "HV_METADATA_CHILD"
    /// Libraries an earlier child crashed or hung on: "path\treason" lines.
    static let crashedVariable = "HV_METADATA_CRASHED"
    /// The progress pipe's descriptor in the child.
    static let progressFD: Int32 = 3
    static let maximumAttempts = 16

    static var isChild: Bool { getenv(childVariable) != nil }

    /// How long one child may take (`HV_METADATA_TIMEOUT_MS`, default 20 s).
    static var timeoutMilliseconds: Int {
        getenv("HV_METADATA_TIMEOUT_MS").flatMap { Int(String(cString: $0)) }.map { max(100, $0) } ?? 20_000
    }

    /// In the child: the libraries to leave out, with why.
    static func crashedLibraries() -> [(path: String, reason: String)] {
        guard let raw = getenv(crashedVariable) else { return [] }
        return String(cString: raw).split(separator: "\n").compactMap { line in
            let parts = line.split(separator: "\t", maxSplits: 1).map(String.init)
            return parts.count == 2 ? (parts[0], parts[1]) : nil
        }
    }

    /// In the child: tells the parent which library is loaded next.
    static func reportLoading(_ path: String) {
        var line = path + "\n"
        line.withUTF8 { buf in _ = write(progressFD, buf.baseAddress, buf.count) }
    }

    /// In the parent: runs this command line in children until one finishes, relays its
    /// output and exits with its status.
    static func runAndExit() -> Never {
        var crashed: [(path: String, reason: String)] = []
        for _ in 0..<maximumAttempts {
            let outcome = runOnce(crashed: crashed)
            switch outcome {
            case let .finished(status, out, err):
                relay(out, to: 1)
                relay(err, to: 2)
                exit(status)
            case let .died(reason, lastLibrary, out, err):
                guard let lastLibrary, !crashed.contains(where: { $0.path == lastLibrary }) else {
                    relay(out, to: 1)
                    relay(err, to: 2)
                    HostConsole.printError("error: reading plugin metadata \(reason) in a child process")
                    exit(2)
                }
                crashed.append((lastLibrary, reason))
            }
        }
        HostConsole.printError("error: reading plugin metadata failed: \(maximumAttempts) libraries crashed or hung the child process")
        exit(2)
    }

    private enum Outcome {
        case finished(status: Int32, out: [UInt8], err: [UInt8])
        case died(reason: String, lastLibrary: String?, out: [UInt8], err: [UInt8])
    }

    private static func relay(_ bytes: [UInt8], to fd: Int32) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, bytes.count - offset) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return }
            offset += n
        }
    }

    private static func runOnce(crashed: [(path: String, reason: String)]) -> Outcome {
        var outPipe: [Int32] = [0, 0], errPipe: [Int32] = [0, 0], progressPipe: [Int32] = [0, 0]
        func cloexecPipe(_ fds: inout [Int32]) -> Bool {
            guard pipe(&fds) == 0 else { return false }
            for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
            return true
        }
        guard cloexecPipe(&outPipe), cloexecPipe(&errPipe), cloexecPipe(&progressPipe) else {
            return .died(reason: "could not start (pipe: \(String(cString: strerror(errno))))", lastLibrary: nil, out: [], err: [])
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
        posix_spawn_file_actions_adddup2(&actions, errPipe[1], 2)
        posix_spawn_file_actions_adddup2(&actions, progressPipe[1], progressFD)

        var environment = ProcessEnvironment.current.filter { !$0.hasPrefix(childVariable + "=") && !$0.hasPrefix(crashedVariable + "=") }
        environment.append(childVariable + "=1")
        // A crash is expected here and reported by the parent; the runtime's
        // backtracer would only slow the child's end (and write past it).
        environment = environment.filter { !$0.hasPrefix("SWIFT_BACKTRACE=") } + ["SWIFT_BACKTRACE=enable=no"]
        if !crashed.isEmpty {
            environment.append(crashedVariable + "=" + crashed.map { "\($0.path)\t\($0.reason)" }.joined(separator: "\n"))
        }
        let executable = PluginSearchPath.currentExecutablePath() ?? CommandLine.arguments[0]
        var pid = pid_t()
        let rc = withCStrings(CommandLine.arguments) { argv in
            withCStrings(environment) { envp in posix_spawn(&pid, executable, &actions, nil, argv, envp) }
        }
        for fd in [outPipe[1], errPipe[1], progressPipe[1]] { close(fd) }
        defer { for fd in [outPipe[0], errPipe[0], progressPipe[0]] { close(fd) } }
        guard rc == 0 else {
            return .died(reason: "could not start (posix_spawn: \(String(cString: strerror(rc))))", lastLibrary: nil, out: [], err: [])
        }

        var out: [UInt8] = [], err: [UInt8] = [], progress: [UInt8] = []
        var open: [Int32: Bool] = [outPipe[0]: true, errPipe[0]: true, progressPipe[0]: true]
        let deadline = monotonicMilliseconds() + timeoutMilliseconds
        var timedOut = false
        var buffer = [UInt8](repeating: 0, count: 65536)
        while open.values.contains(true) {
            let left = deadline - monotonicMilliseconds()
            if left <= 0 { timedOut = true; break }
            var fds = open.filter(\.value).map { pollfd(fd: $0.key, events: Int16(POLLIN), revents: 0) }
            let n = poll(&fds, nfds_t(fds.count), Int32(min(left, 1000)))
            if n < 0 && errno == EINTR { continue }
            for p in fds where p.revents != 0 {
                let got = read(p.fd, &buffer, buffer.count)
                if got <= 0 { open[p.fd] = false; continue }
                let chunk = buffer[0..<got]
                if p.fd == outPipe[0] { out += chunk } else if p.fd == errPipe[0] { err += chunk } else { progress += chunk }
            }
        }
        if timedOut { kill(pid, SIGKILL) }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let last = String(decoding: progress, as: UTF8.self).split(separator: "\n").last.map(String.init)
        if timedOut {
            return .died(reason: "did not finish within \(timeoutMilliseconds) ms", lastLibrary: last, out: out, err: err)
        }
        let signal = status & 0x7F
        if signal == 0 { return .finished(status: (status >> 8) & 0xFF, out: out, err: err) }
        let name = strsignal(signal).map { String(cString: $0) } ?? "signal \(signal)"
        return .died(reason: "crashed (\(name))", lastLibrary: last, out: out, err: err)
    }

    private static func monotonicMilliseconds() -> Int {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return ts.tv_sec * 1000 + ts.tv_nsec / 1_000_000
    }

    private static func withCStrings<R>(_ strings: [String], _ body: ([UnsafeMutablePointer<CChar>?]) -> R) -> R {
        let pointers = strings.map { strdup($0) } + [nil]
        defer { for p in pointers { free(p) } }
        return body(pointers)
    }
}

/// The process environment as "NAME=value" strings.
enum ProcessEnvironment {
    static var current: [String] {
        var out: [String] = []
        var p = environ
        while let entry = p.pointee {
            out.append(String(cString: entry))
            p += 1
        }
        return out
    }
}
