import HVSupport

/// `hv.resetLimit`: how many guest resets within how many seconds make the host give up on
/// the VM ("guest reset loop") instead of booting it again. ESX-like default 5 in 10 s;
/// "off" reboots forever.
package struct ResetLimit: Equatable, Sendable, CustomStringConvertible {
    package var count: Int
    package var seconds: Int

    package static let standard = ResetLimit(count: 5, seconds: 10)
    static let expected = "RESETS/SECONDS with 1...1000 resets and 1...3600 seconds (e.g. 5/10), or off"

    package init(count: Int, seconds: Int) {
        self.count = count
        self.seconds = seconds
    }

    /// "5/10" or "off" (.some(nil): no limit); nil when malformed (the caller reports it).
    static func parse(_ text: String) -> ResetLimit?? {
        let t = text.filter { $0 != " " && $0 != "\t" }.lowercased()
        if t == "off" { return .some(nil) }
        let parts = t.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, parts.allSatisfy({ $0.count <= 4 && $0.allSatisfy { $0.isASCII && $0.isNumber } }),
              let n = Int(parts[0]), (1...1000).contains(n),
              let s = Int(parts[1]), (1...3600).contains(s) else { return nil }
        return .some(ResetLimit(count: n, seconds: s))
    }

    package var description: String { "\(count)/\(seconds)" }
}

extension DeviceCallWatch.Limits {
    static let expected = "STALL_MS/FAIL_MS with 1...60000 ms each, the second not below the first (e.g. 100/5000), or off"

    /// `hv.deviceCallLimit`: "100/5000" or "off" (.some(nil)); nil when malformed.
    static func parse(_ text: String) -> DeviceCallWatch.Limits?? {
        let t = text.filter { $0 != " " && $0 != "\t" }.lowercased()
        if t == "off" { return .some(nil) }
        let parts = t.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, parts.allSatisfy({ $0.count <= 5 && $0.allSatisfy { $0.isASCII && $0.isNumber } }),
              let stall = UInt64(parts[0]), (1...60000).contains(stall),
              let fail = UInt64(parts[1]), (stall...60000).contains(fail) else { return nil }
        return .some(DeviceCallWatch.Limits(stall: stall * 1_000_000, fail: fail * 1_000_000))
    }
}
