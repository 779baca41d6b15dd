import Foundation
import Glibc
import XCTest
@testable import HVHostIO

/// SIGKILL in the middle of writes to a sparse image and to an append-mode redo log
/// over it: after every kill, qemu-img check and our check accept both files, and every
/// write the child saw complete (reported over a pipe) is on disk.
///
/// The child is this test binary re-run on `testChildWriter` with the image in its
/// environment; it writes chunks of 1…40 4-KiB slots in a shuffled order (each slot
/// once per run, so an unacknowledged write never overlaps an acknowledged one) and
/// reports each chunk's index on fd 3 once `write` returned.
final class StorageKillConsistencyTests: XCTestCase {
    typealias T = StorageImageTools
    static let sectors: UInt64 = 32768   // 16 MiB: 256 grains
    static let slotSectors: UInt64 = 8

    /// The run's chunks in write order: (first sector, sectors).
    static func plan(seed: UInt64) -> [(sector: UInt64, sectors: UInt64)] {
        var rng = SplitMix(seed)
        var chunks: [(UInt64, UInt64)] = []
        var slot: UInt64 = 0
        let slots = sectors / slotSectors
        while slot < slots {
            let n = min(1 + rng.next() % 40, slots - slot)
            chunks.append((slot * slotSectors, n * slotSectors))
            slot += n
        }
        for i in stride(from: chunks.count - 1, to: 0, by: -1) {
            chunks.swapAt(i, Int(rng.next() % UInt64(i + 1)))
        }
        return chunks
    }

    struct SplitMix {
        var state: UInt64
        init(_ seed: UInt64) { state = seed }
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    /// The child: writes the plan until killed. Skipped unless started by the test below.
    func testChildWriter() throws {
        let env = ProcessInfo.processInfo.environment
        guard let base = env["HV_KILL_CHILD_IMAGE"], let mode = env["HV_KILL_CHILD_MODE"].flatMap(DiskMode.init(rawValue:)),
              let seed = env["HV_KILL_CHILD_SEED"].flatMap({ UInt64($0) }) else {
            throw XCTSkip("the child of testSIGKILLLeavesImagesConsistent; runs only when it starts it")
        }
        let disk = try AttachedDisk(path: base, mode: mode, owner: "kill-test child")
        for (index, chunk) in Self.plan(seed: seed).enumerated() {
            try T.write(disk, sector: chunk.sector, T.pattern(seed &+ UInt64(index), count: Int(chunk.sectors) * 512))
            var ack = UInt32(index)
            guard Glibc.write(3, &ack, 4) == 4 else { return }
            if index % 16 == 15 { try disk.flush() }
        }
        try disk.flush()
        pause()   // wait to be killed
    }

    func testSIGKILLLeavesImagesConsistent() throws {
        _ = try T.requireQEMUImg()
        let slow = ProcessInfo.processInfo.environment["HV_SLOW_TESTS"] == "1"
        let kills = slow ? 200 : 20
        let dir = try T.scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let base = dir + "/disk.vmdk"
        try DiskImage.create(path: base, format: .sparse, sectors: Self.sectors)
        var rng = SplitMix(UInt64(UInt32(truncatingIfNeeded: time(nil))))
        var acknowledgedTotal = 0
        for run in 0..<kills {
            // First half on the base itself, second half on an append-mode redo log over it.
            let mode: DiskMode = run < kills / 2 ? .persistent : .append
            let seed = rng.next() >> 1
            let acks = try runChild(base: base, mode: mode, seed: seed, killAfter: Int(1 + rng.next() % 150),
                                    extraMicroseconds: UInt32(rng.next() % 3000))
            acknowledgedTotal += acks.count
            let files = mode == .append ? [base + ".REDO", base] : [base]
            for file in files {
                let check = try T.qemuImg(["check", file])
                XCTAssertEqual(check.status, 0, "run \(run) (\(mode)): qemu-img check \(file): \(check.output)")
                XCTAssertEqual(DiskImageCheck.problems(path: file), [], "run \(run)")
            }
            let disk = try DiskImage.open(path: files[0], writable: false, owner: "verifier")
            let plan = Self.plan(seed: seed)
            for index in acks {
                let chunk = plan[Int(index)]
                let onDisk = try T.read(disk, sector: chunk.sector, sectors: Int(chunk.sectors))
                XCTAssertTrue(onDisk == T.pattern(seed &+ UInt64(index), count: onDisk.count),
                              "run \(run) (\(mode)): acknowledged chunk \(index) (sectors \(chunk.sector)+\(chunk.sectors)) is not on disk")
            }
            disk.close()
        }
        XCTAssertGreaterThan(acknowledgedTotal, kills, "the children acknowledged writes before being killed")
    }

    /// Starts the child, kills it with SIGKILL after `killAfter` acknowledgements (plus a
    /// few microseconds), and returns every chunk index it acknowledged.
    private func runChild(base: String, mode: DiskMode, seed: UInt64, killAfter: Int,
                          extraMicroseconds: UInt32) throws -> [UInt32] {
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&fds), 0)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, fds[1], 3)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        let executable = ProcessInfo.processInfo.arguments[0]
        let args = [executable, "HVHostIOTests.StorageKillConsistencyTests/testChildWriter"]
        var env = ProcessInfo.processInfo.environment
        env["HV_KILL_CHILD_IMAGE"] = base
        env["HV_KILL_CHILD_MODE"] = mode.rawValue
        env["HV_KILL_CHILD_SEED"] = String(seed)
        let argv = args.map { strdup($0) } + [nil]
        let envp = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, executable, &actions, nil, argv, envp)
        close(fds[1])
        defer { close(fds[0]) }
        XCTAssertEqual(rc, 0, "cannot start the child \(executable)")
        guard rc == 0 else { return [] }

        var acks: [UInt32] = []
        var pending: [UInt8] = []
        func take(_ n: Int, buffer: [UInt8]) {
            pending += buffer[0..<n]
            while pending.count >= 4 {
                acks.append(UInt32(pending[0]) | UInt32(pending[1]) << 8 | UInt32(pending[2]) << 16 | UInt32(pending[3]) << 24)
                pending.removeFirst(4)
            }
        }
        var buffer = [UInt8](repeating: 0, count: 4096)
        while acks.count < killAfter {
            let n = read(fds[0], &buffer, 4096)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }   // the child ended on its own (it should not)
            take(n, buffer: buffer)
        }
        usleep(extraMicroseconds)
        kill(pid, SIGKILL)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        // Acknowledgements still in the pipe were sent before the kill: they count.
        while true {
            let n = read(fds[0], &buffer, 4096)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            take(n, buffer: buffer)
        }
        XCTAssertTrue(status & 0x7F == SIGKILL, "the child died of signal \(status & 0x7F), status \(status >> 8), not SIGKILL")
        return acks
    }
}
