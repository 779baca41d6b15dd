import HVDevices
import HVMemory

/// What a VM that boots its BIOS hands the firmware through fw_cfg (see
/// `FirmwareConfig`), in the names and layouts Debian's SeaBIOS (a QEMU build) reads:
/// - `etc/e820`: RAM below the PCI hole from 0, and RAM relocated above 4 GiB (SeaBIOS
///   takes its memory size from it and reserves its own areas);
/// - CPU count and maximum (items 0x05, 0x0F), RAM size (0x03), the boot menu off (0x0E);
/// - `bootorder`: one OpenFirmware path per line for each device `bios.bootOrder` names,
///   as SeaBIOS matches them against the devices it finds — a SCSI disk or CD-ROM
///   `/pci@i0cf8/scsi@S/channel@0/disk@T,0`, a NIC's boot ROM
///   `/pci@i0cf8/ethernet@S/ethernet-phy@0` (S the PCI slot, hex), a kernel handed over
///   by fw_cfg `/rom@genroms/linuxboot_dma.bin` first;
/// - `etc/sercon-port` (0x3F8) on a VM with COM1 and no display adapter: SeaBIOS then
///   mirrors its screen to the serial port, as QEMU's -nographic does;
/// - with a Linux kernel: the setup, kernel, command-line and initrd items and QEMU's
///   boot ROM `genroms/linuxboot_dma.bin` (Debian's qemu-system-data), which loads them.
struct FirmwareHandoff {
    /// QEMU's option ROM that loads a Linux kernel from fw_cfg by DMA and enters its setup code.
    static let linuxBootROMPath = "/usr/share/qemu/linuxboot_dma.bin"
    static let linuxBootROMName = "genroms/linuxboot_dma.bin"
    static let serialConsolePort: UInt64 = 0x3F8

    var memorySize: UInt64
    var vcpuCount: Int
    /// `bootorder` lines, in order.
    var bootOrder: [String] = []
    var serialConsole = false
    var linux: LinuxFirmwareLoad?
    /// The bytes of `linuxBootROMPath`, with `linux`.
    var linuxBootROM: [UInt8]?

    /// The OpenFirmware paths SeaBIOS matches for the devices `order` names, given each
    /// device's PCI slot (devices without one are left out).
    static func bootOrderPaths(order: [FirmwareBootDevice], devices: [(DeviceConfiguration, slot: Int)]) -> [String] {
        func hex(_ v: Int) -> String { String(v, radix: 16) }
        func scsi(cdrom: Bool) -> [String] {
            devices.filter { $0.0.kind == .scsi }.sorted { $0.0.index < $1.0.index }.flatMap { device, slot in
                device.disks.filter { ($0.kind == .cdromImage) == cdrom }
                    .map { "/pci@i0cf8/scsi@\(hex(slot))/channel@0/disk@\(hex($0.unit)),0" }
            }
        }
        return order.flatMap { item -> [String] in
            switch item {
            case .hardDisk: return scsi(cdrom: false)
            case .cdrom: return scsi(cdrom: true)
            case .floppy: return []     // no floppy controller
            case .network(let n):
                return devices.filter { $0.0.kind == .nic && $0.0.index == n }
                    .map { "/pci@i0cf8/ethernet@\(hex($0.slot))/ethernet-phy@0" }
            }
        }
    }

    var items: FirmwareConfigItems {
        typealias K = FirmwareConfig.Key
        var c = FirmwareConfigItems()
        let low = min(memorySize, GuestMemory.lowMemoryLimit)
        c.set(K.ramSize, integer: memorySize, width: 8)
        c.set(K.cpuCount, integer: UInt64(vcpuCount), width: 2)
        c.set(K.maxCPUs, integer: UInt64(vcpuCount), width: 2)
        c.set(K.bootMenu, integer: 0, width: 2)
        var e820 = BootBytes()
        for (address, size) in [(UInt64(0), low), (0x1_0000_0000, memorySize - low)] where size > 0 {
            e820.append(address)
            e820.append(size)
            e820.append(MemoryMapEntry.Kind.ram.rawValue)
        }
        c.addFile("etc/e820", e820.bytes)
        var order = bootOrder
        if let linux, let rom = linuxBootROM {
            order.insert("/rom@" + Self.linuxBootROMName, at: 0)
            c.set(K.setupAddress, integer: LinuxFirmwareLoad.setupAddress, width: 4)
            c.set(K.setupSize, integer: UInt64(linux.setup.count), width: 4)
            c.set(K.setupData, linux.setup)
            c.set(K.kernelAddress, integer: LinuxImage.loadAddress, width: 4)
            c.set(K.kernelSize, integer: UInt64(linux.kernel.count), width: 4)
            c.set(K.kernelData, linux.kernel)
            c.set(K.commandLineAddress, integer: LinuxFirmwareLoad.commandLineAddress, width: 4)
            c.set(K.commandLineSize, integer: UInt64(linux.commandLine.count), width: 4)
            c.set(K.commandLineData, linux.commandLine)
            c.set(K.initrdAddress, integer: linux.initrdAddress, width: 4)
            c.set(K.initrdSize, integer: UInt64(linux.initrd.count), width: 4)
            c.set(K.initrdData, linux.initrd)
            c.addFile(Self.linuxBootROMName, rom)
        }
        if !order.isEmpty { c.addFile("bootorder", Array(order.joined(separator: "\n").utf8) + [0]) }
        if serialConsole {
            var port = BootBytes()
            port.append(UInt16(Self.serialConsolePort))
            c.addFile("etc/sercon-port", port.bytes)
        }
        return c
    }
}
