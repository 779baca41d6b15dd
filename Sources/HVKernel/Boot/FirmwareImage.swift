import Glibc
import HVBackendKVM
import HVMemory
import HVSupport

/// A BIOS image (Debian's SeaBIOS by default) placed as a PC chipset shows it at power-on:
/// the whole image read from the top of 4 GiB down (where the reset vector 0xFFFFFFF0
/// fetches), and its last 256 KiB (all of it when smaller) ending at 1 MiB.
///
/// The low copy stands for PAM shadow RAM already unlocked. SeaBIOS copies itself from
/// the 4 GiB alias into 0xC0000-0xFFFFF only on an i440FX (8086:1237), whose PAM
/// registers it knows; on our i440BX (8086:7190, the chipset ESX presents) it logs
/// "Unable to unlock ram" and runs from what is there. So the bytes it would have copied
/// (image offset `size - (1 MiB - address)`, SeaBIOS's BIOS_SRC_OFFSET 0xFFF00000) are in
/// guest RAM from the start, writable as it needs them; 256 KiB because `bios-256k.bin`
/// starts its code below 0xE0000.
package final class FirmwareImage: @unchecked Sendable {
    /// The low copy ends here.
    static let shadowEnd: UInt64 = 0x10_0000
    /// Bytes of the image's tail copied below 1 MiB at most (0xC0000-0xFFFFF).
    static let shadowLimit: UInt64 = 0x4_0000
    /// Image sizes accepted: whole 64 KiB blocks (as QEMU requires), up to 16 MiB.
    static let sizeUnit: UInt64 = 0x1_0000
    static let maximumSize: UInt64 = 0x100_0000

    let path: String
    let size: UInt64
    /// Page-aligned host copy mapped below 4 GiB; it lives as long as the VM holds this.
    private let host: UnsafeMutableRawPointer

    /// Where the image starts in guest-physical memory (its end is 4 GiB).
    var highBase: UInt64 { 0x1_0000_0000 - size }
    /// The guest-physical range of the low copy.
    var shadowRange: Range<UInt64> { (Self.shadowEnd - min(size, Self.shadowLimit))..<Self.shadowEnd }

    /// Reads and checks the image at `path`.
    package init(contentsOf path: String) throws(BootError) {
        let bytes: [UInt8]
        do {
            bytes = try HostFile.read(path)
        } catch {
            throw BootError(file: path, reason: .unreadable(String(cString: strerror(error.errno))))
        }
        let size = UInt64(bytes.count)
        guard size > 0, size % Self.sizeUnit == 0, size <= Self.maximumSize else {
            throw BootError(file: path, reason: .badFirmwareSize(size))
        }
        guard let p = mmap(nil, Int(size), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
              p != MAP_FAILED else {
            throw BootError(file: path, reason: .guestMemory("mmap of \(size) bytes: \(String(cString: strerror(errno)))"))
        }
        bytes.withUnsafeBytes { p.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
        self.path = path
        self.size = size
        self.host = p
    }

    deinit {
        munmap(host, Int(size))
    }

    /// Writes the low copy into guest RAM (a fresh power-on; a restored VM's RAM has it).
    func install(into memory: GuestMemory) throws(BootError) {
        let low = shadowRange
        guard memory.contains(low.lowerBound, length: Int(low.count)) else {
            throw BootError(file: path, reason: .memoryTooSmall(size: memory.size, minimum: Self.shadowEnd))
        }
        let from = UnsafeRawBufferPointer(start: host + Int(size - UInt64(low.count)), count: low.count)
        do { try memory.write(at: low.lowerBound, from: from) } catch {
            throw BootError(file: path, reason: .guestMemory("\(error)"))
        }
    }

    /// Maps the image below 4 GiB. Guest writes there change only this VM's copy
    /// (a ROM ignores them; nothing the firmware does depends on either).
    func map(into mapper: GuestPhysicalMapper) throws {
        _ = try mapper.mapRAM(guestAddress: highBase, size: size, host: host)
    }
}
