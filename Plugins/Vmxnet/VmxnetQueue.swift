import Synchronization

/// A ring in guest memory the device reads or writes through a host mapping, validated
/// at activation: 16-byte descriptors, `size` of them, and the device's position in it.
struct Ring {
    var base: UnsafeMutableRawPointer?
    var gpa: UInt64 = 0
    var size: UInt32 = 0
    var index: UInt32 = 0
    /// The generation bit a descriptor must carry to be the owner's: starts at 1 and
    /// flips on every wrap.
    var gen: UInt32 = 1

    var present: Bool { base != nil && size > 0 }

    @inline(__always) func dword(_ i: UInt32, _ word: Int) -> UInt32 {
        base!.loadUnaligned(fromByteOffset: Int(i) * 16 + word * 4, as: UInt32.self)
    }

    @inline(__always) func qword0(_ i: UInt32) -> UInt64 {
        base!.loadUnaligned(fromByteOffset: Int(i) * 16, as: UInt64.self)
    }

    @inline(__always) mutating func advance() {
        index += 1
        if index == size { index = 0; gen ^= 1 }
    }

    /// Writes a completion descriptor: the first three dwords, then (after a release
    /// fence, so the guest never sees the generation bit before the data) dword 3 with
    /// the current generation in bit 31. Advances.
    @inline(__always) mutating func complete(_ d0: UInt32, _ d1: UInt32, _ d2: UInt32, _ d3: UInt32) {
        let p = base! + Int(index) * 16
        p.storeBytes(of: d0, toByteOffset: 0, as: UInt32.self)
        p.storeBytes(of: d1, toByteOffset: 4, as: UInt32.self)
        p.storeBytes(of: d2, toByteOffset: 8, as: UInt32.self)
        atomicMemoryFence(ordering: .releasing)
        p.storeBytes(of: d3 & 0x7FFF_FFFF | gen << 31, toByteOffset: 12, as: UInt32.self)
        advance()
    }
}

/// A receive buffer taken for the frame being received: which ring, which descriptor,
/// where, how large, and how much of it the frame filled.
struct RxBuffer {
    var ring: Int
    var index: UInt32
    var gpa: UInt64
    var length: Int
    var used: Int
}

/// Per-queue counters, in UPT1_TxStats / UPT1_RxStats order.
struct QueueStats {
    var v = [UInt64](repeating: 0, count: 10)
}

final class TxQueue {
    let id: Int
    var desc: UnsafeMutableRawPointer?   // its Vmxnet3_TxQueueDesc
    var ring = Ring()
    var comp = Ring()
    var intrIdx = 0
    var stopped = false
    var error: UInt32 = 0
    var stats = QueueStats()
    init(id: Int) { self.id = id }
}

final class RxQueue {
    let id: Int
    var desc: UnsafeMutableRawPointer?   // its Vmxnet3_RxQueueDesc
    var rings = [Ring(), Ring()]
    var comp = Ring()
    var intrIdx = 0
    var stopped = false
    var error: UInt32 = 0
    var stats = QueueStats()
    init(id: Int) { self.id = id }
}

// UPT1 stats indices.
enum TxStat {
    static let ucastPkts = 2, ucastBytes = 3, mcastPkts = 4, mcastBytes = 5
    static let bcastPkts = 6, bcastBytes = 7, errors = 8, discards = 9
    static let tsoPkts = 0, tsoBytes = 1
}

enum RxStat {
    static let ucastPkts = 2, ucastBytes = 3, mcastPkts = 4, mcastBytes = 5
    static let bcastPkts = 6, bcastBytes = 7, outOfBuf = 8, errors = 9
}
