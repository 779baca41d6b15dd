import HVHostIO
import Glibc
import HVBackendKVM
import HVDevices

/// Pause, resume and suspend: the order hvplugin.h's "Device lifecycle" documents.
extension VirtualMachine {
    /// Stops the guest without powering it off: the vCPUs leave guest mode and stay out,
    /// the timer thread stops (a callback in flight finishes first), every device pauses
    /// (receives stop, disk requests in flight complete, then its pause op) and the VM
    /// clock stops. Throws when the VM is stopping or already paused.
    package func pause() throws {
        try state.withLock {
            if let stopReason { throw VMError("\(name) is not running (\(stopReason))") }
            guard !paused else { throw VMError("\(name) is already paused") }
            paused = true
        }
        gate.close { for r in runners { r.vcpu.kick() } }
        timers.stop()
        for d in devices { d.pause() }
        clock.pause()
        logger.info("\(name): paused")
    }

    /// Undoes `pause`: the clock runs, every device resumes, timers fire and vCPUs run again.
    package func resume() {
        guard state.withLock({ paused }) else { return }
        clock.resume()
        for d in devices { d.resume() }
        timers.start()
        gate.open()
        state.withLock { paused = false }
        logger.info("\(name): resumed")
    }

    package var isPaused: Bool { state.withLock { paused } }

    /// ESX's suspend: pauses the VM, writes its complete state and configuration to
    /// `path` and powers it off (stop reason `.suspended`). A VM with a device that
    /// cannot save its state is refused before anything stops; when the file cannot be
    /// written the VM resumes and the error is thrown.
    func suspend(to path: String) throws {
        if let d = devices.first(where: { !$0.canSaveState }) {
            throw VMError("cannot suspend \(name): \(d.context.prefix) (model '\(d.modelName)', plugin \(d.pluginName)) has no save_state/load_state; the VM keeps running")
        }
        for d in devices {
            if let held = d.function?.unsavedHostState {
                throw VMError("cannot suspend \(name): \(d.context.prefix) (model '\(d.modelName)') has \(held), which suspend files do not carry yet; the VM keeps running")
            }
        }
        try pause()
        do {
            try write(to: path)
        } catch {
            resume()
            throw error
        }
        stop(.suspended(path))
        // A guest exit or failure that won the race keeps its reason; its file is void.
        if let reason = state.withLock({ stopReason }), reason != .suspended(path) {
            unlink(path)
            throw VMError("\(name) stopped while suspending (\(reason)); no suspend file was kept")
        }
    }

    private func write(to path: String) throws {
        let w = try SuspendFileWriter(path: path)
        try w.section("config", version: 1, configSection())
        try w.section("machine", version: 1, machineSection())
        try w.memorySection(memory)
        for s in try stateSections() { try w.section(s.name, version: s.version, s.payload) }
        try w.finish()
    }

    /// The "config" section: the configuration, with the MACs generated for NICs
    /// without a static address so that they keep them wherever the VM continues.
    func configSection() -> [UInt8] {
        var generated: [String: String] = [:]
        for d in configuration.devices where d.kind == .nic && d.value(forDeviceKey: "address") == nil
            && d.value(forDeviceKey: "generatedAddress") == nil {
            generated[d.prefix] = VirtualMachine.generatedMAC(seed: configuration.path + "/" + d.prefix).description
        }
        return SuspendSections.config(configuration, generatedAddresses: generated)
    }

    /// The "machine" section; the clock is the paused VM's.
    func machineSection() -> [UInt8] {
        SuspendSections.machine(.init(memoryBytes: memory.size, vcpuCount: runners.count, clock: clock.now()))
    }

    /// The sections after memory, of a paused VM: its vCPUs, chipset, PCI functions and
    /// plugin devices (suspend files and migrations carry the same ones).
    func stateSections() throws -> [(name: String, version: UInt32, payload: [UInt8])] {
        var out: [(name: String, version: UInt32, payload: [UInt8])] = []
        for r in runners {
            do {
                out.append(("vcpu.\(r.vcpu.index)", 1, SuspendSections.vcpu(r.activity, try r.vcpu.saveState())))
            } catch let e as KVMError {
                throw VMError("cannot save vCPU \(r.vcpu.index) of \(name): \(e)")
            }
        }
        out.append(("chipset", Chipset.stateVersion, chipset.saveState()))
        out.append(("balloon", Balloon.stateVersion, balloon.saveState()))
        out.append(("pci", PCIHostBridge.stateVersion, pci.saveState()))
        for d in devices {
            guard let s = try d.saveState() else { continue }
            out.append(("device:\(d.context.prefix)", s.version, SuspendSections.device(s)))
        }
        return out
    }
}
