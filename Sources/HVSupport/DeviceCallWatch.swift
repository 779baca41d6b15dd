import Glibc

/// What a device call is doing, kept cheap to record (formatted only when reported).
package struct DeviceCallSite: Sendable {
    package enum Operation: Sendable {
        case barRead(bar: UInt32, offset: UInt64, size: Int)
        case barWrite(bar: UInt32, offset: UInt64, size: Int)
        /// A legacy port or MMIO window (hv.legacy-io).
        case windowRead(address: UInt64, size: Int)
        case windowWrite(address: UInt64, size: Int)
        /// A device op by name ("reset", "save_state").
        case op(StaticString)
    }

    /// The device, as the plugin host names it: "ethernet0 (model 'vlance', plugin 'Vlance')".
    package let device: String
    package let operation: Operation

    package init(device: String, operation: Operation) {
        self.device = device
        self.operation = operation
    }

    package var description: String {
        switch operation {
        case .barRead(let bar, let offset, let size): "\(device): BAR \(bar) read at offset 0x\(String(offset, radix: 16)) (\(size) bytes)"
        case .barWrite(let bar, let offset, let size): "\(device): BAR \(bar) write at offset 0x\(String(offset, radix: 16)) (\(size) bytes)"
        case .windowRead(let address, let size): "\(device): legacy window read at 0x\(String(address, radix: 16)) (\(size) bytes)"
        case .windowWrite(let address, let size): "\(device): legacy window write at 0x\(String(address, radix: 16)) (\(size) bytes)"
        case .op(let name): "\(device): \(name)"
        }
    }
}

/// A vCPU thread's device call in flight, watched by ``DeviceCallWatchdog``: a call that
/// has not returned after `limits.stall` is reported once (`onStall`, which gives the
/// thread's pCPU slot back), after `limits.fail` it fails the VM (`onFail`); when a
/// stalled call returns at last, `onReturn` runs on the calling thread.
///
/// The plugin host records calls with ``begin(_:)``/``end()`` around the device lock, on
/// whatever thread makes them; only threads bound with ``bindToCurrentThread()`` (vCPU
/// threads, which hold pCPU slots) are watched. `onStall` runs with the watch's lock held,
/// so the call cannot end half-way through it; `onFail` runs without it.
package final class DeviceCallWatch: @unchecked Sendable {
    /// How long a call may run before it is reported (and its slot given back), and
    /// before its VM is failed.
    package struct Limits: Equatable, Sendable, CustomStringConvertible {
        package var stall: UInt64
        package var fail: UInt64
        package static let standard = Limits(stall: 100_000_000, fail: 5_000_000_000)
        package init(stall: UInt64, fail: UInt64) {
            self.stall = stall
            self.fail = max(fail, stall)
        }
        package var description: String { "\(stall / 1_000_000)/\(fail / 1_000_000)" }
    }

    package let limits: Limits
    private let lock = HostLock()
    // [lock]
    private var site: DeviceCallSite?
    private var startedAt: UInt64 = 0
    private var stalled = false
    private var failed = false

    private let onStall: (_ site: DeviceCallSite, _ elapsed: UInt64) -> Void
    private let onFail: (_ site: DeviceCallSite, _ elapsed: UInt64) -> Void
    private let onReturn: (_ site: DeviceCallSite, _ elapsed: UInt64) -> Void

    package init(limits: Limits,
                 onStall: @escaping (DeviceCallSite, UInt64) -> Void,
                 onFail: @escaping (DeviceCallSite, UInt64) -> Void,
                 onReturn: @escaping (DeviceCallSite, UInt64) -> Void) {
        self.limits = limits
        self.onStall = onStall
        self.onFail = onFail
        self.onReturn = onReturn
    }

    // MARK: The calling thread

    private static let key: pthread_key_t = {
        var k = pthread_key_t()
        pthread_key_create(&k, nil)
        return k
    }()

    /// The watch bound to the current thread, if any.
    package static var current: DeviceCallWatch? {
        guard let p = pthread_getspecific(key) else { return nil }
        return Unmanaged<DeviceCallWatch>.fromOpaque(p).takeUnretainedValue()
    }

    /// Makes device calls on this thread watched (the watchdog starts watching it).
    package func bindToCurrentThread() {
        pthread_setspecific(Self.key, Unmanaged.passRetained(self).toOpaque())
        DeviceCallWatchdog.shared.add(self)
    }

    package func unbindFromCurrentThread() {
        guard let p = pthread_getspecific(Self.key) else { return }
        pthread_setspecific(Self.key, nil)
        DeviceCallWatchdog.shared.remove(self)
        Unmanaged<DeviceCallWatch>.fromOpaque(p).release()
    }

    package func begin(_ site: DeviceCallSite) {
        let now = VMClock.hostNanoseconds()
        lock.withLock {
            self.site = site
            startedAt = now
        }
    }

    package func end() {
        let returned: (DeviceCallSite, UInt64)? = lock.withLock {
            defer {
                site = nil
                stalled = false
                failed = false
            }
            guard stalled, let site else { return nil }
            return (site, VMClock.hostNanoseconds() &- startedAt)
        }
        if let returned { onReturn(returned.0, returned.1) }
    }

    /// Whether a call has been in flight past the fail limit (its thread may never return).
    package var hasFailedCall: Bool { lock.withLock { failed } }

    // MARK: The watchdog

    func check(now: UInt64) {
        let fail: (DeviceCallSite, UInt64)? = lock.withLock {
            guard let site, now > startedAt else { return nil }
            let elapsed = now - startedAt
            if !stalled && elapsed >= limits.stall {
                stalled = true
                onStall(site, elapsed)
            }
            guard !failed && elapsed >= limits.fail else { return nil }
            failed = true
            return (site, elapsed)
        }
        if let fail { onFail(fail.0, fail.1) }
    }
}

/// The thread that looks at every bound ``DeviceCallWatch`` every 10 ms. It takes no
/// lock a device call holds, so it sees a call that never returns.
package final class DeviceCallWatchdog: @unchecked Sendable {
    package static let shared = DeviceCallWatchdog()
    static let period: UInt64 = 10_000_000

    private let lock = HostLock()
    private var watches: [ObjectIdentifier: DeviceCallWatch] = [:]
    private var started = false

    func add(_ w: DeviceCallWatch) {
        lock.withLock {
            watches[ObjectIdentifier(w)] = w
            if !started {
                started = true
                pthread_detach(HostThread.spawn(name: "device-watchdog") { [self] in loop() })
            }
        }
    }

    func remove(_ w: DeviceCallWatch) { lock.withLock { _ = watches.removeValue(forKey: ObjectIdentifier(w)) } }

    private func loop() {
        var ts = timespec(tv_sec: 0, tv_nsec: Int(Self.period))
        while true {
            nanosleep(&ts, nil)
            let now = VMClock.hostNanoseconds()
            for w in lock.withLock({ Array(watches.values) }) { w.check(now: now) }
        }
    }
}
