import Glibc
import HVSupport
import Synchronization

/// The lock on an open image, in QEMU's layout so hvhost and QEMU refuse each other
/// too: open-file-description (OFD) `fcntl` read locks on single bytes, byte 100+p
/// meaning "holds permission p" and byte 200+p "lets nobody else have p", for p =
/// 0 consistent read, 1 write, 2 write-unchanged, 3 resize.
///
/// A writer holds read/write/write-unchanged/resize and shares only read and
/// write-unchanged; a reader (a read-only disk, the base under a redo log) holds read
/// and refuses others write and resize. So readers coexist, and a writer excludes
/// everyone. OFD locks belong to the open file, not the process: two VMs in one process
/// conflict as two processes do, and the locks vanish when the file is closed, even by
/// SIGKILL.
///
/// The holder of a conflicting lock is named when known: VMs of this process from a
/// registry, other processes by finding the lock in `/proc/<pid>/fdinfo` (OFD locks
/// show no pid in `/proc/locks`).
final class ImageLock {
    private static let permissionBase: Int64 = 100
    private static let unsharedBase: Int64 = 200
    private static let read = 0, write = 1, writeUnchanged = 2, resize = 3
    /// F_OFD_GETLK / F_OFD_SETLK from <fcntl.h> (Linux 3.15+), which Glibc does not export to Swift.
    private static let ofdGetLock: Int32 = 36, ofdSetLock: Int32 = 37

    private static let registry = HostLocked<[Key: [(id: Int, owner: String, exclusive: Bool)]]>([:])
    private static let nextID = Atomic<Int>(1)

    private struct Key: Hashable { let device: UInt64, inode: UInt64 }
    private let key: Key
    private let id: Int

    /// Locks `fd` or throws `DiskError.locked` naming the holder. On failure the
    /// bytes taken so far are released when the caller closes `fd`.
    init(fd: Int32, path: String, device: UInt64, inode: UInt64, exclusive: Bool, owner: String) throws {
        key = Key(device: device, inode: inode)
        id = Self.nextID.wrappingAdd(1, ordering: .relaxed).oldValue
        let held = exclusive ? [Self.read, Self.write, Self.writeUnchanged, Self.resize] : [Self.read]
        let unshared = [Self.write, Self.resize]
        // Take ours first, then test the others' (QEMU's order): two openers racing both
        // see each other and both fail rather than both succeed.
        for p in held { try Self.set(fd: fd, byte: Self.permissionBase + Int64(p), path: path) }
        for p in unshared { try Self.set(fd: fd, byte: Self.unsharedBase + Int64(p), path: path) }
        let conflict = held.contains { Self.lockedByOthers(fd: fd, byte: Self.unsharedBase + Int64($0)) }
            || unshared.contains { Self.lockedByOthers(fd: fd, byte: Self.permissionBase + Int64($0)) }
        if conflict {
            throw DiskError.locked(path: path, holder: Self.holder(of: key, fd: fd), forWriting: exclusive)
        }
        Self.registry.withLock { $0[key, default: []].append((id, owner, exclusive)) }
    }

    /// Forgets the registration; the fcntl locks go with the file's close.
    func release() {
        Self.registry.withLock { r in
            r[key]?.removeAll { $0.id == id }
            if r[key]?.isEmpty == true { r[key] = nil }
        }
    }

    private static func set(fd: Int32, byte: Int64, path: String) throws {
        var l = flock()
        l.l_type = Int16(F_RDLCK)
        l.l_whence = Int16(SEEK_SET)
        l.l_start = off_t(byte)
        l.l_len = 1
        while fcntl(fd, ofdSetLock, &l) != 0 {
            if errno == EINTR { continue }
            if errno == EAGAIN || errno == EACCES { return }   // someone holds it exclusively: the test below reports it
            throw DiskError.io(path: path, operation: "lock", errno: errno)
        }
    }

    /// Whether another open file holds a lock on `byte` (a write-lock probe conflicts
    /// with any read lock but our own).
    private static func lockedByOthers(fd: Int32, byte: Int64) -> Bool {
        var l = flock()
        l.l_type = Int16(F_WRLCK)
        l.l_whence = Int16(SEEK_SET)
        l.l_start = off_t(byte)
        l.l_len = 1
        while fcntl(fd, ofdGetLock, &l) != 0 {
            if errno != EINTR { return true }   // cannot tell: refuse rather than risk two writers
        }
        return l.l_type != Int16(F_UNLCK)
    }

    /// "VM 'name' in this process (…)" or "process PID (command line)"; nil when unknown.
    private static func holder(of key: Key, fd: Int32) -> String? {
        let local = registry.withLock { $0[key] ?? [] }
        if let h = local.first(where: { $0.exclusive }) ?? local.first {
            return "\(h.owner) in this process (hvhost pid \(getpid()), \(h.exclusive ? "writing" : "reading"))"
        }
        return otherProcessHolder(of: key)
    }

    /// Scans `/proc/*/fdinfo/*` for an OFD lock in our byte range on this file.
    private static func otherProcessHolder(of key: Key) -> String? {
        let dev = key.device
        let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & ~UInt64(0xfff))
        let minor = (dev & 0xff) | ((dev >> 12) & ~UInt64(0xff))
        let hex = { (v: UInt64) -> String in let s = String(v, radix: 16); return s.count < 2 ? "0" + s : s }
        let token = "\(hex(major)):\(hex(minor)):\(key.inode)"
        guard let proc = opendir("/proc") else { return nil }
        defer { closedir(proc) }
        let me = getpid()
        while let entry = readdir(proc) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard let pid = Int32(name), pid != me, let fdinfo = opendir("/proc/\(pid)/fdinfo") else { continue }
            defer { closedir(fdinfo) }
            while let f = readdir(fdinfo) {
                let fdName = withUnsafeBytes(of: f.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                guard Int(fdName) != nil, let text = procText("/proc/\(pid)/fdinfo/\(fdName)", limit: 1 << 16) else { continue }
                for line in text.split(separator: "\n") where line.hasPrefix("lock:") {
                    let fields = line.split(separator: " ", omittingEmptySubsequences: true)
                    guard let at = fields.firstIndex(where: { $0 == token }), at + 1 < fields.count,
                          let start = Int64(fields[at + 1]), (permissionBase..<unsharedBase + 8).contains(start) else { continue }
                    let command = procText("/proc/\(pid)/cmdline", limit: 4096)?
                        .split(separator: "\0").joined(separator: " ") ?? "?"
                    return "process \(pid) (\(command))"
                }
            }
        }
        return nil
    }

    /// A /proc file's text (those report size 0, so read to the end), at most `limit` bytes.
    private static func procText(_ path: String, limit: Int) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: limit)
        var filled = 0
        while filled < limit {
            let n = bytes.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + filled, limit - filled) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            filled += n
        }
        return String(decoding: bytes[0..<filled], as: UTF8.self)
    }
}
