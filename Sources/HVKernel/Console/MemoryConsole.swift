import HVMemory
import HVSupport

/// Console commands for the memory scheduler: `mem` (all VMs, esxtop's memory view, also
/// `hvhost top --mem`), `mem <vm>`, `mem set <vm> [shares=…] [min=MiB] [max=MiB]`,
/// `mem raw`, and the balloon and swap commands of MemoryReclaimCommands.
extension ServiceConsole {
    package func registerMemCommands(_ memory: MemoryScheduler, host: VMHost, balloon: BalloonReclaimer) {
        let usage = "mem | mem <vm> | mem raw | mem set <vm> [shares=low|normal|high|N] [min=MiB] [max=MiB] | " + Self.memoryReclaimUsage
        register("mem", summary: usage) { args in
            if let reply = try Self.memoryReclaimCommand(args, host: host, balloon: balloon) { return reply }
            switch args.first {
            case nil:
                return MemoryConsoleText.table(memory.rows(), budgetMiB: Int(memory.budgetBytes >> 20), sharing: memory.sharing?.statistics,
                                               scannerCPUNanoseconds: memory.scannerCPUNanoseconds)
            case "raw":
                return MemoryConsoleText.raw(memory.rows(), sharing: memory.sharing?.statistics,
                                             scannerCPUNanoseconds: memory.scannerCPUNanoseconds)
            case "set":
                guard args.count >= 3 else { throw CommandError("usage: mem set <vm> [shares=low|normal|high|N] [min=MiB] [max=MiB]") }
                var shares: ShareAllocation?
                var minMiB: Int?, maxMiB: Int?
                for word in args.dropFirst(2) {
                    let kv = word.split(separator: "=", maxSplits: 1).map(String.init)
                    guard kv.count == 2 else { throw CommandError("'\(word)': expected key=value (shares=, min=, max=)") }
                    switch kv[0].lowercased() {
                    case "shares":
                        switch kv[1].lowercased() {
                        case "low": shares = .low
                        case "normal": shares = .normal
                        case "high": shares = .high
                        default:
                            guard let n = UInt32(kv[1]), n > 0 else { throw CommandError("shares=\(kv[1]): expected low, normal, high or a positive number") }
                            shares = .custom(n)
                        }
                    case "min":
                        guard let n = Int(kv[1]) else { throw CommandError("min=\(kv[1]): expected MiB") }
                        minMiB = n
                    case "max":
                        guard let n = Int(kv[1]) else { throw CommandError("max=\(kv[1]): expected MiB") }
                        maxMiB = n
                    default:
                        throw CommandError("'\(kv[0])': expected shares=, min= or max=")
                    }
                }
                do {
                    let p = try memory.setParameters(vm: args[1], shares: shares, minMiB: minMiB, maxMiB: maxMiB)
                    return "\(args[1]): sched.mem.shares = \(p.shares), sched.mem.min = \(p.minMiB) MiB, sched.mem.max = \(p.maxMiB) MiB"
                } catch let e as VMError {
                    throw CommandError(e.description)
                }
            case let name?:
                guard let row = memory.rows().first(where: { $0.name == name }) else { throw CommandError("no running VM named '\(name)'") }
                return MemoryConsoleText.table([row], budgetMiB: Int(memory.budgetBytes >> 20), sharing: nil, scannerCPUNanoseconds: 0)
            }
        }
    }
}

/// Text for `mem`: one line per VM, MiB, like esxtop's memory screen.
package enum MemoryConsoleText {
    static func mb(_ pages: Int) -> String { MemoryScheduler.fixed(Double(pages) / 256, 1) }

    static func table(_ rows: [MemoryScheduler.Row], budgetMiB: Int, sharing: PageSharing.Totals?,
                      scannerCPUNanoseconds: UInt64) -> String {
        var lines = ["budget \(budgetMiB) MiB" + (sharing.map {
                         ", page sharing: \($0.framesInUse) frames, \($0.merged) merged, \($0.undone) undone, \($0.unsharedByWrites) broken by writes, scanner CPU \(scannerCPUNanoseconds / 1_000_000) ms"
                     } ?? ""),
                     "VM\tMEMSZ\tGRANT\tSHRD\tZERO\tCOPIED\tMCTLSZ\tSWCUR\tTARGET\tACTV%\tSHARES\tMIN\tMAX\tOVHD"]
        for r in rows {
            lines.append("\(r.name)\t\(mb(r.memsz))\t\(mb(r.granted))\t\(mb(r.shared))\t\(mb(r.zero))\t\(mb(r.copied))\t\(mb(r.ballooned))\t\(mb(r.swapped))\t\(mb(r.target))\t\(MemoryScheduler.fixed(r.activePercent, 0))\t\(r.shares)\t\(mb(r.minPages))\t\(mb(r.maxPages))\t\(mb(r.overheadPages))")
        }
        return lines.joined(separator: "\n")
    }

    /// key=value pages per VM, one line each; then the page-sharing totals (when on).
    static func raw(_ rows: [MemoryScheduler.Row], sharing: PageSharing.Totals?, scannerCPUNanoseconds: UInt64) -> String {
        let totals = sharing.map {
            ["sharing scanned=\($0.scanned) merged=\($0.merged) undone=\($0.undone) cow=\($0.unsharedByWrites) frames=\($0.framesInUse) cpu_ns=\(scannerCPUNanoseconds)"]
        } ?? []
        return (rows.map { "vm=\($0.name) memsz=\($0.memsz) grant=\($0.granted) shrd=\($0.shared) zero=\($0.zero) copied=\($0.copied) mctlsz=\($0.ballooned) swcur=\($0.swapped) target=\($0.target)" } + totals)
            .joined(separator: "\n")
    }
}
