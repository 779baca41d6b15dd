import Foundation
import XCTest

/// Runs a VM that boots firmware and follows its progress through named phases, each
/// marked by a line in a log file (the firmware's 0x402 debug log or the serial port).
/// A phase that does not arrive in time fails the run with a message naming it; the
/// CPU time hvhost used up to each phase is the test's budget measure (wall time on
/// this shared, loaded machine says little).
struct FirmwarePhases {
    struct Phase {
        var name: String
        /// A substring of the log that ends the phase.
        var marker: String
    }

    struct Reached {
        var phase: String
        var wallSeconds: Double
        var cpuSeconds: Double
    }

    struct Outcome {
        var reached: [Reached]
        /// The first phase that did not arrive, with what was seen; nil when all did.
        var stalled: String?
        var status: Int32
        var stderr: String
        var log: String

        /// CPU seconds at the end of `phase`.
        func cpu(_ phase: String) -> Double? { reached.first { $0.phase == phase }?.cpuSeconds }
    }

    var phases: [Phase]
    /// Wall-clock limit for the whole run (generous: the machine is shared).
    var wallLimit: TimeInterval = 120
    /// After the last phase the guest stops the VM itself (debug exit), in a phase of
    /// this name; nil: the run is ended with SIGTERM.
    var exitPhase: String?

    /// Starts `executable args`, waits for every phase's marker in the file at `log`,
    /// then ends the process with SIGTERM unless it exits by itself first.
    func run(_ executable: String, _ args: [String], log: String) -> Outcome {
        try? FileManager.default.removeItem(atPath: log)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = args
        let err = Pipe()
        p.standardOutput = FileHandle.nullDevice
        p.standardError = err
        p.standardInput = FileHandle.nullDevice
        var errData = Data()
        let done = DispatchSemaphore(value: 0)
        DispatchQueue.global().async { errData = err.fileHandleForReading.readDataToEndOfFile(); done.signal() }
        let start = Date()
        do { try p.run() } catch {
            return Outcome(reached: [], stalled: "start: \(error)", status: -1, stderr: "", log: "")
        }
        var reached: [Reached] = []
        var stalled: String?
        var text = ""
        var next = 0
        while next < phases.count {
            text = (try? String(contentsOfFile: log, encoding: .isoLatin1)) ?? ""
            while next < phases.count, text.contains(phases[next].marker) {
                reached.append(Reached(phase: phases[next].name, wallSeconds: Date().timeIntervalSince(start),
                                       cpuSeconds: Self.cpuSeconds(of: p.processIdentifier)))
                next += 1
            }
            if next == phases.count { break }
            if !p.isRunning {
                text = (try? String(contentsOfFile: log, encoding: .isoLatin1)) ?? ""
                if text.contains(phases[next].marker) { continue }
                stalled = "phase '\(phases[next].name)' never ended: the process exited (status \(p.terminationStatus)) before \"\(phases[next].marker)\""
                break
            }
            if Date().timeIntervalSince(start) > wallLimit {
                stalled = "phase '\(phases[next].name)' stalled: no \"\(phases[next].marker)\" within \(Int(wallLimit)) s"
                break
            }
            usleep(20_000)
        }
        if stalled == nil, let exitPhase {
            // The last sample before the process is gone (its /proc entry goes with it).
            var cpu = reached.last?.cpuSeconds ?? 0
            while p.isRunning && Date().timeIntervalSince(start) <= wallLimit {
                cpu = max(cpu, Self.cpuSeconds(of: p.processIdentifier))
                usleep(10_000)
            }
            if p.isRunning {
                stalled = "phase '\(exitPhase)' stalled: the VM did not stop by itself within \(Int(wallLimit)) s"
            } else {
                reached.append(Reached(phase: exitPhase, wallSeconds: Date().timeIntervalSince(start),
                                       cpuSeconds: cpu))
            }
        }
        if p.isRunning { kill(p.processIdentifier, SIGTERM) }
        let killAt = Date().addingTimeInterval(20)
        while p.isRunning && Date() < killAt { usleep(10_000) }
        if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
        done.wait()
        text = (try? String(contentsOfFile: log, encoding: .isoLatin1)) ?? text
        return Outcome(reached: reached, stalled: stalled, status: p.terminationStatus,
                       stderr: String(decoding: errData, as: UTF8.self), log: text)
    }

    /// utime + stime of every thread of `pid` so far (clock ticks of 1/100 s).
    static func cpuSeconds(of pid: Int32) -> Double {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return 0 }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // Fields after the command: state is index 0, utime 11, stime 12.
        guard fields.count > 12, let u = Double(fields[11]), let s = Double(fields[12]) else { return 0 }
        return (u + s) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}
