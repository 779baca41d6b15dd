import HVSupport

/// Receives the screen's changes through a ``DisplayDamageFeed``.
protocol DamageSubscriber: AnyObject {
    func changed(_ changes: [DisplayChange])
}

/// Shares one surface's changes among its consoles: `DisplaySurface.takeChanges` hands
/// each change out once, so every console collects through the feed, which gives
/// each subscriber its copy.
final class DisplayDamageFeed: @unchecked Sendable {
    let surface: DisplaySurface
    private let lock = HostLock()
    private var subscribers: [DamageSubscriber] = []

    init(surface: DisplaySurface) { self.surface = surface }

    func subscribe(_ s: DamageSubscriber) {
        lock.withLock { subscribers.append(s) }
    }

    func unsubscribe(_ s: DamageSubscriber) {
        lock.withLock { subscribers.removeAll { $0 === s } }
    }

    /// Moves the surface's new damage to every subscriber.
    func collect() {
        lock.withLock {
            let changes = surface.takeChanges()
            guard !changes.isEmpty else { return }
            for s in subscribers { s.changed(changes) }
        }
    }
}
