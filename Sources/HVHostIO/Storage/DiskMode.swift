/// ESX 2.x virtual disk modes (`scsiN:M.mode`).
package enum DiskMode: String, Sendable, CaseIterable {
    /// Writes go to the disk immediately.
    case persistent
    /// Writes go to a redo log discarded at power-off.
    case nonpersistent
    /// Writes go to a redo log; at power-off it is kept, committed or discarded
    /// (`UndoableAction`).
    case undoable
    /// Writes go to a redo log that keeps growing across power cycles until
    /// `hvhost disk commit`.
    case append

    /// Whether the base disk sits under a redo log in this mode.
    package var usesRedoLog: Bool { self != .persistent }
}

/// What an undoable disk's power-off does with its redo log
/// (`scsiN:M.undoableAction`, default keep: nothing is lost without asking).
package enum UndoableAction: String, Sendable, CaseIterable {
    /// The redo log stays; the next power-on continues on it.
    case keep
    /// The redo log is folded into the base disk and deleted.
    case commit
    /// The redo log is deleted; the base disk is as it was before.
    case discard
}
