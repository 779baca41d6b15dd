import Glibc
import HVDevices
import HVSupport
import PluginABI
import Synchronization

/// An instance's doorbell thread: waits on the eventfds of its doorbells and calls the
/// plugin's ring callback with the count of rings since the last call ([device]: under
/// the device lock unless the model is thread-safe). A ring never waits for the plugin
/// on the vCPU. Stopped (and joined) before the instance's destroy op.
package final class PluginDoorbells: @unchecked Sendable {
    private struct Entry {
        let doorbell: PCIDoorbell
        let ring: hv_doorbell_fn
        let opaque: UnsafeMutableRawPointer?
    }

    private unowned let device: PluginDevice
    /// Wakes the thread to pick up new doorbells or to stop.
    private let control: EventFD
    private let lock = HostLock()
    private var entries: [Entry] = []
    private var stopping = false
    private var thread: pthread_t?
    /// Which of the two paths has been logged in this process (bit 0 kernel, bit 1 exits).
    private static let loggedPaths = Atomic<UInt8>(0)

    init(device: PluginDevice) throws {
        self.device = device
        control = try EventFD()
    }

    /// [control] Starts serving `doorbell`; the first one starts the thread.
    func add(_ doorbell: PCIDoorbell, ring: hv_doorbell_fn, opaque: UnsafeMutableRawPointer?) {
        doorbell.onBind = { [weak device] inBackend, error in
            guard let device else { return }
            PluginDoorbells.logPath(inBackend: inBackend, error: error, device: device)
        }
        doorbell.onUnbindError = { [weak device] error in device?.logBackend("doorbell: \(error)") }
        lock.withLock { entries.append(Entry(doorbell: doorbell, ring: ring, opaque: opaque)) }
        control.signal()
        if thread == nil {
            thread = HostThread.spawn(name: "doorbells") { [self] in run() }
        }
    }

    /// [control] Ends the thread after a callback in flight has returned.
    package func stop() {
        lock.withLock { stopping = true }
        control.signal()
        if let t = thread {
            pthread_join(t, nil)
            thread = nil
        }
    }

    private func run() {
        var current: [Entry] = []
        var fds: [pollfd] = []
        while true {
            let (snapshot, stop) = lock.withLock { (entries, stopping) }
            if stop { return }
            if snapshot.count != current.count || fds.isEmpty {
                current = snapshot
                fds = [pollfd(fd: control.fd, events: Int16(POLLIN), revents: 0)]
                    + current.map { pollfd(fd: $0.doorbell.event.fd, events: Int16(POLLIN), revents: 0) }
            }
            for i in fds.indices { fds[i].revents = 0 }
            guard poll(&fds, nfds_t(fds.count), -1) > 0 else { continue }   // EINTR: poll again
            if fds[0].revents != 0 { _ = control.take() }
            for (i, e) in current.enumerated() where fds[i + 1].revents & Int16(POLLIN) != 0 {
                let count = e.doorbell.event.take()
                guard count > 0 else { continue }
                device.call { e.ring($0, e.opaque, count) }
            }
        }
    }

    private static func logPath(inBackend: Bool, error: Error?, device: PluginDevice) {
        let bit: UInt8 = inBackend ? 1 : 2
        guard loggedPaths.bitwiseOr(bit, ordering: .relaxed).oldValue & bit == 0 else { return }
        let who = "\(device.context.vmName): \(device.context.prefix) (\(device.modelName))"
        if inBackend {
            device.context.logger.info("\(who): doorbell writes complete in the kernel (KVM_IOEVENTFD); the device thread wakes on an eventfd")
        } else {
            device.context.logger.warning("\(who): KVM_IOEVENTFD refused (\(error.map { "\($0)" } ?? "unknown")); doorbell writes exit to the host, which signals the same eventfd")
        }
    }
}
