import CPageContent
import Glibc
import Synchronization

/// Content-based page sharing across the VMs of one host process (ESX's transparent
/// page sharing, OSDI 2002 §4): the scanner hashes guest pages, compares candidates in
/// full, and backs identical pages with one read-only frame of a host-wide memfd.
///
/// How a page is shared: its host address in the VM's RAM mapping is replaced, with
/// `mmap(MAP_PRIVATE | MAP_FIXED)`, by the frame's page of the frames memfd; KVM's MMU
/// notifier drops the guest's old translation at once, and a later write by the guest
/// (or by the VMM on its behalf) copy-on-writes a private page in the kernel, leaving
/// the frame intact. The page's old memfd backing is then freed with a hole punch.
/// A zero page is replaced by a private anonymous mapping instead: reads see the
/// kernel's zero page, a write gets a fresh page.
///
/// Concurrency: the swap runs with the VM's vCPUs held out of guest mode (`quiesce`),
/// and after the swap the old backing (which nothing can write any more) is compared
/// with the frame again: a device write that slipped in between compare and swap makes
/// them differ, and the swap is undone (the old backing mapped back) before the VM
/// runs again. A shared page the guest wrote is found by `/proc/self/pagemap` (present,
/// anonymous, mapped once) and leaves the frame's reference count.
///
/// Suspend needs nothing: it reads pages through the mapping, which shows a shared
/// page's content. Ballooning or swapping a shared page must first call `unshare`.
package final class PageSharing: @unchecked Sendable {
    /// A VM's RAM taking part.
    package final class Member: @unchecked Sendable {
        package let name: String
        let memory: GuestMemory
        let quiesce: (() -> Void) -> Void
        /// Per page of the mapping: 0 private (its memfd page), 1 zero, frame + 2 shared,
        /// `copied` a private anonymous copy the guest's write made of a zero or shared page.
        var state: [UInt32]
        var cursor = 0
        var shared = 0
        var zero = 0
        var copied = 0
        var detached = false
        /// Pages mapped back to their memfd behind the scanner's back (the balloon took
        /// them on a vCPU thread, which must not wait for `lock`); forgotten at the next scan.
        private let remapped = Mutex<[Int]>([])

        init(name: String, memory: GuestMemory, quiesce: @escaping (() -> Void) -> Void) {
            self.name = name
            self.memory = memory
            self.quiesce = quiesce
            state = [UInt32](repeating: 0, count: Int(memory.size / GuestMemory.pageSize))
        }

        /// Page `page` was mapped back to its memfd (`GuestMemory.releaseWhateverMapsIt`).
        /// Any thread; takes no lock the scanner holds while it quiesces the VM.
        package func noteRemapped(_ page: Int) {
            remapped.withLock { $0.append(page) }
        }

        func takeRemapped() -> [Int] { remapped.withLock { r in defer { r = [] }; return r } }
    }

    /// Per-VM counts, pages.
    package struct Counts: Equatable, Sendable {
        package var shared: Int
        package var zero: Int
        /// Formerly shared or zero pages the guest wrote: private memory outside the memfd.
        package var copied: Int
        package static let none = Counts(shared: 0, zero: 0, copied: 0)
    }

    static let copiedState = UInt32.max

    /// Totals since creation.
    package struct Totals: Equatable, Sendable {
        package var scanned: UInt64 = 0
        package var merged: UInt64 = 0
        package var undone: UInt64 = 0
        package var unsharedByWrites: UInt64 = 0
        package var framesInUse = 0
    }

    private static let page = Int(GuestMemory.pageSize)
    private let lock = Mutex(())
    // All below: [lock]
    private var members: [Member] = []
    private var next = 0
    private let frames: FrameStore
    /// Hash of a frame → frames with that hash.
    private var frameIndex: [UInt64: [UInt32]] = [:]
    /// Hash → the last private page seen with it (a candidate for a second match).
    private var hints: [UInt64: (member: ObjectIdentifier, page: Int)] = [:]
    private var totals = Totals()
    private let pagemap: Int32

    /// `capacityPages`: most distinct shared frames (virtual reservation; only frames in
    /// use take memory).
    package init(capacityPages: Int = 1 << 22) throws(GuestMemoryError) {
        frames = try FrameStore(capacity: capacityPages)
        pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC)
        guard pagemap >= 0 else { throw .system(call: "open(/proc/self/pagemap)", errno: errno) }
    }

    deinit { close(pagemap) }

    /// Lets the scanner share `memory`'s pages; `quiesce` runs its body with the VM's
    /// vCPUs out of guest mode.
    package func attach(_ memory: GuestMemory, name: String, quiesce: @escaping (() -> Void) -> Void) -> Member {
        let m = Member(name: name, memory: memory, quiesce: quiesce)
        lock.withLock { _ in members.append(m) }
        return m
    }

    /// Forgets a VM (its RAM is about to be unmapped): its frame references go.
    package func detach(_ member: Member) {
        lock.withLock { _ in
            members.removeAll { $0 === member }
            member.detached = true
            for s in member.state where s >= 2 && s != Self.copiedState { release(frame: s - 2) }
            member.state = []
            member.shared = 0
            member.zero = 0
            member.copied = 0
            hints = hints.filter { $0.value.member != ObjectIdentifier(member) }
        }
    }

    package func counts(of member: Member) -> Counts {
        lock.withLock { _ in
            catchUp(member)
            return Counts(shared: member.shared, zero: member.zero, copied: member.copied)
        }
    }

    /// Per page of the VM's mapping, whether it is private memfd memory (neither shared,
    /// zero nor a copy): the pages host swap may take.
    package func privatePages(of member: Member) -> [Bool] {
        lock.withLock { _ in
            catchUp(member)
            return member.state.map { $0 == 0 }
        }
    }

    package var statistics: Totals {
        lock.withLock { _ in var t = totals; t.framesInUse = frames.inUse; return t }
    }

    /// Gives `page` (index into the VM's RAM mapping) private memfd backing again with
    /// its current content, so that other mechanisms may punch it out. No-op for a
    /// private page.
    package func unshare(_ member: Member, page: Int) {
        lock.withLock { _ in
            guard page < member.state.count, member.state[page] != 0 else { return }
            member.quiesce { restorePrivate(member, page: page, keepContent: true) }
        }
    }

    /// Visits up to `pages` pages round-robin across the VMs: zero pages and pages equal
    /// to a frame or to an earlier page of the same hash are shared.
    package func scan(pages budget: Int) {
        lock.withLock { _ in
            guard !members.isEmpty else { return }
            var left = budget
            var rounds = 0
            while left > 0, rounds < members.count {
                next %= members.count
                let m = members[next]
                catchUp(m)
                let n = min(left, 1024, m.state.count)
                scan(m, count: n)
                left -= n
                next += 1
                rounds = left > 0 ? rounds + 1 : rounds
            }
        }
    }

    /// Re-reads which shared or zero pages the guest wrote since (copy-on-write made
    /// them private copies) and moves them from the shared/zero counts to `copied`.
    package func refreshWritten() {
        lock.withLock { _ in
            for m in members {
                var page = 0
                while page < m.state.count {
                    let n = min(4096, m.state.count - page)
                    if m.state[page..<page + n].contains(where: { $0 != 0 }) {
                        let flags = readPagemap(m, first: page, count: n)
                        for i in 0..<n where m.state[page + i] != 0 && m.state[page + i] != Self.copiedState
                            && Self.isPrivateCopy(flags[i]) {
                            forget(m, page: page + i)
                            m.state[page + i] = Self.copiedState
                            m.copied += 1
                            totals.unsharedByWrites += 1
                        }
                    }
                    page += n
                }
            }
        }
    }

    // MARK: scanning (all under lock)

    /// Forgets the pages mapped back behind the scanner's back.
    private func catchUp(_ m: Member) {
        for page in m.takeRemapped() where !m.detached && page < m.state.count && m.state[page] != 0 { forget(m, page: page) }
    }

    private struct Candidate {
        let page: Int
        /// nil: zero page.
        let frame: UInt32?
    }

    private func scan(_ m: Member, count: Int) {
        let start = m.cursor
        let n = min(count, m.state.count - start)
        m.cursor = start + n >= m.state.count ? 0 : start + n
        totals.scanned += UInt64(n)
        let flags = readPagemap(m, first: start, count: n)
        var candidates: [ObjectIdentifier: (Member, [Candidate])] = [:]
        func propose(_ owner: Member, _ c: Candidate) {
            candidates[ObjectIdentifier(owner), default: (owner, [])].1.append(c)
        }
        let base = m.memory.base
        for i in 0..<n {
            let page = start + i
            // Only pages the guest touched (present in the mapping, still its memfd's):
            // reading another would allocate it.
            guard m.state[page] == 0, Self.isPresentFilePage(flags[i]) else { continue }
            let p = base + page * Self.page
            if hv_page_is_zero(p) != 0 { propose(m, Candidate(page: page, frame: nil)); continue }
            let h = hv_page_hash(p)
            if let f = frameIndex[h]?.first(where: { memcmp(frames.address(of: $0), p, Self.page) == 0 }) {
                frames.retain(f)  // held for the candidate; dropped after the swap
                propose(m, Candidate(page: page, frame: f))
                continue
            }
            if let hint = hints[h], let other = members.first(where: { ObjectIdentifier($0) == hint.member }),
               !(other === m && hint.page == page), other.state[hint.page] == 0,
               memcmp(other.memory.base + hint.page * Self.page, p, Self.page) == 0,
               let f = frames.allocate(copying: p) {
                hints[h] = nil
                frameIndex[h, default: []].append(f)
                frames.setHash(f, h)
                frames.retain(f)
                propose(m, Candidate(page: page, frame: f))
                frames.retain(f)
                propose(other, Candidate(page: hint.page, frame: f))
                frames.release(f)  // the allocation's own reference
                continue
            }
            if hints.count > 1 << 20 { hints.removeAll(keepingCapacity: true) }
            hints[h] = (ObjectIdentifier(m), page)
        }
        for (owner, list) in candidates.values {
            owner.quiesce { for c in list { merge(owner, c) } }
            for c in list { if let f = c.frame { release(frame: f) } }
        }
    }

    /// Swaps one page to its frame (or to zero) with the VM quiesced; see the type's
    /// comment for why comparing after the swap is what makes it safe.
    private func merge(_ m: Member, _ c: Candidate) {
        guard !m.detached, m.state[c.page] == 0 else { return }
        let p = m.memory.base + c.page * Self.page
        let offset = off_t(c.page * Self.page)
        if let f = c.frame {
            guard memcmp(frames.address(of: f), p, Self.page) == 0 else { return }
            guard mmap(p, Self.page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED | MAP_NORESERVE,
                       frames.fd, off_t(Int(f) * Self.page)) != MAP_FAILED else { return }
            guard oldBacking(m, offset: offset, equals: frames.address(of: f)) else {
                restorePrivate(m, page: c.page, keepContent: false)
                totals.undone += 1
                return
            }
            frames.retain(f)
            m.state[c.page] = f + 2
            m.shared += 1
        } else {
            guard hv_page_is_zero(p) != 0 else { return }
            guard mmap(p, Self.page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE,
                       -1, 0) != MAP_FAILED else { return }
            guard oldBacking(m, offset: offset, equals: nil) else {
                restorePrivate(m, page: c.page, keepContent: false)
                totals.undone += 1
                return
            }
            m.state[c.page] = 1
            m.zero += 1
        }
        totals.merged += 1
        // The old backing is no longer mapped: free it.
        _ = hv_punch_hole(m.memory.fd, Int64(offset), Int64(Self.page))
    }

    /// Whether the page's memfd backing (no longer mapped) holds `content` (nil: zeros).
    private func oldBacking(_ m: Member, offset: off_t, equals content: UnsafeMutableRawPointer?) -> Bool {
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: Self.page, alignment: 4096)
        defer { buffer.deallocate() }
        guard pread(m.memory.fd, buffer, Self.page, offset) == Self.page else { return false }
        if let content { return memcmp(buffer, content, Self.page) == 0 }
        return hv_page_is_zero(buffer) != 0
    }

    /// Maps the page's memfd backing back. `keepContent`: first copy what the page shows
    /// now into the backing (it was punched out after the merge).
    private func restorePrivate(_ m: Member, page: Int, keepContent: Bool) {
        let p = m.memory.base + page * Self.page
        let offset = off_t(page * Self.page)
        if keepContent { _ = pwrite(m.memory.fd, p, Self.page, offset) }
        let r = mmap(p, Self.page, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, m.memory.fd, offset)
        precondition(r != MAP_FAILED, "page sharing: cannot map guest RAM back (errno \(errno))")
        forget(m, page: page)
    }

    private func forget(_ m: Member, page: Int) {
        let s = m.state[page]
        if s == Self.copiedState { m.copied -= 1 } else if s == 1 { m.zero -= 1 } else if s >= 2 { m.shared -= 1; release(frame: s - 2) }
        m.state[page] = 0
    }

    private func release(frame f: UInt32) {
        if frames.release(f), let h = frames.hash(of: f) {
            frameIndex[h]?.removeAll { $0 == f }
            if frameIndex[h]?.isEmpty == true { frameIndex[h] = nil }
        }
    }

    // MARK: pagemap

    private func readPagemap(_ m: Member, first: Int, count: Int) -> [UInt64] {
        var out = [UInt64](repeating: 0, count: count)
        let vpage = Int(bitPattern: m.memory.base) / Self.page + first
        _ = out.withUnsafeMutableBytes { pread(pagemap, $0.baseAddress, count * 8, off_t(vpage * 8)) }
        return out
    }

    /// Bit 63 present, bit 61 file page or shared anonymous, bit 56 mapped exactly once.
    private static func isPresentFilePage(_ e: UInt64) -> Bool { e & (1 << 63) != 0 && e & (1 << 61) != 0 }
    private static func isPrivateCopy(_ e: UInt64) -> Bool {
        e & (1 << 63) != 0 && e & (1 << 61) == 0 && e & (1 << 56) != 0
    }
}

/// The shared frames: a memfd of read-only-by-convention pages with reference counts.
private final class FrameStore {
    let fd: Int32
    let base: UnsafeMutableRawPointer
    let capacity: Int
    private var refs: [UInt32] = []
    private var hashes: [UInt64] = []
    private var free: [UInt32] = []
    private(set) var inUse = 0

    init(capacity: Int) throws(GuestMemoryError) {
        let fd = hostMemfdCreate("shared-pages", memfdCloseOnExec)
        guard fd >= 0 else { throw .system(call: "memfd_create(shared-pages)", errno: errno) }
        let size = capacity * Int(GuestMemory.pageSize)
        guard ftruncate(fd, off_t(size)) == 0 else { let e = errno; close(fd); throw .system(call: "ftruncate", errno: e) }
        let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0)
        guard let p, p != MAP_FAILED else { let e = errno; close(fd); throw .system(call: "mmap(shared-pages)", errno: e) }
        self.fd = fd
        self.base = p
        self.capacity = capacity
    }

    deinit {
        munmap(base, capacity * Int(GuestMemory.pageSize))
        close(fd)
    }

    func address(of f: UInt32) -> UnsafeMutableRawPointer { base + Int(f) * Int(GuestMemory.pageSize) }

    /// A new frame holding a copy of `page`, with one reference.
    func allocate(copying page: UnsafeRawPointer) -> UInt32? {
        let f: UInt32
        if let reused = free.popLast() { f = reused } else {
            guard refs.count < capacity else { return nil }
            f = UInt32(refs.count)
            refs.append(0)
            hashes.append(0)
        }
        address(of: f).copyMemory(from: page, byteCount: Int(GuestMemory.pageSize))
        refs[Int(f)] = 1
        inUse += 1
        return f
    }

    func setHash(_ f: UInt32, _ h: UInt64) { hashes[Int(f)] = h }
    func hash(of f: UInt32) -> UInt64? { hashes[Int(f)] }
    func retain(_ f: UInt32) { refs[Int(f)] += 1 }

    /// Drops a reference; true when that was the last (the frame is freed).
    @discardableResult
    func release(_ f: UInt32) -> Bool {
        refs[Int(f)] -= 1
        guard refs[Int(f)] == 0 else { return false }
        _ = hv_punch_hole(fd, Int64(f) * Int64(GuestMemory.pageSize), Int64(GuestMemory.pageSize))
        free.append(f)
        inUse -= 1
        return true
    }
}
