/// A fixed-capacity FIFO of bytes (never grows past `capacity`).
package struct ByteRing {
    private var storage: [UInt8]
    private var head = 0
    private(set) package var count = 0

    package init(capacity: Int) { storage = [UInt8](repeating: 0, count: max(capacity, 1)) }

    package var capacity: Int { storage.count }
    package var isEmpty: Bool { count == 0 }
    var isFull: Bool { count == storage.count }
    var freeSpace: Int { storage.count - count }

    /// Appends `byte`; returns false (and drops it) when full.
    @discardableResult
    package mutating func push(_ byte: UInt8) -> Bool {
        guard count < storage.count else { return false }
        storage[(head + count) % storage.count] = byte
        count += 1
        return true
    }

    package mutating func pop() -> UInt8? {
        guard count > 0 else { return nil }
        let b = storage[head]
        head = (head + 1) % storage.count
        count -= 1
        return b
    }

    var first: UInt8? { count > 0 ? storage[head] : nil }

    /// Replaces the newest byte (the 16450's overwritten receiver buffer).
    package mutating func replaceLast(_ byte: UInt8) {
        guard count > 0 else { push(byte); return }
        storage[(head + count - 1) % storage.count] = byte
    }

    package mutating func removeAll() { head = 0; count = 0 }
}
