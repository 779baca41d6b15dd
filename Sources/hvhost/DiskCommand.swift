import ArgumentParser
import Glibc
import HVHostIO

/// `hvhost disk create|info|commit|check`: the operator's side of virtual disks.
struct DiskCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "disk",
        abstract: "Create, inspect, check virtual disk images and commit redo logs.",
        discussion: """
            Formats: flat (raw), monolithicSparse (a VMDK sparse extent that grows as it is written) and \
            monolithicFlat (a VMDK descriptor plus NAME-flat.vmdk). Redo logs are VMDK sparse deltas named \
            DISK.REDO beside their disk.
            """,
        subcommands: [Create.self, Info.self, Commit.self, Check.self])

    struct Create: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Create an empty disk image.")

        @Option(name: .shortAndLong, help: "flat, monolithicSparse (or sparse) or monolithicFlat.")
        var format: String = "monolithicSparse"

        @Option(name: .shortAndLong, help: ArgumentHelp("Capacity: bytes, or a number with K, M, G or T (binary units), a whole number of 512-byte sectors.", valueName: "size"))
        var size: String

        @Argument(help: ArgumentHelp("The image to create (an existing file is refused).", valueName: "path"))
        var path: String

        func run() throws {
            let chosen: DiskImageFormat? = format.lowercased() == "sparse" ? .sparse
                : DiskImageFormat.allCases.first { $0.rawValue.lowercased() == format.lowercased() }
            guard let chosen else {
                throw ValidationError("--format \"\(format)\": expected flat, monolithicSparse or monolithicFlat")
            }
            guard let bytes = DiskCommand.parseSize(size), bytes > 0, bytes % 512 == 0 else {
                throw ValidationError("--size \"\(size)\": expected a positive whole number of 512-byte sectors, e.g. 512M or 8G")
            }
            try DiskCommand.reporting { try DiskImage.create(path: path, format: chosen, sectors: bytes / 512) }
            print("\(path): created \(chosen.rawValue), \(bytes / 512) sectors (\(DiskCommand.humanSize(bytes)))")
        }
    }

    struct Info: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print an image's format, capacity, allocation and parent chain.")

        @Argument(help: ArgumentHelp("The image.", valueName: "path"))
        var path: String

        func run() throws {
            let disk = try DiskCommand.reporting { try DiskImage.open(path: path, writable: false, owner: "hvhost disk info") }
            defer { disk.close() }
            for (depth, image) in disk.chain.enumerated() {
                let indent = String(repeating: "  ", count: depth)
                let role = depth == 0 ? "" : "parent: "
                print("\(indent)\(role)\(image.path)")
                print("\(indent)  format: \(image.format.rawValue)")
                print("\(indent)  capacity: \(image.sectorCount) sectors (\(DiskCommand.humanSize(image.sectorCount * 512)))")
                if let cid = image.contentID { print("\(indent)  CID: \(String(format8: cid))") }
                if let sparse = image as? SparseExtent {
                    let grains = try DiskCommand.reporting { try sparse.allocatedGrains().count }
                    let total = (sparse.sectorCount + sparse.header.grainSize - 1) / sparse.header.grainSize
                    print("\(indent)  grain size: \(sparse.header.grainSize) sectors")
                    print("\(indent)  allocated grains: \(grains) of \(total)")
                    if let d = sparse.descriptor, d.parentFileNameHint != nil {
                        print("\(indent)  parentCID: \(String(format8: d.parentContentID))")
                    }
                    if let mode = sparse.descriptor?.value("ddb.hvhost.redoMode") { print("\(indent)  redo log made in \(mode) mode") }
                }
                if image.files.count > 1 { print("\(indent)  files: \(image.files.joined(separator: ", "))") }
            }
        }
    }

    struct Commit: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Fold a redo log into its parent disk and delete it.",
            discussion: "Give the redo log (DISK.REDO) or the disk whose redo log to commit. The disk must not be in use.")

        @Argument(help: ArgumentHelp("The redo log, or its disk.", valueName: "path"))
        var path: String

        func run() throws {
            let redo = path.hasSuffix(RedoLog.suffix) ? path : RedoLog.path(for: path)
            guard access(redo, F_OK) == 0 else {
                HostConsole.printError("error: \(redo): no such redo log")
                throw ExitCode(2)
            }
            let grains = try DiskCommand.reporting { try RedoLog.commit(redo, owner: "hvhost disk commit") }
            print("\(redo): committed \(grains) grain\(grains == 1 ? "" : "s") into its parent and deleted it")
        }
    }

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Verify an image's metadata and its parent chain.",
            discussion: "Exits 0 when consistent, 2 listing every problem otherwise.")

        @Argument(help: ArgumentHelp("The image.", valueName: "path"))
        var path: String

        func run() throws {
            let problems = DiskImageCheck.problems(path: path)
            guard problems.isEmpty else {
                for p in problems { HostConsole.printError("error: \(p)") }
                throw ExitCode(2)
            }
            print("\(path): no problems found")
        }
    }

    /// Runs `body`, turning a `DiskError` into its message and exit status 2.
    static func reporting<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as DiskError {
            HostConsole.printError("error: \(error)")
            throw ExitCode(2)
        }
    }

    static func parseSize(_ text: String) -> UInt64? {
        let units: [Character: UInt64] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40]
        var digits = Substring(text.uppercased())
        if digits.hasSuffix("B") { digits = digits.dropLast() }
        var scale: UInt64 = 1
        if let last = digits.last, let u = units[last] { scale = u; digits = digits.dropLast() }
        guard let n = UInt64(digits) else { return nil }
        let (v, overflow) = n.multipliedReportingOverflow(by: scale)
        return overflow ? nil : v
    }

    static func humanSize(_ bytes: UInt64) -> String {
        for (unit, scale) in [("TiB", UInt64(1) << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] where bytes >= scale {
            return bytes % scale == 0 ? "\(bytes / scale) \(unit)" : "\(bytes) bytes"
        }
        return "\(bytes) bytes"
    }
}

extension String {
    /// Eight hex digits, as VMDK descriptors write CIDs.
    init(format8 v: UInt32) {
        let s = String(v, radix: 16)
        self = String(repeating: "0", count: 8 - s.count) + s
    }
}
