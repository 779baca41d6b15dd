/// ESX 2.x virtual disk modes (`scsiN:M.mode`).
enum DiskMode: String, Sendable, CaseIterable {
    /// Writes go to the disk immediately.
    case persistent
    /// Writes go to a redo log discarded at power-off.
    case nonpersistent
    /// Writes go to a redo log; commit, keep or discard at power-off.
    case undoable
    /// Writes go to a redo log that keeps growing until committed.
    case append

    /// The modes this host runs: the others need redo logs, which the VMkernel's
    /// storage does not have yet, so configuration refuses them up front (power-on
    /// would fail).
    static let supported: [DiskMode] = [.persistent]
    var isSupported: Bool { Self.supported.contains(self) }
}

/// One disk on a SCSI adapter, `scsiN:M.*`.
struct VirtualDiskConfiguration: Equatable, Sendable {
    /// SCSI target id M: 0...15 except 7 (the adapter's own id).
    var unit: Int
    /// `scsiN:M.fileName` resolved against the `.vmx` file's directory.
    var path: String
    var mode: DiskMode
    /// `scsiN:M.deviceType` as written (e.g. "scsi-hardDisk"), if present.
    var deviceType: String?
    /// file:line of the `fileName` entry, for messages about the disk.
    var location: String

    init(unit: Int, path: String, mode: DiskMode = .persistent, deviceType: String? = nil,
                location: String) {
        self.unit = unit
        self.path = path
        self.mode = mode
        self.deviceType = deviceType
        self.location = location
    }
}

/// A virtual SCSI adapter, `scsiN.*` (N in 0...3), with its disks.
struct SCSIAdapterConfiguration: Equatable, Sendable {
    var index: Int
    /// "scsi0" …
    var prefix: String { "scsi\(index)" }
    /// Plugin model (`scsiN.virtualDev`), default "buslogic" (the ESX 2.x default).
    var model: String
    /// Present disks ordered by unit.
    var disks: [VirtualDiskConfiguration]

    init(index: Int, model: String = "buslogic", disks: [VirtualDiskConfiguration] = []) {
        self.index = index
        self.model = model
        self.disks = disks
    }

    /// Valid target ids for disks: 0...15 without 7.
    static let validUnits: [Int] = Array(0...15).filter { $0 != adapterUnit }
    /// The SCSI id the adapter itself uses.
    static let adapterUnit = 7
}

/// The display adapter, `svga.*`.
struct DisplayConfiguration: Equatable, Sendable {
    /// Plugin model (`svga.virtualDev`), default "svga".
    var model: String
    /// `svga.vramSize` in bytes; nil leaves the choice to the plugin.
    var vramSize: UInt64?

    init(model: String = "svga", vramSize: UInt64? = nil) {
        self.model = model
        self.vramSize = vramSize
    }
}
