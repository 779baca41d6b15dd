import HVHostIO
import HVBackendKVM
import HVDevices
import HVMemory
import HVPluginHost
import HVSupport

/// The payloads of a suspend file's sections (see `SuspendFile` for the container).
///
///     config     v1  string .vmx path (absolute), u32 count, per entry: string key,
///                    string value, u32 line. A NIC without a static address gets its
///                    generatedAddress entry, as ESX writes it into the .vmx, so the
///                    resumed NIC keeps its MAC wherever the file is resumed from.
///     machine    v1  u64 RAM bytes, u32 vCPU count, u64 VM clock (ns)
///     vcpu.<n>   v1  u8 activity (0 running, 1 halted, 2 waiting for SIPI), string
///                    backend, u32 count, per register file: string name, bytes;
///                    u32 count, per MSR: u32 index, u64 value
///     chipset    v1  see PlatformState.swift
///     pci        v1  see PCIHostBridge.saveState()
///     balloon    v1  bool started, u32 capabilities, u64 target, u32 guest type, u64 count,
///                    count × u64 locked page (index in guest RAM); see Balloon.saveState()
///     device:<prefix>  version = the model's state_version: string model name,
///                    u32 count, per field: string name, u32 HV_STATE_* type, bytes
enum SuspendSections {
    static let known: Set<String> = ["config", "machine", "chipset", "pci", "balloon"]

    static func config(_ c: VMConfiguration, generatedAddresses: [String: String]) -> [UInt8] {
        let fileName = c.path.split(separator: "/").last.map(String.init) ?? c.path
        let path = HostFile.resolve(fileName, relativeTo: c.directory)
        var entries = c.file.entries.map { ($0.key, $0.value, $0.line) }
        var line = (entries.map(\.2).max() ?? 0) + 1
        for (prefix, mac) in generatedAddresses.sorted(by: { $0.key < $1.key }) {
            entries.append(("\(prefix).generatedAddress", mac, line))
            line += 1
        }
        var e = StateEncoder()
        e.string(path)
        e.u32(UInt32(entries.count))
        for (key, value, line) in entries {
            e.string(key)
            e.string(value)
            e.u32(UInt32(line))
        }
        return e.bytes
    }

    static func configuration(from payload: [UInt8], file: String) throws -> VMConfiguration {
        var d = StateDecoder(payload, context: "\(file): section 'config'")
        let path = try d.string(limit: 4096)
        let count = try d.u32()
        guard count <= 100_000 else { throw StateDecodingError("\(file): section 'config' claims \(count) entries") }
        var entries: [VMXFile.Entry] = []
        for _ in 0..<count {
            let key = try d.string(limit: 4096), value = try d.string(limit: 1 << 16), line = try d.u32()
            entries.append(VMXFile.Entry(key: key, value: value, path: path, line: Int(line)))
        }
        try d.finish()
        do {
            return try VMConfiguration(file: VMXFile(path: path, entries: entries))
        } catch {
            throw SuspendError("\(file): the saved configuration of \(path) is not valid here: \(error)")
        }
    }

    struct Machine: Equatable {
        var memoryBytes: UInt64
        var vcpuCount: Int
        var clock: UInt64
    }

    static func machine(_ m: Machine) -> [UInt8] {
        var e = StateEncoder()
        e.u64(m.memoryBytes)
        e.u32(UInt32(m.vcpuCount))
        e.u64(m.clock)
        return e.bytes
    }

    static func machine(from payload: [UInt8], file: String) throws -> Machine {
        var d = StateDecoder(payload, context: "\(file): section 'machine'")
        let m = Machine(memoryBytes: try d.u64(), vcpuCount: Int(try d.u32()), clock: try d.u64())
        try d.finish()
        return m
    }

    static func vcpu(_ activity: VCPUActivity, _ state: VCPUState) -> [UInt8] {
        var e = StateEncoder()
        e.u8(activity.rawValue)
        e.string(state.backend)
        e.u32(UInt32(state.registers.count))
        for (name, bytes) in state.registers.sorted(by: { $0.key < $1.key }) {
            e.string(name)
            e.data(bytes)
        }
        e.u32(UInt32(state.msrs.count))
        for m in state.msrs {
            e.u32(m.index)
            e.u64(m.value)
        }
        return e.bytes
    }

    static func vcpu(from payload: [UInt8], context: String) throws -> (VCPUActivity, VCPUState) {
        var d = StateDecoder(payload, context: context)
        let raw = try d.u8()
        guard let activity = VCPUActivity(rawValue: raw) else { throw StateDecodingError("\(context): vCPU activity \(raw)") }
        var state = VCPUState(backend: try d.string(limit: 64))
        let files = try d.u32()
        guard files <= 16 else { throw StateDecodingError("\(context): \(files) register files") }
        for _ in 0..<files {
            let name = try d.string(limit: 64)
            state.registers[name] = try d.data(limit: 1 << 16)
        }
        let msrs = try d.u32()
        guard msrs <= 256 else { throw StateDecodingError("\(context): \(msrs) MSRs") }
        for _ in 0..<msrs { state.msrs.append(.init(index: try d.u32(), value: try d.u64())) }
        try d.finish()
        return (activity, state)
    }

    static func device(_ s: DeviceStateSection) -> [UInt8] {
        var e = StateEncoder()
        e.string(s.name)
        e.u32(UInt32(s.fields.count))
        for (name, field) in s.fields.sorted(by: { $0.key < $1.key }) {
            e.string(name)
            e.u32(field.type)
            e.data(field.bytes)
        }
        return e.bytes
    }

    static func device(from payload: [UInt8], version: UInt32, context: String) throws -> DeviceStateSection {
        var d = StateDecoder(payload, context: context)
        var s = DeviceStateSection(name: try d.string(limit: 256), version: version)
        let count = try d.u32()
        guard count <= 1 << 16 else { throw StateDecodingError("\(context): \(count) fields") }
        for _ in 0..<count {
            let name = try d.string(limit: 256), type = try d.u32()
            guard let fixed = DeviceStateSection.fixedLength(of: type) else {
                throw StateDecodingError("\(context): field '\(name)' has unknown type \(type)")
            }
            let bytes = try d.data(limit: 16 << 20)
            if let n = fixed, n != bytes.count {
                throw StateDecodingError("\(context): field '\(name)' of type \(type) has \(bytes.count) bytes")
            }
            s.fields[name] = .init(type: type, bytes: bytes)
        }
        try d.finish()
        return s
    }
}

extension SavedMachineState {
    /// The configuration the VM was suspended with. Every section is checked to be one
    /// this host knows before anything else is read.
    func configuration() throws -> VMConfiguration {
        for s in sections {
            let known = SuspendSections.known.contains(s.name) || s.name.hasPrefix("vcpu.") || s.name.hasPrefix("device:")
                || s.name == "config"
            guard known else { throw SuspendError("\(path): section '\(s.name)' is not one this hvhost knows (a newer hvhost wrote it?)") }
        }
        return try SuspendSections.configuration(from: section("config", maxVersion: 1).payload, file: path)
    }

    /// The machine section, checked against the configuration.
    func machine(for configuration: VMConfiguration) throws -> SuspendSections.Machine {
        let m = try SuspendSections.machine(from: section("machine", maxVersion: 1).payload, file: path)
        guard m.memoryBytes == configuration.memoryBytes, m.vcpuCount == configuration.vcpuCount else {
            throw SuspendError("\(path): saved with \(m.memoryBytes >> 20) MiB and \(m.vcpuCount) vCPU(s), but its configuration says memsize \(configuration.memoryMiB) and numvcpus \(configuration.vcpuCount)")
        }
        let vcpuSections = sections.filter { $0.name.hasPrefix("vcpu.") }.count
        guard vcpuSections == m.vcpuCount else { throw SuspendError("\(path): \(vcpuSections) vCPU sections for \(m.vcpuCount) vCPU(s)") }
        return m
    }

    func vcpu(_ index: Int) throws -> (VCPUActivity, VCPUState) {
        let name = "vcpu.\(index)"
        return try SuspendSections.vcpu(from: section(name, maxVersion: 1).payload, context: "\(path): section '\(name)'")
    }

    /// The saved state of the device with `prefix` ("ethernet0").
    func deviceState(prefix: String) throws -> DeviceStateSection {
        let name = "device:\(prefix)"
        let s = try section(name, maxVersion: UInt32.max)
        return try SuspendSections.device(from: s.payload, version: s.version, context: "\(path): section '\(name)'")
    }
}

extension SavedMachineState {
    /// Throws when the file holds state for a device this VM does not have.
    func checkDeviceSections(against prefixes: [String]) throws {
        let expected = Set(prefixes.map { "device:\($0)" })
        if let extra = sections.first(where: { $0.name.hasPrefix("device:") && !expected.contains($0.name) }) {
            throw SuspendError("\(path): section '\(extra.name)' has no device in the saved configuration")
        }
    }
}

/// A VM's saved state to continue from: a suspend file, or the state an incoming
/// migration received. Both carry the sections `SuspendSections` describes.
package protocol SavedMachineState: AnyObject {
    /// Where the state comes from, for messages and logs (a suspend file's path).
    var path: String { get }
    var sections: [(name: String, version: UInt32, payload: [UInt8])] { get }
    /// The payload of the only section named `name` with a version this host reads.
    func section(_ name: String, maxVersion: UInt32) throws -> (version: UInt32, payload: [UInt8])
    /// Guest RAM of `size` bytes holding the saved pages.
    func restoredMemory(size: UInt64, name: String) throws -> GuestMemory
}

extension SuspendImage: SavedMachineState {
    package func restoredMemory(size: UInt64, name: String) throws -> GuestMemory {
        let memory = try GuestMemory(size: size, name: name)
        try restoreMemory(into: memory)
        return memory
    }
}
