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
    /// `scsiN:M.deviceType`: a disk (the default) or a CD-ROM drive holding an ISO image.
    var kind: VirtualDiskKind
    /// file:line of the `fileName` entry, for messages about the disk.
    var location: String

    init(unit: Int, path: String, mode: DiskMode = .persistent, undoableAction: UndoableAction = .keep,
         kind: VirtualDiskKind = .hardDisk, location: String) {
        self.unit = unit
        self.path = path
        self.mode = mode
        self.undoableAction = undoableAction
        self.kind = kind
        self.location = location
    }
}

/// What a SCSI unit is, by `scsiN:M.deviceType` (the values ESX writes).
enum VirtualDiskKind: Equatable, Sendable, CaseIterable {
    /// "scsi-hardDisk" (or "disk"): `fileName` is a virtual disk in its `mode`.
    case hardDisk
    /// "cdrom-image": a CD-ROM drive with `fileName`, an ISO 9660 image, inserted
    /// (read-only, 2048-byte blocks; `mode` does not apply).
    case cdromImage

    /// `deviceType` values, lower-cased, and what they name.
    static let names: [(String, VirtualDiskKind)] = [("scsi-harddisk", .hardDisk), ("disk", .hardDisk), ("cdrom-image", .cdromImage)]
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
