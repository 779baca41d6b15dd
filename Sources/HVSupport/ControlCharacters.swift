extension String {
    /// The text with every control character (C0, DEL, C1) shown as an escape (`\n`,
    /// `\t`, `\u{1B}`), for echoing untrusted text (config values, names, plugin strings)
    /// into messages, listings and logs: a name with `|0A` cannot add rows or lines, and
    /// terminal escape sequences are not passed through.
    package var escapingControlCharacters: String {
        guard unicodeScalars.contains(where: \.isControlCharacter) else { return self }
        var out = ""
        for s in unicodeScalars {
            switch s {
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if s.isControlCharacter { out += "\\u{\(String(s.value, radix: 16, uppercase: true))}" }
                else { out.unicodeScalars.append(s) }
            }
        }
        return out
    }
}

extension Unicode.Scalar {
    /// C0 controls, DEL and C1 controls.
    package var isControlCharacter: Bool { value < 0x20 || (0x7F...0x9F).contains(value) }
}
