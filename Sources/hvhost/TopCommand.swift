import ArgumentParser
import Glibc
import HVKernel
import HVSched

/// `hvhost top --socket PATH [--interval S] [--count N]`: esxtop-like CPU statistics of a
/// running host, per VM, every interval: %USED (vCPU thread CPU time / wall time),
/// %RUN (wall time holding a pCPU slot), %RDY (runnable but waiting for a slot), %ENT
/// (entitlement from shares, min and max among the active vCPUs of its pool), SHARES,
/// MIN, MAX. `--mem` shows the memory view instead (esxtop's `m` screen: MEMSZ, GRANT,
/// SHRD, ZERO, COPIED, MCTLSZ, SWCUR, TARGET, ACTV%, in MiB per VM).
struct TopCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "top",
        abstract: "Show per-VM CPU scheduling statistics of a running `hvhost run --console PATH`, like esxtop.")

    @Option(name: .customLong("socket"), help: "The socket given to `hvhost run --console`.")
    var socket: String

    @Option(name: .customLong("interval"), help: "Seconds between screens.")
    var interval: Double = 1

    @Option(name: .customLong("count"), help: "Screens to print, then exit (default: until interrupted).")
    var count: Int?

    @Flag(name: .customLong("mem"), help: "Show memory per VM (the console's `mem`) instead of CPU.")
    var memory = false

    func validate() throws {
        guard interval >= 0.05 else { throw ValidationError("--interval must be at least 0.05 s") }
        if let count, count < 1 { throw ValidationError("--count must be at least 1") }
    }

    func run() throws {
        if memory {
            for number in 1... {
                if let count, number > count { break }
                if number > 1 { usleep(UInt32(min(interval, 3600) * 1_000_000)) }
                print("hvhost top #\(number): memory\n" + (try request("mem")))
                fflush(stdout)
            }
            return
        }
        var previous = try fetch()
        var printed = 0
        while count.map({ printed < $0 }) ?? true {
            usleep(UInt32(min(interval, 3600) * 1_000_000))
            let current = try fetch()
            print(TopCommand.screen(previous: previous, current: current, number: printed + 1))
            fflush(stdout)
            previous = current
            printed += 1
        }
    }

    private func fetch() throws -> [VCPUStats.RawRow] {
        VCPUStats.parseRaw(try request("sched stats raw"))
    }

    private func request(_ command: String) throws -> String {
        let reply = try ServiceConsole.request(command, at: socket)
        if reply.hasPrefix("error:") {
            throw ServiceConsole.CommandError(reply.trimmingCharacters(in: "\n"))
        }
        return reply
    }

    /// One screen: the VMs of `current`, with rates over the interval since `previous`
    /// (vCPUs that joined in between show "-").
    static func screen(previous: [VCPUStats.RawRow], current: [VCPUStats.RawRow], number: Int) -> String {
        let before = Dictionary(previous.map { ($0.vcpu, $0) }, uniquingKeysWith: { a, _ in a })
        let lines = VCPUStats.merge(current.map { row in
            var used: Double?, run: Double?, ready: Double?
            if let old = before[row.vcpu], let t1 = row.number("time"), let t0 = old.number("time"), t1 > t0 {
                func rate(_ key: String) -> Double? {
                    guard let v1 = row.number(key), let v0 = old.number(key) else { return nil }
                    return max(0, v1 - v0) / (t1 - t0) * 100
                }
                used = rate("cpu")
                run = rate("run")
                ready = rate("ready")
            }
            return VCPUStats.VMLine(
                pool: row.fields["pool"] ?? "?", vm: row.fields["vm"] ?? "?", vcpus: 1,
                usedPercent: used, runPercent: run, readyPercent: ready,
                entitlementPercent: row.number("ent") ?? 0, shares: UInt32(row.number("shares") ?? 0),
                minPercent: UInt32(row.number("min") ?? 0), maxPercent: UInt32(row.number("max") ?? 100),
                state: row.fields["state"] ?? "?",
                wakeP50: row.number("wake50").map { UInt64($0) }, wakeP99: row.number("wake99").map { UInt64($0) })
        })
        let total = lines.compactMap(\.usedPercent).reduce(0, +)
        let header = "hvhost top #\(number): \(lines.count) VM(s), \(current.count) vCPU(s), total %USED \((total * 10).rounded() / 10)"
        return header + "\n" + VCPUStats.table(lines) + "\n"
    }
}

private extension String {
    func trimmingCharacters(in set: Character) -> String {
        var s = Substring(self)
        while s.last == set { s.removeLast() }
        return String(s)
    }
}
