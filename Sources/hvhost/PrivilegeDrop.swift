import Glibc

/// `--user NAME`: once /dev/kvm, the VMs' files and the console socket are open, the
/// host goes on as that user (its groups, gid and uid, in that order, for every thread),
/// and checks that root cannot be regained. Files opened later (a guest reset rebuilds its
/// VM; `resume` from the console) are opened as that user.
enum PrivilegeDrop {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// The user's uid and gid; throws when there is no such user.
    static func lookUp(_ name: String) throws(Failure) -> (uid: uid_t, gid: gid_t) {
        guard let pw = getpwnam(name) else { throw Failure(description: "--user \(name): no such user") }
        return (pw.pointee.pw_uid, pw.pointee.pw_gid)
    }

    static func drop(to name: String) throws(Failure) {
        let (uid, gid) = try lookUp(name)
        func fail(_ call: String) -> Failure {
            Failure(description: "--user \(name): \(call) failed: \(String(cString: strerror(errno)))")
        }
        guard initgroups(name, gid) == 0 else { throw fail("initgroups") }
        guard setgid(gid) == 0 else { throw fail("setgid(\(gid))") }
        guard setuid(uid) == 0 else { throw fail("setuid(\(uid))") }
        if uid != 0 && (setuid(0) == 0 || geteuid() == 0) {
            throw Failure(description: "--user \(name): root could be regained after setuid(\(uid))")
        }
    }
}
