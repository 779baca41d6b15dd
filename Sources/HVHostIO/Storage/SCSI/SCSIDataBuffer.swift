import HVMemory

/// The initiator's data buffer of one command: where DATA IN goes and DATA OUT comes
/// from. Offsets are bytes from the start of the buffer; callers stay inside `count`.
package protocol SCSIDataBuffer: Sendable {
    var count: Int { get }
    /// Target -> initiator (DATA IN) at `offset`.
    func store(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws
    /// Initiator -> target (DATA OUT) from `offset`.
    func load(into bytes: UnsafeMutableRawBufferPointer, at offset: Int) throws
}

/// A buffer that is guest-physical segments of a VM's RAM (an HBA's scatter/gather
/// list). Built only when every segment is RAM; writes mark the pages dirty.
package struct GuestSegmentBuffer: SCSIDataBuffer {
    package struct Segment: Sendable {
        package var gpa: UInt64
        package var length: Int
        package init(gpa: UInt64, length: Int) {
            self.gpa = gpa
            self.length = length
        }
    }

    let memory: GuestMemory
    let segments: [Segment]
    package let count: Int

    /// Nil when a segment is not entirely guest RAM (or the total overflows).
    package init?(memory: GuestMemory, segments: [Segment]) {
        var total = 0
        for s in segments {
            guard s.length > 0, memory.contains(s.gpa, length: s.length) else { return nil }
            let (sum, overflow) = total.addingReportingOverflow(s.length)
            guard !overflow else { return nil }
            total = sum
        }
        self.memory = memory
        self.segments = segments
        self.count = total
    }

    package func store(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws {
        try walk(offset: offset, length: bytes.count) { gpa, at, n in
            try memory.write(at: gpa, from: UnsafeRawBufferPointer(rebasing: bytes[at..<at + n]))
        }
    }

    package func load(into bytes: UnsafeMutableRawBufferPointer, at offset: Int) throws {
        try walk(offset: offset, length: bytes.count) { gpa, at, n in
            try memory.read(at: gpa, into: UnsafeMutableRawBufferPointer(rebasing: bytes[at..<at + n]))
        }
    }

    /// Calls `body(gpa, offsetInBytes, length)` for each piece of `offset ..< offset+length`.
    private func walk(offset: Int, length: Int, _ body: (UInt64, Int, Int) throws -> Void) throws {
        var skip = offset
        var done = 0
        for s in segments where done < length {
            if skip >= s.length {
                skip -= s.length
                continue
            }
            let n = min(s.length - skip, length - done)
            try body(s.gpa + UInt64(skip), done, n)
            done += n
            skip = 0
        }
    }
}
