import Glibc
import HVSupport
import PluginABI

/// One rule's verdict in `hvhost plugin-check`.
package struct CheckOutcome: Sendable, Equatable {
    package enum Status: String, Sendable { case pass, fail, skip }
    package var status: Status
    package var detail: String

    package init(status: Status, detail: String) {
        self.status = status
        self.detail = detail
    }

    package static func pass(_ detail: String) -> CheckOutcome { CheckOutcome(status: .pass, detail: detail) }
    package static func fail(_ detail: String) -> CheckOutcome { CheckOutcome(status: .fail, detail: detail) }
    package static func skip(_ detail: String) -> CheckOutcome { CheckOutcome(status: .skip, detail: detail) }
}

/// The rules `hvhost plugin-check` applies to a device model, each run on its own mock
/// VM (in a child process, so a crash or hang fails only that rule).
///
/// Register snapshot (for `reset`): every naturally aligned 32-bit register of every BAR
/// the model declared with handlers, read in offset order: the whole of an I/O BAR, the
/// first 4 KiB of a memory BAR. Two instances in the same state must read the same.
package struct DeviceChecks {
    package static let rules = ["create", "declarations", "reset", "save-load", "lifecycle-leak", "fuzz", "thread-contract"]

    let model: LoadedPlugin.DeviceModel
    let pluginName: String
    let vm: PluginCheckVM
    let watchdog: CallWatchdog
    package var cycles = 1000
    package var fuzzOperations = 20000
    package var seed: UInt64 = 1

    package init(model: LoadedPlugin.DeviceModel, pluginName: String, vm: PluginCheckVM, watchdog: CallWatchdog) {
        self.model = model
        self.pluginName = pluginName
        self.vm = vm
        self.watchdog = watchdog
    }

    package func run(_ rule: String) -> CheckOutcome {
        do {
            switch rule {
            case "create": return try create()
            case "declarations": return try declarations()
            case "reset": return try resetRestores()
            case "save-load": return try saveLoad()
            case "lifecycle-leak": return try lifecycleLeak()
            case "fuzz": return try fuzz()
            case "thread-contract": return try threadContract()
            default: return .skip("no rule '\(rule)'")
            }
        } catch {
            return .fail("\(error)")
        }
    }

    // MARK: instances

    /// create -> (BARs assigned) -> realize -> reset, each under the call limit.
    private func powerOn(monitor: DeviceEntryMonitor? = nil) throws -> PluginDevice {
        let d = try watchdog.watch("\(model.name) create") { try vm.makeDevice(model, pluginName: pluginName, monitor: monitor) }
        try watchdog.watch("\(model.name) realize") { try d.realize() }
        watchdog.watch("\(model.name) reset") { d.reset() }
        return d
    }

    private func destroy(_ d: PluginDevice) { watchdog.watch("\(model.name) destroy") { d.destroy() } }

    // MARK: rules

    private func create() throws -> CheckOutcome {
        let d = try powerOn()
        defer { destroy(d) }
        let bars = d.declaredBARs.map { "BAR\($0.index) \($0.isIO ? "io" : "mmio") \($0.size)" }
        return .pass("created, realized and reset on the mock VM; " + (bars.isEmpty ? "no BARs with handlers" : bars.joined(separator: ", ")))
    }

    private func declarations() throws -> CheckOutcome {
        let decl = model.declarations
        guard !decl.keys.isEmpty || !decl.commands.isEmpty else {
            return .pass("declares no keys or commands (its .vmx keys are not checked)")
        }
        let d = try powerOn()
        defer { destroy(d) }
        var called: [String] = []
        for c in decl.commands where c.wordArguments.isEmpty {
            _ = try watchdog.watch("command \(c.name)") { try d.runCommand(c.name, words: []) }
            called.append(c.name)
        }
        return .pass("\(decl.keys.count) keys, \(decl.commands.count) commands (well-formed; defaults valid)" +
                     (called.isEmpty ? "" : "; called " + called.joined(separator: ", ")))
    }

    /// Every readable register of every declared BAR (see the type's comment).
    private func snapshot(_ d: PluginDevice) -> [(String, UInt64)] {
        var out: [(String, UInt64)] = []
        for bar in d.declaredBARs {
            let span = bar.isIO ? bar.size : min(bar.size, 4096)
            var offset: UInt64 = 0
            while offset + 4 <= span {
                let v = watchdog.watch("BAR\(bar.index) read 4 at 0x\(String(offset, radix: 16))") {
                    d.barRead(bar: bar.index, offset: offset, size: 4)
                }
                out.append(("BAR\(bar.index)+0x\(String(offset, radix: 16))", v))
                offset += 4
            }
        }
        return out
    }

    /// Deterministic guest writes: `count` random registers of random BARs.
    private func scramble(_ d: PluginDevice, count: Int, random: inout CheckRandom) {
        let bars = d.declaredBARs
        guard !bars.isEmpty else { return }
        for _ in 0..<count {
            let bar = bars[Int(random.below(UInt64(bars.count)))]
            let span = bar.isIO ? bar.size : min(bar.size, 4096)
            let offset = random.below(span / 4) * 4
            let value = random.next()
            watchdog.watch("BAR\(bar.index) write 4 at 0x\(String(offset, radix: 16))") {
                d.barWrite(bar: bar.index, offset: offset, size: 4, value: value & 0xFFFF_FFFF)
            }
        }
    }

    private func resetRestores() throws -> CheckOutcome {
        let fresh = try powerOn()
        let expected = snapshot(fresh)
        destroy(fresh)
        guard !expected.isEmpty else { return .skip("no BAR registers to compare") }
        let used = try powerOn()
        defer { destroy(used) }
        var random = CheckRandom(seed: seed)
        scramble(used, count: 256, random: &random)
        watchdog.watch("\(model.name) reset") { used.reset() }
        let after = snapshot(used)
        let differences = zip(expected, after).filter { $0.0.1 != $0.1.1 }
        guard differences.isEmpty else {
            let shown = differences.prefix(4).map { "\($0.0.0): fresh 0x\(String($0.0.1, radix: 16)), after reset 0x\(String($0.1.1, radix: 16))" }
            return .fail("\(differences.count) of \(expected.count) registers differ from a fresh instance's after reset: " + shown.joined(separator: "; "))
        }
        return .pass("\(expected.count) registers equal a fresh instance's after 256 random writes and a reset")
    }

    private func saveLoad() throws -> CheckOutcome {
        guard model.pointer.pointee.ops.pointee.save_state != nil else {
            return .skip("no save_state/load_state: instances cannot be suspended")
        }
        let a = try powerOn()
        var random = CheckRandom(seed: seed &+ 1)
        scramble(a, count: 64, random: &random)
        guard let first = try watchdog.watch("save_state", { try a.saveState() }) else { return .skip("no save_state") }
        destroy(a)
        let b = try watchdog.watch("\(model.name) create") { try vm.makeDevice(model, pluginName: pluginName) }
        defer { destroy(b) }
        try watchdog.watch("\(model.name) realize") { try b.realize() }
        try watchdog.watch("load_state") { try b.loadState(first) }
        guard let second = try watchdog.watch("save_state", { try b.saveState() }) else { return .fail("save_state vanished") }
        let x = Self.encode(first), y = Self.encode(second)
        guard x == y else {
            let names = Set(first.fields.keys).union(second.fields.keys).sorted().filter { first.fields[$0] != second.fields[$0] }
            return .fail("save -> load into a fresh instance -> save differs (\(x.count) vs \(y.count) bytes); fields: " + names.prefix(6).joined(separator: ", "))
        }
        return .pass("\(first.fields.count) fields, \(x.count) bytes, identical after a round trip")
    }

    /// The section as bytes: fields sorted by name, each name, type, length, bytes.
    static func encode(_ s: DeviceStateSection) -> [UInt8] {
        var out: [UInt8] = []
        for name in s.fields.keys.sorted() {
            let f = s.fields[name]!
            out += Array(name.utf8) + [0]
            withUnsafeBytes(of: f.type.littleEndian) { out += $0 }
            withUnsafeBytes(of: UInt32(f.bytes.count).littleEndian) { out += $0 }
            out += f.bytes
        }
        return out
    }

    private func lifecycleLeak() throws -> CheckOutcome {
        func cycle() throws {
            let d = try powerOn()
            destroy(d)
        }
        for _ in 0..<50 { try cycle() }   // warm-up: allocator pools, first-use caches
        let (rss0, fds0) = (ProcessUsage.residentBytes(), ProcessUsage.openDescriptors())
        for _ in 0..<cycles { try cycle() }
        let (rss1, fds1) = (ProcessUsage.residentBytes(), ProcessUsage.openDescriptors())
        let grewKiB = (Int64(rss1) - Int64(rss0)) / 1024
        let detail = "\(cycles) create/realize/reset/destroy cycles: RSS \(rss0 / 1024) -> \(rss1 / 1024) KiB, open fds \(fds0) -> \(fds1)"
        // A few pages of allocator noise are not a leak; 1 KiB per cycle is.
        guard fds1 <= fds0, grewKiB < max(2048, Int64(cycles)) else { return .fail(detail) }
        return .pass(detail)
    }

    private func fuzz() throws -> CheckOutcome {
        var random = CheckRandom(seed: seed &+ 2)
        vm.scribble(&random)
        let d = try powerOn()
        defer { destroy(d) }
        let bars = d.declaredBARs
        guard !bars.isEmpty else { return .skip("no BARs with handlers to fuzz") }
        var reads = 0, writes = 0, resets = 0, frames = 0
        for i in 0..<fuzzOperations {
            let bar = bars[Int(random.below(UInt64(bars.count)))]
            let sizes: [Int] = bar.isIO ? [1, 2, 4] : [1, 2, 4, 8]
            let size = sizes[Int(random.below(UInt64(sizes.count)))]
            let span = bar.isIO ? bar.size : min(bar.size, 1 << 16)
            let offset = random.below(span / UInt64(size)) * UInt64(size)
            if random.below(3) == 0 {
                _ = watchdog.watch("BAR\(bar.index) read \(size) at 0x\(String(offset, radix: 16))") {
                    d.barRead(bar: bar.index, offset: offset, size: size)
                }
                reads += 1
            } else {
                // Small values more often: they hit command bits and ring indices.
                let v = random.below(4) == 0 ? random.next() : random.below(256)
                watchdog.watch("BAR\(bar.index) write \(size) at 0x\(String(offset, radix: 16)) value 0x\(String(v, radix: 16))") {
                    d.barWrite(bar: bar.index, offset: offset, size: size, value: v)
                }
                writes += 1
            }
            // A NIC also receives garbage frames (broadcast, so every address filter sees
            // them) on its port thread, concurrently with the BAR accesses.
            if model.kind == HV_DEVICE_KIND_NIC, i % 50 == 0 {
                var frame = (0..<Int(14 + random.below(1501))).map { _ in UInt8(truncatingIfNeeded: random.next()) }
                for b in 0..<6 { frame[b] = 0xFF }
                vm.inject(frame)
                frames += 1
            }
            if i % 2000 == 1999 {
                vm.scribble(&random)
                watchdog.watch("\(model.name) reset") { d.reset() }
                resets += 1
            }
        }
        return .pass("\(reads) reads, \(writes) writes, \(resets) resets" + (frames > 0 ? ", \(frames) received frames" : "") +
                     " over garbage guest memory: no crash, no call over \(Double(watchdog.limitNanoseconds) / 1e9) s")
    }

    private func threadContract() throws -> CheckOutcome {
        let monitor = DeviceEntryMonitor()
        let d = try powerOn(monitor: monitor)
        defer { destroy(d) }
        let bars = d.declaredBARs
        let noWord = d.declarations.commands.filter { $0.wordArguments.isEmpty }.map(\.name)
        let threads = (0..<4).map { t in
            HostThread.spawn(name: "check-\(t)") { [watchdog, seed] in
                var random = CheckRandom(seed: seed &+ 10 &+ UInt64(t))
                for i in 0..<2000 {
                    if !bars.isEmpty {
                        let bar = bars[Int(random.below(UInt64(bars.count)))]
                        let offset = random.below(min(bar.size, 4096) / 4) * 4
                        if random.below(4) == 0 {
                            let v = random.below(256)
                            watchdog.watch("BAR\(bar.index) write 4 (thread \(t))") { d.barWrite(bar: bar.index, offset: offset, size: 4, value: v) }
                        } else {
                            watchdog.watch("BAR\(bar.index) read 4 (thread \(t))") { _ = d.barRead(bar: bar.index, offset: offset, size: 4) }
                        }
                    }
                    if i % 100 == 0, let c = noWord.first { _ = try? watchdog.watch("command \(c)") { try d.runCommand(c, words: []) } }
                }
            }
        }
        for t in threads { pthread_join(t, nil) }
        let most = monitor.mostConcurrent
        if model.isThreadSafe {
            return .pass("thread-safe model: \(monitor.entryCount) calls from 4 threads, up to \(most) inside at once, no crash")
        }
        guard most <= 1 else { return .fail("\(most) threads were inside the instance at once (the model is not HV_DEVICE_THREAD_SAFE)") }
        return .pass("\(monitor.entryCount) calls from 4 threads, timers and commands: never more than one inside the instance")
    }
}

/// This process's resident memory and open descriptors (Linux /proc).
package enum ProcessUsage {
    package static func residentBytes() -> UInt64 {
        guard let f = fopen("/proc/self/statm", "r") else { return 0 }
        defer { fclose(f) }
        var line = [CChar](repeating: 0, count: 256)
        guard fgets(&line, Int32(line.count), f) != nil else { return 0 }
        let words = String(cString: line).split(separator: " ")
        guard words.count >= 2, let pages = UInt64(words[1]) else { return 0 }
        return pages * UInt64(sysconf(Int32(_SC_PAGESIZE)))
    }

    package static func openDescriptors() -> Int {
        guard let dir = opendir("/proc/self/fd") else { return -1 }
        defer { closedir(dir) }
        var n = 0
        while readdir(dir) != nil { n += 1 }
        return n - 3   // ".", ".." and the directory's own descriptor
    }
}
