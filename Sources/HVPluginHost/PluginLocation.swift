import Glibc

/// Where a plugin may be loaded from, checked as ssh checks its key files: the library
/// and the directory holding it must be owned by root or by the user running hvhost
/// and not writable by group or others, so nobody else can put code into the host (it
/// runs as root with /dev/kvm). The directory's parents are not checked (a plugin under
/// a sticky /tmp directory of one's own is fine).
enum PluginLocation {
    /// What is wrong with loading `path`, or nil.
    static func problem(with path: String) -> String? {
        let real = PluginSearchPath.realPath(path) ?? path
        if let p = problem(at: real, what: "the library") { return p }
        let dir: String
        if let slash = real.lastIndex(of: "/") {
            dir = slash == real.startIndex ? "/" : String(real[..<slash])
        } else {
            dir = "."
        }
        return problem(at: dir, what: "its directory")
    }

    private static func problem(at path: String, what: String) -> String? {
        var st = stat()
        guard stat(path, &st) == 0 else { return "\(what) \(path) cannot be examined: \(String(cString: strerror(errno)))" }
        let owners: Set<uid_t> = [0, getuid(), geteuid()]
        guard owners.contains(st.st_uid) else {
            return "\(what) \(path) is owned by uid \(st.st_uid), not by root or the user running hvhost (uid \(geteuid()))"
        }
        if st.st_mode & (S_IWGRP | S_IWOTH) != 0 {
            let who = st.st_mode & S_IWOTH != 0 ? "everyone" : "its group"
            return "\(what) \(path) is writable by \(who) (mode \(String(st.st_mode & 0o7777, radix: 8))); chmod go-w it"
        }
        return nil
    }
}
