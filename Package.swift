// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "hypervisor",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "hvhost", targets: ["hvhost"]),
        .library(name: "HVKernel", targets: ["HVKernel"]),
        // Scheduler policies (C plugins): lib<Name>.so next to hvhost, on the plugin search path.
        .library(name: "SchedPropShare", type: .dynamic, targets: ["SchedPropShare"]),
        .library(name: "SchedRoundRobin", type: .dynamic, targets: ["SchedRoundRobin"]),
        .library(name: "SchedCosched", type: .dynamic, targets: ["SchedCosched"]),
        .library(name: "Vlance", type: .dynamic, targets: ["Vlance"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    ],
    targets: [
        // THE plugin ABI: a C99 header and nothing else a plugin links against.
        .target(name: "PluginABI", path: "Sources/PluginABI"),
        // Request numbers and structs from <linux/kvm.h>, which Swift cannot import as macros.
        .target(name: "CKVM", path: "Sources/CKVM"),
        .target(
            name: "HVKernel",
            dependencies: [
                "PluginABI", "CKVM",
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/HVKernel"
        ),
        .executableTarget(
            name: "hvhost",
            dependencies: [
                "HVKernel",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/hvhost"
        ),
        // The Vlance NIC (AMD PCnet-PCI II) as a dynamically loaded device plugin.
        .target(name: "Vlance", dependencies: ["PluginABI"], path: "Plugins/Vlance", exclude: ["README.md"]),
        // Scheduler policies: propshare, roundrobin, cosched-strict/-relaxed (Plugins/SchedPolicies).
        .target(name: "SchedPropShare", dependencies: ["PluginABI"], path: "Plugins/SchedPolicies/PropShare"),
        .target(name: "SchedRoundRobin", dependencies: ["PluginABI"], path: "Plugins/SchedPolicies/RoundRobin"),
        .target(name: "SchedCosched", dependencies: ["PluginABI"], path: "Plugins/SchedPolicies/Cosched"),
        .testTarget(name: "HVKernelTests", dependencies: ["HVKernel", "PluginABI"], path: "Tests/HVKernelTests",
                    exclude: ["Fixtures"]),
        .testTarget(name: "IntegrationTests", dependencies: ["HVKernel"], path: "Tests/IntegrationTests",
                    exclude: ["Fixtures"]),
    ],
    // Swift 5 mode: the VMkernel shares state across pthreads under its own locks,
    // which strict Sendable checking cannot see.
    swiftLanguageModes: [.v5]
)
