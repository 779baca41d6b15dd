import Glibc
import HVSupport

/// A VM's disk in its ESX mode, from power-on to power-off: what a SCSI adapter reads
/// and writes.
///
/// - persistent: the base disk, opened for writing. Refused while an undoable or
///   append redo log is pending (its changes would be silently lost).
/// - nonpersistent: a fresh redo log over the base (opened read-only, shared) each
///   power-on, deleted at power-off. A log left by a crash is discarded.
/// - undoable: a redo log kept across power cycles; at power-off `undoableAction`
///   keeps, commits or discards it.
/// - append: a redo log that grows across power cycles until `hvhost disk commit`.
///
/// A guest reset and a suspend are not power-offs: `detach(poweringOff: false)` keeps
/// every redo log and `continuing: true` on the next attach reuses a nonpersistent one.
package final class AttachedDisk: VirtualDisk, @unchecked Sendable, CustomStringConvertible {
    package let path: String
    package let mode: DiskMode
    package let undoableAction: UndoableAction
    /// The disk the VM uses: the base (persistent) or the redo log over it.
    package let disk: any ImageDisk
    package var sectorSize: Int { disk.sectorSize }
    package var sectorCount: UInt64 { disk.sectorCount }
    package var isReadOnly: Bool { disk.isReadOnly }
    private let owner: String
    private let detached = HostLocked(false)

    /// Attaches the disk at `path` in `mode` for `owner` (e.g. "VM 'web01'"): takes the
    /// image locks and prepares the redo log. `continuing` is true when the VM comes
    /// back from a reset or a suspend (a nonpersistent log is kept then).
    package init(path: String, mode: DiskMode, undoableAction: UndoableAction = .keep, owner: String,
                 continuing: Bool = false) throws {
        self.path = path
        self.mode = mode
        self.undoableAction = undoableAction
        self.owner = owner
        let redo = RedoLog.path(for: path)
        if access(redo, F_OK) == 0 {
            let made = try RedoLog.recordedMode(redo)   // nil: a delta made by another tool
            if made == .nonpersistent && !(mode == .nonpersistent && continuing) {
                // A nonpersistent log that outlived its power-off (a crash): its changes
                // were never meant to stay.
                guard unlink(redo) == 0 else {
                    throw DiskError.io(path: redo, operation: "discard the stale nonpersistent redo log", errno: errno)
                }
            } else if mode == .persistent || (mode == .nonpersistent && made != .nonpersistent) {
                throw DiskError.invalidImage(path: path, reason: "a redo log '\(redo)' with changes not in the disk exists (\(made.map { "made in \($0.rawValue) mode" } ?? "made by another tool")); \(mode.rawValue) mode would bypass it: fold it in with `hvhost disk commit \(redo)` or delete it, or use the mode that made it")
            }
        }

        guard mode.usesRedoLog else {
            disk = try DiskImage.open(path: path, writable: true, owner: owner)
            return
        }
        if access(redo, F_OK) == 0 {
            disk = try DiskImage.open(path: redo, writable: true, owner: owner)
        } else {
            let base = try DiskImage.open(path: path, writable: false, owner: owner)
            do {
                disk = try RedoLog.create(path: redo, over: base, mode: mode, owner: owner)
            } catch {
                base.close()
                throw error
            }
        }
    }

    package var description: String { "\(mode.rawValue) disk '\(path)'" }

    package func read(sector: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws {
        try disk.read(sector: sector, into: buffer)
    }

    package func write(sector: UInt64, from buffer: UnsafeRawBufferPointer) throws {
        try disk.write(sector: sector, from: buffer)
    }

    package func flush() throws {
        try disk.flush()
    }

    /// Discards reach the disk in use: the base punches holes in persistent mode, a redo
    /// log (which cannot give grains back) writes zeros.
    package var supportsDiscard: Bool { disk.supportsDiscard }

    package func discard(sector: UInt64, count: UInt64) throws {
        try disk.discard(sector: sector, count: count)
    }

    /// Closes the disk (no I/O may be in flight) and, when `poweringOff`, applies the
    /// mode: a nonpersistent log is deleted, an undoable one kept, committed or
    /// discarded. Idempotent; the action runs once.
    package func detach(poweringOff: Bool) throws {
        guard detached.withLock({ d in defer { d = true }; return !d }) else { return }
        let flushError: Error?
        do { try disk.flush(); flushError = nil } catch { flushError = error }
        disk.close()
        if let flushError { throw flushError }
        guard poweringOff, mode.usesRedoLog else { return }
        let redo = RedoLog.path(for: path)
        switch (mode, undoableAction) {
        case (.nonpersistent, _), (.undoable, .discard):
            guard unlink(redo) == 0 else { throw DiskError.io(path: redo, operation: "discard the redo log", errno: errno) }
        case (.undoable, .commit):
            try RedoLog.commit(redo, owner: owner)
        default:
            break
        }
    }
}
