import HVSupport

/// A problem in a `.vmx` file, located precisely enough to fix it.
///
/// `description` reads
/// `<file>:<line>: <key> = "<value>": <problem>, expected <expected>`;
/// the key/value part is absent for syntax errors (there is no key yet) and the
/// line is absent for a required key that is missing from the file.
package struct ConfigError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The configuration file's path as it was given.
    var path: String
    /// 1-based line number, or nil when the problem is an absent key.
    var line: Int?
    /// The key in its original spelling, when the problem is about one key.
    var key: String?
    /// The offending value, when there is one.
    var value: String?
    /// What is wrong.
    var problem: String
    /// What would have been accepted.
    var expected: String

    init(path: String, line: Int?, key: String? = nil, value: String? = nil,
                problem: String, expected: String) {
        self.path = path
        self.line = line
        self.key = key
        self.value = value
        self.problem = problem
        self.expected = expected
    }

    /// Control characters of the file (in a value, a key, a path) are shown escaped.
    package var description: String {
        var s = path.escapingControlCharacters
        if let line { s += ":\(line)" }
        s += ": "
        if let key {
            s += key.escapingControlCharacters
            if let value { s += " = \"\(value.escapingControlCharacters)\"" }
            s += ": "
        }
        s += problem.escapingControlCharacters
        s += ", expected "
        s += expected
        return s
    }
}

/// Every problem found in one `.vmx` file, in file order (problems about absent keys
/// last). Never empty. `description` is one `ConfigError` description per line.
package struct ConfigErrors: Error, CustomStringConvertible, Equatable, Sendable {
    package let errors: [ConfigError]

    /// `errors` must not be empty.
    init(_ errors: [ConfigError]) {
        precondition(!errors.isEmpty, "ConfigErrors needs at least one error")
        self.errors = errors
    }

    package var description: String { errors.map(\.description).joined(separator: "\n") }

    /// Sorts problems by line (absent keys, which have no line, last), keeping the
    /// order of problems on the same line.
    static func inFileOrder(_ problems: [ConfigError]) -> [ConfigError] {
        problems.enumerated().sorted { a, b in
            let la = a.element.line ?? Int.max, lb = b.element.line ?? Int.max
            return la != lb ? la < lb : a.offset < b.offset
        }.map(\.element)
    }
}
