// swift-tools-version:6.0
import PackageDescription

// Module layout (ARCHITECTURE.md section 2; written by scripts/split-modules.py).
//
//   HVSupport     locks, threads, timer queue, clocks, byte rings, SerialSink, MACAddress,
//                 PNG encoding (zlib) and console (PSF) fonts
//   HVMemory      guest RAM                                   (no CKVM: memfd via Glibc)
//   HVBackendKVM  KVM VM/vCPU backend                         (the only importer of CKVM)
//   HVDevices     buses, PC devices, IRQ controllers, PCI, the chipset
//   HVHostIO      serial sinks, virtual switches, virtual disks and their I/O queue
//   HVSched       pools, slots, policy protocol, fallback     (no plugin, config or backend types)
//   HVSchedSim    the scheduling simulator and its charts
//   HVPluginHost  loader, catalog, host services, devices, sched adapter (the only library
//                 importer of PluginABI)
//   HVKernel      assembly only: VM, VMHost, .vmx configuration, boot, console
//
// Dependencies point down that list (HVSchedSim is separate from HVSched so the PNG
// charts and scenario parser stay out of the VMkernel). Access: `internal` by default;
// `package` for what another target of this package uses (hvhost, the tests and the
// libraries are all one package); `public` only for API used from outside the package,
// of which there is none: plugins see the C ABI (PluginABI), never these modules.
// Raw pointers (Unsafe*, Unmanaged) stay in HVSupport, HVMemory, HVBackendKVM,
// HVDevices, HVHostIO and HVPluginHost.

let package = Package(
    name: "hypervisor",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "hvhost", targets: ["hvhost"]),
        // Scheduler policies (C plugins): lib<Name>.so next to hvhost, on the plugin search path.
        .library(name: "SchedPropShare", type: .dynamic, targets: ["SchedPropShare"]),
        .library(name: "SchedRoundRobin", type: .dynamic, targets: ["SchedRoundRobin"]),
        .library(name: "SchedCosched", type: .dynamic, targets: ["SchedCosched"]),
        .library(name: "Vlance", type: .dynamic, targets: ["Vlance"]),
        .library(name: "BusLogic", type: .dynamic, targets: ["BusLogic"]),
        .library(name: "Vmxnet", type: .dynamic, targets: ["Vmxnet"]),
        .library(name: "LSILogic", type: .dynamic, targets: ["LSILogic"]),
        .library(name: "SVGA", type: .dynamic, targets: ["SVGA"]),
        // NIC-teaming policies (C plugin): failover, portid, machash, iphash.
        .library(name: "TeamingStandard", type: .dynamic, targets: ["TeamingStandard"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    ],
    targets: [
        // THE plugin ABI: a C99 header and nothing else a plugin links against.
        .target(name: "PluginABI", path: "Sources/PluginABI"),
        // Swift conveniences for Swift plugins (descriptors, instance handles, host
        // extension lookup, NIC configuration); depends on PluginABI only.
        .target(name: "PluginKit", dependencies: ["PluginABI"], path: "Sources/PluginKit"),
        // Request numbers and structs from <linux/kvm.h>, which Swift cannot import as macros.
        .target(name: "CKVM", path: "Sources/CKVM"),
        // libffi (Debian libffi-dev): HVPluginHost calls plugins' typed commands through it.
        .systemLibrary(name: "CFFI", path: "Sources/CFFI"),
        // zlib (Debian zlib1g-dev): HVSupport's PNG encoder and gzip-compressed console fonts.
        .systemLibrary(name: "CZlib", path: "Sources/CZlib"),
        // Host primitives every layer shares: locks, threads, timer queue, clocks, byte rings,
        // the SerialSink protocol, MAC addresses, share settings.
        .target(name: "HVSupport", dependencies: ["CZlib"], path: "Sources/HVSupport"),
        // Guest RAM (one memfd, the PC split around the PCI hole and legacy windows, the
        // VMM-side dirty log), shared regions (RAM BARs) and the GuestPhysicalMapper seam.
        .target(name: "CPageContent", path: "Sources/CPageContent"),
        .target(name: "HVMemory", dependencies: ["CPageContent", "HVSupport"], path: "Sources/HVMemory"),
        // The KVM execution backend (VM, vCPUs, exits, CPUID); the only importer of CKVM.
        .target(name: "HVBackendKVM", dependencies: ["HVMemory", "CKVM"],
                path: "Sources/HVBackendKVM"),
        // Bus/ (port-I/O and MMIO buses), PC/ (PIC, PIT, RTC, UART, i8042, debug-exit),
        // IRQ/ (I/O APIC, local APIC), PCI/ (host bridge, functions, MSI) and the chipset.
        .target(name: "HVDevices", dependencies: ["HVSupport", "HVMemory"],
                path: "Sources/HVDevices"),
        // Serial/ sinks, Net/ (virtual switches, ports as receive queues), Storage/ (disks, I/O
        // queue, the suspend-file container), Display/ (a VM's display surface and input
        // router, read by consoles).
        // The Linux packet-socket, rtnetlink and TUN/TAP structs and ioctls (uplinks).
        .target(name: "CLinuxNet", path: "Sources/CLinuxNet"),
        // zlib and libcrypto for the remote console (Debian: zlib1g-dev, libssl-dev).
        .systemLibrary(name: "CConsoleCodecs", path: "Sources/CConsoleCodecs"),
        .target(name: "HVHostIO", dependencies: ["HVSupport", "HVMemory", "CLinuxNet", "CZlib", "CConsoleCodecs"],
                path: "Sources/HVHostIO"),
        // The CPU scheduler: pCPU slots, pools, the SchedulerPolicy protocol, fallback, watchdog.
        .target(name: "HVSched", dependencies: ["HVSupport", .product(name: "Logging", package: "swift-log")],
                path: "Sources/HVSched"),
        // The deterministic scheduling simulator, its scenarios and charts (hvhost sched-sim).
        .target(name: "HVSchedSim", dependencies: ["HVSched", "HVSupport"],
                path: "Sources/HVSchedSim"),
        // Plugin loader and ABI validation, catalog, host services, PluginDevice, the
        // scheduler-policy adapter: the only library importer of PluginABI.
        .target(name: "HVPluginHost", dependencies: ["HVSupport", "HVMemory", "HVDevices", "HVHostIO", "HVSched", .product(name: "Logging", package: "swift-log"), "PluginABI", "CFFI"],
                path: "Sources/HVPluginHost"),
        // The assembly: VM, VMHost, .vmx configuration, boot, service console.
        .target(name: "HVKernel", dependencies: ["HVSupport", "HVMemory", "HVBackendKVM", "HVDevices", "HVHostIO", "HVSched", "HVPluginHost", .product(name: "Logging", package: "swift-log")],
                path: "Sources/HVKernel"),
        .executableTarget(
            name: "hvhost",
            dependencies: [
                "HVSupport", "HVBackendKVM", "HVHostIO", "HVSched", "HVSchedSim", "HVPluginHost", "HVKernel",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/hvhost"
        ),
        // The Vlance NIC (AMD PCnet-PCI II) as a dynamically loaded device plugin.
        .target(name: "Vlance", dependencies: ["PluginABI", "PluginKit"], path: "Plugins/Vlance", exclude: ["README.md"]),
        // The BusLogic BT-958 SCSI host adapter (hv.scsi/1) as a dynamically loaded device plugin.
        .target(name: "BusLogic", dependencies: ["PluginABI", "PluginKit"], path: "Plugins/BusLogic", exclude: ["README.md"]),
        // The Vmxnet NIC (VMXNET3) as a dynamically loaded device plugin.
        .target(name: "Vmxnet", dependencies: ["PluginABI", "PluginKit"], path: "Plugins/Vmxnet", exclude: ["README.md"]),
        // The LSILogic SCSI adapter (LSI53C1030 Fusion-MPT) on the hv.scsi/1 extension.
        .target(name: "LSILogic", dependencies: ["PluginABI", "PluginKit"], path: "Plugins/LSILogic", exclude: ["README.md"]),
        // The VMware SVGA II display (hv.display/1, RAM BARs, VGA and Bochs DISPI legacy decoding).
        .target(name: "SVGA", dependencies: ["PluginABI", "PluginKit"], path: "Plugins/SVGA", exclude: ["README.md"]),
        // Scheduler policies: propshare, roundrobin, cosched-strict/-relaxed (Plugins/SchedPolicies).
        .target(name: "SchedPropShare", dependencies: ["PluginABI"], path: "Plugins/SchedPolicies/PropShare"),
        .target(name: "SchedRoundRobin", dependencies: ["PluginABI"], path: "Plugins/SchedPolicies/RoundRobin"),
        .target(name: "SchedCosched", dependencies: ["PluginABI"], path: "Plugins/SchedPolicies/Cosched"),
        // NIC-teaming policies (Plugins/TeamingPolicies).
        .target(name: "TeamingStandard", dependencies: ["PluginABI"], path: "Plugins/TeamingPolicies/Standard"),
        // One test target per library; plugin tests beside the plugin (VlanceTests).
        .testTarget(name: "HVSupportTests", dependencies: ["HVSupport", "CZlib"],
                    path: "Tests/HVSupportTests"),
        .testTarget(name: "HVMemoryTests", dependencies: ["HVMemory"],
                    path: "Tests/HVMemoryTests"),
        .testTarget(name: "HVBackendKVMTests", dependencies: ["HVMemory", "HVBackendKVM"],
                    path: "Tests/HVBackendKVMTests"),
        .testTarget(name: "HVDevicesTests", dependencies: ["HVSupport", "HVMemory", "HVDevices", "HVHostIO"],
                    path: "Tests/HVDevicesTests"),
        .testTarget(name: "HVHostIOTests", dependencies: ["HVSupport", "HVHostIO", "CZlib"],
                    path: "Tests/HVHostIOTests"),
        .testTarget(name: "HVSchedTests", dependencies: ["HVSched", "HVPluginHost", "HVSupport", .product(name: "Logging", package: "swift-log"), "PluginABI"],
                    path: "Tests/HVSchedTests", exclude: ["Fixtures"]),
        .testTarget(name: "HVSchedSimTests", dependencies: ["HVSched", "HVSchedSim", "HVPluginHost", "HVSupport", "PluginABI", .product(name: "Logging", package: "swift-log")],
                    path: "Tests/HVSchedSimTests"),
        .testTarget(name: "HVPluginHostTests", dependencies: ["HVSupport", "HVMemory", "HVDevices", "HVHostIO", "HVPluginHost", .product(name: "Logging", package: "swift-log"), "PluginABI"],
                    path: "Tests/HVPluginHostTests",
                    exclude: ["Fixtures"]),
        .testTarget(name: "HVKernelTests", dependencies: ["HVSupport", "HVMemory", "HVBackendKVM", "HVDevices", "HVHostIO", "HVSched", "HVKernel", .product(name: "Logging", package: "swift-log")],
                    path: "Tests/HVKernelTests"),
        .testTarget(name: "VlanceTests", dependencies: ["HVSupport", "HVMemory", "HVDevices", "HVHostIO", "HVPluginHost", .product(name: "Logging", package: "swift-log"), "PluginABI"],
                    path: "Tests/VlanceTests"),
        .testTarget(name: "BusLogicTests", dependencies: ["HVSupport", "HVMemory", "HVDevices", "HVHostIO", "HVPluginHost", .product(name: "Logging", package: "swift-log"), "PluginABI"],
                    path: "Tests/BusLogicTests"),
        .testTarget(name: "VmxnetTests", dependencies: ["HVSupport", "HVMemory", "HVDevices", "HVHostIO", "HVPluginHost", .product(name: "Logging", package: "swift-log"), "PluginABI"],
                    path: "Tests/VmxnetTests"),
        .testTarget(name: "SVGATests", dependencies: ["HVSupport", "HVMemory", "HVDevices", "HVHostIO", "HVPluginHost", .product(name: "Logging", package: "swift-log"), "PluginABI"],
                    path: "Tests/SVGATests"),
        .testTarget(name: "LSILogicTests", dependencies: ["PluginABI"], path: "Tests/LSILogicTests"),
        .testTarget(name: "IntegrationTests", dependencies: ["HVKernel", "HVBackendKVM", "HVHostIO", "HVPluginHost", "HVSched", "HVSupport"], path: "Tests/IntegrationTests",
                    exclude: ["Fixtures"]),
    ],
    // Swift 5 mode: the VMkernel shares state across pthreads under its own locks,
    // which strict Sendable checking cannot see.
    swiftLanguageModes: [.v5]
)
