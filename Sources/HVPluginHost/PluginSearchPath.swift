import Glibc

/// The ordered directories plugins are looked for in:
/// 1. `--plugin-path` values (each colon-separated, the flag may repeat), in order;
/// 2. the `HV_PLUGIN_PATH` environment variable (colon-separated);
/// 3. the directory containing the running `hvhost` binary (`/proc/self/exe`) and its
///    `plugins/` subdirectory.
///
/// Candidates are the `*.so` files directly in those directories (not recursive), in
/// directory order and by name within a directory, deduplicated by real path (the
/// first occurrence wins). A path entry that names a `.so` file itself is taken as a
/// candidate too. Directories that do not exist are kept in the list (so messages can
/// show what was searched) and contribute nothing.
package struct PluginSearchPath: Equatable, Sendable, CustomStringConvertible {
    /// The environment variable read by `standard(...)`.
    package static let environmentVariable = "HV_PLUGIN_PATH"

    /// Search directories in order, duplicates removed.
    package let directories: [String]
    /// Directories searched implicitly (the hvhost binary's own directory) where a
    /// library that is not a plugin is skipped silently instead of reported: build
    /// directories hold other shared objects next to the binary.
    let quietDirectories: Set<String>

    /// A library to try, and whether "not a plugin" should be reported for it.
    package struct Candidate: Equatable, Sendable {
        package var path: String
        /// True in `quietDirectories`: skip silently if it lacks the entry symbol.
        var quiet: Bool
    }

    package init(directories: [String], quietDirectories: Set<String> = []) {
        self.quietDirectories = quietDirectories
        var seen = Set<String>()
        var list: [String] = []
        for d in directories where !d.isEmpty {
            let normalized = d.count > 1 && d.hasSuffix("/") ? String(d.dropLast()) : d
            if seen.insert(normalized).inserted { list.append(normalized) }
        }
        self.directories = list
    }

    /// The standard search path. `flagValues` are the `--plugin-path` arguments;
    /// `environment` defaults to the process's `HV_PLUGIN_PATH`; `executablePath`
    /// defaults to `/proc/self/exe` resolved (pass nil to leave the binary's
    /// directory out, as tests do).
    package static func standard(flagValues: [String] = [],
                                environment: String? = PluginSearchPath.environmentValue(),
                                executablePath: String? = PluginSearchPath.currentExecutablePath())
        -> PluginSearchPath
    {
        var dirs: [String] = flagValues.flatMap(Self.split)
        if let environment { dirs += Self.split(environment) }
        var quiet: Set<String> = []
        if let exe = executablePath, let slash = exe.lastIndex(of: "/") {
            let dir = slash == exe.startIndex ? "/" : String(exe[..<slash])
            if !dirs.contains(dir) { quiet.insert(dir) }
            dirs.append(dir)
            dirs.append(dir == "/" ? "/plugins" : dir + "/plugins")
        }
        return PluginSearchPath(directories: dirs, quietDirectories: quiet)
    }

    /// Splits a colon-separated list, dropping empty elements.
    package static func split(_ list: String) -> [String] {
        list.split(separator: ":", omittingEmptySubsequences: true).map(String.init)
    }

    /// `HV_PLUGIN_PATH` from the process environment, nil when unset.
    static func environmentValue() -> String? {
        getenv(environmentVariable).map { String(cString: $0) }
    }

    /// The running binary's path from `/proc/self/exe`, nil if it cannot be read.
    package static func currentExecutablePath() -> String? {
        var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink("/proc/self/exe", &buf, buf.count - 1)
        guard n > 0 else { return nil }
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The `.so` files to try, in search order, deduplicated by real path.
    func candidates() -> [String] { candidateList().map(\.path) }

    /// `candidates()` with each one's `quiet` flag.
    package func candidateList() -> [Candidate] {
        var seen = Set<String>()
        var out: [Candidate] = []
        var quiet = false
        func add(_ path: String) {
            let key = Self.realPath(path) ?? path
            if seen.insert(key).inserted { out.append(Candidate(path: path, quiet: quiet)) }
        }
        for dir in directories {
            quiet = quietDirectories.contains(dir)
            if dir.hasSuffix(".so"), Self.isRegularFile(dir) {
                add(dir)
                continue
            }
            guard let d = opendir(dir) else { continue }
            var names: [String] = []
            while let e = readdir(d) {
                let name = withUnsafeBytes(of: e.pointee.d_name) { raw in
                    String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
                }
                guard name.hasSuffix(".so"), name.count > 3 else { continue }
                names.append(name)
            }
            closedir(d)
            for name in names.sorted() {
                let path = dir == "/" ? "/" + name : dir + "/" + name
                if Self.isRegularFile(path) { add(path) }
            }
        }
        return out
    }

    package var description: String { directories.isEmpty ? "(empty)" : directories.joined(separator: ", ") }

    /// `realpath(3)`, nil if the path does not resolve.
    static func realPath(_ path: String) -> String? {
        guard let p = realpath(path, nil) else { return nil }
        defer { free(p) }
        return String(cString: p)
    }

    static func isRegularFile(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
    }
}
