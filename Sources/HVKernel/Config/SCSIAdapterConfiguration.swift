import HVHostIO

/// One disk on a SCSI adapter, `scsiN:M.*`.
struct VirtualDiskConfiguration: Equatable, Sendable {
    /// SCSI target id M: 0...15 except 7 (the adapter's own id).
    var unit: Int
    /// `scsiN:M.fileName` resolved against the `.vmx` file's directory.
    var path: String
    var mode: DiskMode
    /// `scsiN:M.undoableAction`: what an undoable disk's power-off does with its redo log.
    var undoableAction: UndoableAction
    /// `scsiN:M.deviceType` as written (e.g. "scsi-hardDisk"), if present.
    var deviceType: String?
    /// file:line of the `fileName` entry, for messages about the disk.
    var location: String

    init(unit: Int, path: String, mode: DiskMode = .persistent, undoableAction: UndoableAction = .keep,
         deviceType: String? = nil, location: String) {
        self.unit = unit
        self.path = path
        self.mode = mode
        self.undoableAction = undoableAction
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
