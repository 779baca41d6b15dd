import HVMemory
import HVSupport

/// What a firmware configuration device serves: numbered items (QEMU's fixed keys) and
/// named files, numbered from `FirmwareConfig.Key.firstFile` in the order given.
package struct FirmwareConfigItems: Sendable {
    package var items: [UInt16: [UInt8]] = [:]
    package var files: [(name: String, bytes: [UInt8])] = []

    package init() {}

    package mutating func set(_ key: UInt16, _ bytes: [UInt8]) { items[key] = bytes }
    /// A little-endian integer item, `width` bytes (QEMU's numeric items are little-endian).
    package mutating func set(_ key: UInt16, integer: UInt64, width: Int) {
        items[key] = (0..<width).map { UInt8(truncatingIfNeeded: integer >> (8 * UInt64($0))) }
    }
    package mutating func addFile(_ name: String, _ bytes: [UInt8]) { files.append((name, bytes)) }
}

/// QEMU's firmware configuration interface (fw_cfg) at ports 0x510-0x51B, the way
/// SeaBIOS (src/fw/paravirt.c) and QEMU's linuxboot option ROM speak it:
/// - 0x510 (16-bit write): select an item and rewind it;
/// - 0x511 (8-bit read): the selected item's next byte, 0 past its end;
/// - 0x514/0x518 (two 32-bit writes, big-endian bytes, the low half last and triggering):
///   the guest-physical address of a DMA descriptor {be32 control, be32 length,
///   be64 address}. Control bits: 0x01 error, 0x02 read, 0x04 skip, 0x08 select (item in
///   bits 16-31), 0x10 write. The device reads or skips `length` bytes of the selected
///   item (past its end a read stores zeros), then stores the control word back as 0, or
///   with the error bit when a guest address was not RAM or a write was asked (no item
///   here is writable). Reading 0x514-0x51B gives the signature "QEMU CFG".
/// Item 0 is "QEMU", item 1 the feature bits (traditional + DMA), item 0x19 the file
/// directory: be32 count, then per file be32 size, be16 key, be16 reserved, name[56].
package final class FirmwareConfig: BusDevice, @unchecked Sendable {
    package static let portBase: UInt16 = 0x510
    package static let portSize: UInt64 = 12

    /// QEMU's item keys (include/standard-headers/linux/qemu_fw_cfg.h).
    package enum Key {
        package static let signature: UInt16 = 0x00
        package static let id: UInt16 = 0x01
        package static let ramSize: UInt16 = 0x03
        package static let noGraphic: UInt16 = 0x04
        package static let cpuCount: UInt16 = 0x05
        package static let kernelAddress: UInt16 = 0x07
        package static let kernelSize: UInt16 = 0x08
        package static let initrdAddress: UInt16 = 0x0A
        package static let initrdSize: UInt16 = 0x0B
        package static let bootMenu: UInt16 = 0x0E
        package static let maxCPUs: UInt16 = 0x0F
        package static let kernelData: UInt16 = 0x11
        package static let initrdData: UInt16 = 0x12
        package static let commandLineAddress: UInt16 = 0x13
        package static let commandLineSize: UInt16 = 0x14
        package static let commandLineData: UInt16 = 0x15
        package static let setupAddress: UInt16 = 0x16
        package static let setupSize: UInt16 = 0x17
        package static let setupData: UInt16 = 0x18
        package static let fileDirectory: UInt16 = 0x19
        package static let firstFile: UInt16 = 0x20
    }

    enum DMAControl {
        static let error: UInt32 = 0x01
        static let read: UInt32 = 0x02
        static let skip: UInt32 = 0x04
        static let select: UInt32 = 0x08
        static let write: UInt32 = 0x10
    }

    static let fileNameSize = 56
    /// Feature bits in item 1: the port interface and DMA.
    static let features: UInt32 = 0x3
    static let dmaSignature = Array("QEMU CFG".utf8)

    private let memory: GuestMemory
    private let lock = HostLock()
    private let items: [UInt16: [UInt8]]
    private var selected: UInt16 = 0
    private var position = 0
    private var dmaHigh: UInt32 = 0

    /// Serves `contents`; DMA reaches `memory`. Throws nothing: a file name longer than
    /// 55 bytes or more than 0x3FE0 files is a programming error.
    package init(contents: FirmwareConfigItems, memory: GuestMemory) {
        self.memory = memory
        precondition(contents.files.count < 0x3FE0)
        var items = contents.items
        items[Key.signature] = Array("QEMU".utf8)
        items[Key.id] = (0..<4).map { UInt8(truncatingIfNeeded: Self.features >> (8 * UInt32($0))) }
        var directory = Self.bigEndian(UInt32(contents.files.count))
        for (i, file) in contents.files.enumerated() {
            let key = Key.firstFile + UInt16(i)
            precondition(file.name.utf8.count < Self.fileNameSize)
            items[key] = file.bytes
            directory += Self.bigEndian(UInt32(file.bytes.count))
            directory += Self.bigEndian(UInt32(key) << 16)    // be16 key, be16 reserved
            directory += Array(file.name.utf8) + [UInt8](repeating: 0, count: Self.fileNameSize - file.name.utf8.count)
        }
        items[Key.fileDirectory] = directory
        self.items = items
    }

    static func bigEndian(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (24 - 8 * UInt32($0))) } }
    static func bigEndian32(_ b: UnsafeRawBufferPointer) -> UInt32 { b.prefix(4).reduce(0) { $0 << 8 | UInt32($1) } }

    package func read(offset: UInt64, data: UnsafeMutableRawBufferPointer) {
        lock.withLock {
            switch offset {
            case 1:
                // A wider read takes consecutive bytes, as QEMU's data register does.
                for i in data.indices { data[i] = nextByte() }
            case 4..<12:
                for i in data.indices {
                    let at = Int(offset) - 4 + i
                    data[i] = at < Self.dmaSignature.count ? Self.dmaSignature[at] : 0
                }
            default:
                data.storeLittleEndian(0)
            }
        }
    }

    package func write(offset: UInt64, data: UnsafeRawBufferPointer) {
        lock.withLock {
            switch (offset, data.count) {
            case (0, 2...):
                select(UInt16(truncatingIfNeeded: data.littleEndianValue))
            case (4, 4):
                dmaHigh = Self.bigEndian32(data)
            case (4, 8):
                dmaHigh = Self.bigEndian32(UnsafeRawBufferPointer(rebasing: data[0..<4]))
                runDMA(at: UInt64(dmaHigh) << 32 | UInt64(Self.bigEndian32(UnsafeRawBufferPointer(rebasing: data[4..<8]))))
            case (8, 4):
                runDMA(at: UInt64(dmaHigh) << 32 | UInt64(Self.bigEndian32(data)))
            default:
                break   // other widths and the data port's write: ignored, as QEMU's do
            }
        }
    }

    private func select(_ key: UInt16) {
        selected = key
        position = 0
    }

    private func nextByte() -> UInt8 {
        guard let item = items[selected], position < item.count else { return 0 }
        defer { position += 1 }
        return item[position]
    }

    /// Carries out the descriptor at `address`; a descriptor outside RAM is dropped
    /// (there is nowhere to report the error).
    private func runDMA(at address: UInt64) {
        dmaHigh = 0
        guard let descriptor = try? memory.read(at: address, count: 16) else { return }
        let word = { (i: Int) in descriptor[i..<(i + 4)].reduce(UInt32(0)) { $0 << 8 | UInt32($1) } }
        let control = word(0)
        var length = UInt64(word(4))
        var target = UInt64(word(8)) << 32 | UInt64(word(12))
        var failed = false
        if control & DMAControl.select != 0 { select(UInt16(control >> 16)) }
        let reading = control & DMAControl.read != 0
        if control & DMAControl.write != 0 && !reading {
            failed = true
        } else if control & (DMAControl.read | DMAControl.skip) != 0 {
            let item = items[selected] ?? []
            let available = UInt64(max(0, item.count - position))
            let n = min(length, available)
            if reading && n > 0 {
                do { try memory.write(item[position..<(position + Int(n))], at: target) } catch { failed = true }
            }
            position += Int(n)
            target &+= n
            length -= n
            if reading && length > 0 && !failed {
                do { try memory.zero(at: target, count: length) } catch { failed = true }
            }
        }
        try? memory.write(Self.bigEndian(failed ? DMAControl.error : 0), at: address)
    }
}
