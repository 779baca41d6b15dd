import Glibc
import HVSupport

/// A parsed VMware `.vmx` file: `key = "value"` lines in file order.
///
/// Syntax accepted:
/// - `key = "value"`; the quotes may be omitted (`memsize = 256`), in which case the
///   value ends at a `#` or at the end of the line and is trimmed;
/// - `#` starts a comment on a line of its own or after the closing quote;
/// - blank lines, CRLF or LF line ends, a leading UTF-8 byte order mark;
/// - inside quotes, VMware's `|XX` escape (two hex digits) stands for the byte 0xXX,
///   e.g. `|22` for `"` and `|7C` for `|`; a `|` not followed by two hex digits is kept.
///
/// Keys are case-insensitive: they are stored lowercased for lookup and keep their
/// original spelling for messages. Key characters are ASCII letters, digits and
/// `. : _ -`. A key set twice is an error naming both lines.
package struct VMXFile: Equatable, Sendable {
    /// One `key = "value"` line.
    package struct Entry: Equatable, Sendable {
        /// The key as written in the file (for messages).
        package var key: String
        /// The key lowercased (for lookup).
        var normalizedKey: String
        /// The value, quotes removed and escapes decoded.
        package var value: String
        /// The file the entry came from.
        var path: String
        /// 1-based line number.
        package var line: Int

        init(key: String, value: String, path: String, line: Int) {
            self.key = key
            self.normalizedKey = key.lowercased()
            self.value = value
            self.path = path
            self.line = line
        }

        /// `file:line`, for messages.
        package var location: String { "\(path):\(line)" }
    }

    /// The path the file was read from (or the name given to `init(parsing:path:)`).
    package let path: String
    /// Every entry, in file order.
    private(set) var entries: [Entry]
    private var indexByKey: [String: Int]
    /// Lowercased keys of lines refused for their syntax after a valid key: such a key
    /// is not "missing" (its line already has a problem).
    private(set) var refusedKeys: Set<String> = []

    /// Reads and parses the file at `path`; throws every problem found.
    init(contentsOf path: String) throws(ConfigErrors) {
        let (file, problems) = Self.read(contentsOf: path)
        guard let file, problems.isEmpty else { throw ConfigErrors(problems) }
        self = file
    }

    /// Parses `text` as the contents of a file named `path` (used in messages and to
    /// resolve relative paths; the file need not exist); throws every problem found.
    init(parsing text: String, path: String) throws(ConfigErrors) {
        let (file, problems) = Self.parse(text, path: path)
        guard problems.isEmpty else { throw ConfigErrors(problems) }
        self = file
    }

    /// Builds a file from entries (for tools and tests). Duplicate keys are an error.
    init(path: String, entries: [Entry]) throws(ConfigErrors) {
        self.init(empty: path)
        var problems: [ConfigError] = []
        for entry in entries {
            if let problem = add(entry) { problems.append(problem) }
        }
        guard problems.isEmpty else { throw ConfigErrors(problems) }
    }

    private init(empty path: String) {
        self.path = path
        self.entries = []
        self.indexByKey = [:]
    }

    /// Reads the file at `path`, keeping every line that parses: the file (nil when it
    /// cannot be read) and every problem, in file order.
    static func read(contentsOf path: String) -> (file: VMXFile?, problems: [ConfigError]) {
        let text: String
        do {
            text = try ConfigFiles.readText(path)
        } catch {
            return (nil, [ConfigError(path: path, line: nil, problem: "cannot read the file (\(error.description))",
                                      expected: "a readable .vmx file")])
        }
        let (file, problems) = parse(text, path: path)
        return (file, problems)
    }

    /// Parses `text`, keeping every line that parses: a line with a syntax error, and the
    /// second setting of a key, are left out and reported, in file order.
    static func parse(_ text: String, path: String) -> (file: VMXFile, problems: [ConfigError]) {
        var file = VMXFile(empty: path)
        var problems: [ConfigError] = []
        var lineNumber = 0
        var rest = Substring(text)
        if rest.hasPrefix("\u{FEFF}") { rest = rest.dropFirst() }
        // Split on "\n" by scalar: Swift treats "\r\n" as one Character, so splitting
        // Characters on "\n" would miss CRLF line ends.
        let scalars = rest.unicodeScalars
        var start = scalars.startIndex
        while start < scalars.endIndex || lineNumber == 0 {
            lineNumber += 1
            let end = scalars[start...].firstIndex(of: "\n") ?? scalars.endIndex
            var lineScalars = scalars[start..<end]
            if lineScalars.last == "\r" { lineScalars = lineScalars.dropLast() }
            switch parseLine(Substring(lineScalars), path: path, line: lineNumber) {
            case .blank:
                break
            case .entry(let entry):
                if let problem = file.add(entry) { problems.append(problem) }
            case .refused(let problem, let key):
                problems.append(problem)
                if let key { file.refusedKeys.insert(key.lowercased()) }
            }
            if end == scalars.endIndex { break }
            start = scalars.index(after: end)
        }
        return (file, problems)
    }

    /// Adds `entry`, or returns the problem when its key is already set.
    private mutating func add(_ entry: Entry) -> ConfigError? {
        if let first = indexByKey[entry.normalizedKey] {
            let previous = entries[first]
            return ConfigError(
                path: path, line: entry.line, key: entry.key, value: entry.value,
                problem: "duplicate key, already set on line \(previous.line) (\(previous.key) = \"\(previous.value)\")",
                expected: "each key at most once")
        }
        indexByKey[entry.normalizedKey] = entries.count
        entries.append(entry)
        return nil
    }

    // MARK: Lookup

    /// The entry for `key` (case-insensitive), if present.
    package func entry(forKey key: String) -> Entry? {
        indexByKey[key.lowercased()].map { entries[$0] }
    }

    /// The value for `key` (case-insensitive), if present.
    func value(forKey key: String) -> String? {
        entry(forKey: key)?.value
    }

    subscript(key: String) -> String? { value(forKey: key) }

    /// Entries whose key starts with `prefix` (case-insensitive), in file order.
    func entries(withPrefix prefix: String) -> [Entry] {
        let p = prefix.lowercased()
        return entries.filter { $0.normalizedKey.hasPrefix(p) }
    }

    package static func == (a: VMXFile, b: VMXFile) -> Bool {
        a.path == b.path && a.entries == b.entries
    }

    // MARK: Line syntax

    static func isKeyCharacter(_ c: Unicode.Scalar) -> Bool {
        switch c {
        case "a"..."z", "A"..."Z", "0"..."9", ".", ":", "_", "-": return true
        default: return false
        }
    }

    private static func describe(_ c: Unicode.Scalar) -> String {
        switch c {
        case " ": return "a space"
        case "\t": return "a tab"
        case "\0": return "a NUL byte"
        default:
            if c.isControlCharacter {
                return "control character U+\(String(c.value, radix: 16, uppercase: true))"
            }
            return "'\(Character(c))'"
        }
    }

    private static func trim(_ s: Substring.UnicodeScalarView) -> Substring.UnicodeScalarView {
        var s = s
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return s
    }

    /// What one line holds.
    enum Line {
        case blank
        case entry(Entry)
        /// A syntax error; `key` when the line got as far as a valid key.
        case refused(ConfigError, key: String?)
    }

    static func parseLine(_ raw: Substring, path: String, line: Int) -> Line {
        let text = trim(raw.unicodeScalars)
        if text.isEmpty || text.first == "#" { return .blank }

        func refuse(_ problem: String, expected: String, key: String? = nil) -> Line {
            .refused(ConfigError(path: path, line: line, problem: problem, expected: expected), key: key)
        }

        guard let eq = text.firstIndex(of: "=") else {
            let shown = String(String.UnicodeScalarView(text.prefix(40)))
            return refuse("missing \"=\" in line \"\(shown)\"", expected: "key = \"value\"")
        }
        let keyScalars = trim(text[..<eq])
        if keyScalars.isEmpty {
            return refuse("empty key before \"=\"", expected: "a key such as memsize = \"256\"")
        }
        let key = String(String.UnicodeScalarView(keyScalars))
        if let bad = keyScalars.first(where: { !isKeyCharacter($0) }) {
            return refuse("bad character \(describe(bad)) in key \"\(key)\"",
                          expected: "a key of letters, digits, '.', ':', '_' and '-'")
        }

        let valueText = trim(text[text.index(after: eq)...])
        let value: String
        if valueText.first == "\"" {
            let inner = valueText.dropFirst()
            guard let close = inner.firstIndex(of: "\"") else {
                return refuse("unterminated quote in the value of \"\(key)\"", expected: "a closing '\"'", key: key)
            }
            let after = trim(inner[inner.index(after: close)...])
            if let first = after.first, first != "#" {
                return refuse("unexpected \(describe(first)) after the closing quote of \"\(key)\"",
                              expected: "end of line or a '#' comment", key: key)
            }
            value = decodeEscapes(inner[..<close])
            if let problem = controlCharacterProblem(in: value, key: key) {
                return refuse(problem, expected: "a value without control characters (names and paths cannot hold them)", key: key)
            }
        } else {
            let end = valueText.firstIndex(of: "#") ?? valueText.endIndex
            let unquoted = trim(valueText[..<end])
            if unquoted.contains("\"") {
                return refuse("stray '\"' in the unquoted value of \"\(key)\"",
                              expected: "a value in double quotes, key = \"value\"", key: key)
            }
            value = String(String.UnicodeScalarView(unquoted))
            if let problem = controlCharacterProblem(in: value, key: key) {
                return refuse(problem, expected: "a value without control characters (names and paths cannot hold them)", key: key)
            }
        }
        return .entry(Entry(key: key, value: value, path: path, line: line))
    }

    /// Free-text keys where line breaks and tabs (`|0A`, `|09`) are content, as in ESX.
    static func isFreeTextKey(_ key: String) -> Bool {
        let k = key.lowercased()
        return k == "annotation" || k.hasPrefix("guestinfo.")
    }

    /// NUL anywhere (a path would be cut at it), and any other control character outside
    /// free-text keys (a name with `|0A` would add rows to listings and lines to logs).
    private static func controlCharacterProblem(in value: String, key: String) -> String? {
        guard let bad = value.unicodeScalars.first(where: \.isControlCharacter) else { return nil }
        if bad.value != 0 && isFreeTextKey(key) {
            guard let nul = value.unicodeScalars.first(where: { $0.value == 0 }) else { return nil }
            return "\(describe(nul)) (|00) in the value of \"\(key)\""
        }
        let hex = String(bad.value, radix: 16, uppercase: true)
        let escape = bad.value < 0x100 ? "|" + (hex.count < 2 ? "0" + hex : hex) : "U+" + hex
        return "\(describe(bad)) (\(escape)) in the value of \"\(key)\""
    }

    /// Decodes VMware's `|XX` escapes (as bytes, so multi-byte UTF-8 survives).
    private static func decodeEscapes(_ s: Substring.UnicodeScalarView) -> String {
        guard s.contains("|") else { return String(String.UnicodeScalarView(s)) }
        var bytes: [UInt8] = []
        let utf8 = Array(String(String.UnicodeScalarView(s)).utf8)
        var i = 0
        func hex(_ b: UInt8) -> UInt8? {
            switch b {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return b - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): return b - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): return b - UInt8(ascii: "A") + 10
            default: return nil
            }
        }
        while i < utf8.count {
            if utf8[i] == UInt8(ascii: "|"), i + 2 < utf8.count,
               let h = hex(utf8[i + 1]), let l = hex(utf8[i + 2]) {
                bytes.append(h << 4 | l)
                i += 3
            } else {
                bytes.append(utf8[i])
                i += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// Small file-system helpers for configuration (Glibc; configuration is not a hot path).
enum ConfigFiles {
    struct IOError: Error, CustomStringConvertible {
        var description: String
        init(errno: Int32) { description = String(cString: strerror(errno)) }
        init(_ description: String) { self.description = description }
    }

    /// Largest `.vmx` read (ESX's are a few KiB).
    static let maximumConfigSize = 1 << 20

    /// Reads a configuration file: a regular file of at most 1 MiB (`/dev/zero`, a FIFO
    /// or a directory is refused before anything is read; O_NONBLOCK keeps a FIFO's
    /// open from waiting for a writer).
    static func readText(_ path: String) throws(IOError) -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        if fd < 0 { throw IOError(errno: errno) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw IOError(errno: errno) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw IOError("not a regular file") }
        guard st.st_size <= maximumConfigSize else { throw IOError("\(st.st_size) bytes, larger than 1 MiB") }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while bytes.count <= maximumConfigSize {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw IOError(errno: errno)
            }
            if n == 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
        }
        guard bytes.count <= maximumConfigSize else { throw IOError("it grew past 1 MiB while being read") }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// True when `path` names an existing regular file (following symlinks).
    static func isRegularFile(_ path: String) -> Bool {
        var st = stat()
        guard stat(path, &st) == 0 else { return false }
        return (st.st_mode & S_IFMT) == S_IFREG
    }

    static func currentDirectory() -> String {
        guard let p = getcwd(nil, 0) else { return "." }
        defer { free(p) }
        return String(cString: p)
    }

    /// The directory part of `path`, made absolute against the current directory.
    static func absoluteDirectory(of path: String) -> String {
        let dir: String
        if let slash = path.lastIndex(of: "/") {
            dir = slash == path.startIndex ? "/" : String(path[..<slash])
        } else {
            dir = "."
        }
        return HostFile.normalize(dir.hasPrefix("/") ? dir : currentDirectory() + "/" + dir)
    }

    /// `path` if absolute, else `path` relative to `directory`; "." components and
    /// repeated slashes removed (".." is kept: it is not lexically safe with symlinks).

    /// The last path component without its extension: "/a/b/vm.vmx" → "vm".
    static func baseName(_ path: String) -> String {
        let name = path.split(separator: "/").last.map(String.init) ?? path
        if let dot = name.lastIndex(of: "."), dot != name.startIndex { return String(name[..<dot]) }
        return name
    }
}
