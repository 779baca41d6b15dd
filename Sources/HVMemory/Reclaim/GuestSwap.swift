import Glibc
import HVSupport
import Synchronization

/// Host swap for one VM's RAM, the last resort of memory reclamation.
///
/// A swapped page's bytes go to the swap file at the page's own offset in the memfd
/// (a sparse file as large as RAM: no slot allocator) and its memfd page is punched
/// out. A userfaultfd in MISSING mode watches the mapping: when the guest (through KVM)
/// or the VMM touches a punched page, the fault thread reads it back from the file
/// (UFFDIO_COPY) or, for a page nobody swapped (a deflated balloon page), supplies
/// zeros. Victims are chosen by a clock over resident pages with a second chance for
/// pages the caller saw referenced (the dirty log).
package final class GuestSwap: @unchecked Sendable {
    package struct Statistics: Sendable, Equatable {
        /// Pages in the swap file now (SWCUR).
        package var swapped = 0
        package var swappedOut: UInt64 = 0
        package var swappedIn: UInt64 = 0
        /// Punched pages the fault thread zero-filled.
        package var zeroFilled: UInt64 = 0

        package init() {}
    }

    package let path: String
    private let memory: GuestMemory
    private let file: Int32
    private let faults: Userfaultfd
    private let pages: Int
    private let state: Mutex<State>
    private var thread: pthread_t?
    private let running = Atomic<Bool>(true)
    /// Swap-in latencies (µs) since the last `takeSwapInLatencies`, for benchmarks.
    private let latencies = Mutex<[UInt32]>([])
    /// Held while a page is filled (see `serve`).
    private let serving = HostLock()

    private struct State {
        var inSwap: [Bool]
        var hand = 0
        var statistics = Statistics()
    }

    /// Creates (or truncates) the swap file at `path` and starts the fault thread.
    package init(memory: GuestMemory, path: String, name: String) throws {
        let file = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard file >= 0 else { throw GuestMemoryError.system(call: "open(\(path))", errno: errno) }
        guard ftruncate(file, off_t(memory.size)) == 0 else {
            let e = errno; Glibc.close(file); unlink(path)
            throw GuestMemoryError.system(call: "ftruncate(\(path))", errno: e)
        }
        do {
            faults = try Userfaultfd()
        } catch {
            Glibc.close(file); unlink(path)
            throw error
        }
        self.path = path
        self.memory = memory
        self.file = file
        pages = Int(memory.size / GuestMemory.pageSize)
        state = Mutex(State(inSwap: [Bool](repeating: false, count: pages)))
        thread = HostThread.spawn(name: "\(name)-swapin") { [self] in serveFaults() }
    }

    /// Stops the fault thread and deletes the swap file. Call once nothing touches
    /// guest RAM any more (the VM stopped), or after swapping everything back in.
    package func close() {
        guard running.exchange(false, ordering: .acquiringAndReleasing) else { return }
        if let thread { pthread_join(thread, nil) }
        thread = nil
        Glibc.close(file)
        unlink(path)
    }

    deinit { close() }

    package var statistics: Statistics { state.withLock { $0.statistics } }

    /// Swaps out up to `count` resident pages chosen by the clock and returns how many
    /// went. `referenced` (bit i % 64 of word i / 64 = page i of the mapping; may be
    /// empty) gives recently written pages a second chance; `excluded` pages (shared or
    /// ballooned elsewhere) are never chosen. `quiesce` runs its body with every vCPU out
    /// of guest mode, so that no guest write lands between the copy and the punch.
    package func swapOut(count: Int, referenced: [UInt64] = [], excluded: (Int) -> Bool = { _ in false },
                         quiesce: (() throws -> Void) throws -> Void) throws -> Int {
        guard count > 0 else { return 0 }
        // (Re-)watch the whole mapping: a page remapped by page sharing and mapped
        // back since has a fresh, unwatched VMA.
        try faults.watch(start: UInt64(UInt(bitPattern: memory.base)), length: memory.size)
        let resident = memory.residency()
        let victims: [Int] = state.withLock { s in
            var chosen: [Int] = []
            var scanned = 0
            // Two sweeps: the first clears second chances (conceptually), the second takes.
            while chosen.count < count, scanned < 2 * pages {
                let page = s.hand
                s.hand = (s.hand + 1) % pages
                scanned += 1
                guard resident[page] & 1 != 0, !s.inSwap[page], !excluded(page) else { continue }
                let word = page / 64
                if scanned <= pages, word < referenced.count, referenced[word] & (1 << UInt64(page % 64)) != 0 { continue }
                chosen.append(page)
            }
            return chosen
        }
        guard !victims.isEmpty else { return 0 }
        var failure: GuestMemoryError?
        try quiesce {
            for page in victims {
                let offset = UInt64(page) * GuestMemory.pageSize
                let written = pwrite(file, memory.base + Int(offset), Int(GuestMemory.pageSize), off_t(offset))
                guard written == Int(GuestMemory.pageSize) else {
                    failure = .system(call: "pwrite(\(path))", errno: written < 0 ? errno : EIO)
                    break
                }
                // Marked before the punch: the first touch after it finds the page here.
                state.withLock { $0.inSwap[page] = true; $0.statistics.swapped += 1; $0.statistics.swappedOut += 1 }
                try memory.release(offset: offset, count: 1)
            }
        }
        if let failure { throw failure }
        return victims.count
    }

    /// Brings up to `count` swapped pages back (lowest first) without waiting for a
    /// touch; returns how many came back.
    @discardableResult
    package func swapIn(count: Int) throws -> Int {
        let candidates: [Int] = state.withLock { s in
            var found: [Int] = []
            for page in 0..<pages where s.inSwap[page] {
                found.append(page)
                if found.count == count { break }
            }
            return found
        }
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: Int(GuestMemory.pageSize), alignment: 4096)
        defer { buffer.deallocate() }
        var done = 0
        for page in candidates where try serve(page: page, buffer: buffer) { done += 1 }
        return done
    }

    /// Forgets page `page` of the mapping (the guest gave it to the balloon: its bytes
    /// no longer matter); true when it was in the swap file. Runs on vCPU threads, whose
    /// seccomp filter has no fallocate: the page's file blocks stay until it is swapped
    /// again (same offset) or the file goes.
    @discardableResult
    package func discard(page: Int) -> Bool {
        state.withLock { s in
            guard page < pages, s.inSwap[page] else { return false }
            s.inSwap[page] = false
            s.statistics.swapped -= 1
            return true
        }
    }

    package func isSwapped(page: Int) -> Bool { state.withLock { page < pages && $0.inSwap[page] } }

    /// Returns and clears the swap-in latencies (µs) measured since the previous call.
    package func takeSwapInLatencies() -> [UInt32] { latencies.withLock { l in defer { l = [] }; return l } }

    private func serveFaults() {
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: Int(GuestMemory.pageSize), alignment: 4096)
        defer { buffer.deallocate() }
        let base = UInt64(UInt(bitPattern: memory.base))
        while running.load(ordering: .acquiring) {
            for fault in faults.waitForFaults(timeoutMilliseconds: 100) {
                guard fault.address >= base, fault.address < base + memory.size else { continue }
                let started = monotonicNanoseconds()
                let page = Int((fault.address - base) / GuestMemory.pageSize)
                do {
                    if try serve(page: page, buffer: buffer) {
                        let micros = (monotonicNanoseconds() - started) / 1000
                        latencies.withLock { if $0.count < 1_000_000 { $0.append(UInt32(min(micros, UInt64(UInt32.max)))) } }
                    }
                } catch {
                    // The toucher stays blocked; nothing better to do than report it.
                    fputs("hvhost: swap-in of page \(page) failed: \(error)\n", stderr)
                }
            }
        }
    }

    /// Fills punched page `page`: from the swap file when it is there (true), else with
    /// zeros. Serialized, so a fault and `swapIn` never fill one page twice; a page
    /// already filled only gets its waiters woken.
    private func serve(page: Int, buffer: UnsafeMutableRawPointer) throws(GuestMemoryError) -> Bool {
        serving.lock()
        defer { serving.unlock() }
        let address = UInt64(UInt(bitPattern: memory.base)) + UInt64(page) * GuestMemory.pageSize
        guard state.withLock({ $0.inSwap[page] }) else {
            state.withLock { $0.statistics.zeroFilled += 1 }
            try faults.zero(address)
            return false
        }
        let n = pread(file, buffer, Int(GuestMemory.pageSize), off_t(UInt64(page) * GuestMemory.pageSize))
        guard n == Int(GuestMemory.pageSize) else {
            throw .system(call: "pread(\(path))", errno: n < 0 ? errno : EIO)
        }
        // Counted before the copy wakes the toucher, so that what it sees next is current.
        state.withLock { $0.inSwap[page] = false; $0.statistics.swapped -= 1; $0.statistics.swappedIn += 1 }
        do {
            try faults.copy(to: address, from: buffer)
        } catch {
            state.withLock { $0.inSwap[page] = true; $0.statistics.swapped += 1; $0.statistics.swappedIn -= 1 }
            throw error
        }
        punchFile(page: page)
        return true
    }

    /// Frees the swap file's blocks for `page` (FALLOC_FL_PUNCH_HOLE | KEEP_SIZE).
    private func punchFile(page: Int) {
        _ = hostFallocate(file, 0x02 | 0x01, off_t(UInt64(page) * GuestMemory.pageSize), off_t(GuestMemory.pageSize))
    }
}

private func monotonicNanoseconds() -> UInt64 {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return UInt64(t.tv_sec) * 1_000_000_000 + UInt64(t.tv_nsec)
}

/// glibc declares fallocate only under _GNU_SOURCE (see hostMemfdCreate).
@_silgen_name("fallocate")
private func hostFallocate(_ fd: Int32, _ mode: Int32, _ offset: off_t, _ length: off_t) -> Int32
