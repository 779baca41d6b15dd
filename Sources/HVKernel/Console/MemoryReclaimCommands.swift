import HVMemory

/// `mem balloon VM SIZE`, `mem swapout|swapin VM SIZE`, `mem swapins VM` and `mem reclaim`:
/// a balloon floor and host swap by hand, swap-in latencies, and what they hold per VM
/// (sizes like `32m`, `4096k`, bytes). Part of the console's `mem` (MemoryConsole).
extension ServiceConsole {
    static let memoryReclaimUsage = "mem balloon <vm> <size> | mem swapout <vm> <size> | mem swapin <vm> <size> | mem swapins <vm> | mem reclaim"

    /// The reply to `mem <args>` when args[0] is one of the subcommands above, else nil.
    static func memoryReclaimCommand(_ args: [String], host: VMHost, balloon: BalloonReclaimer) throws -> String? {
        switch args.first {
        case "balloon":
            guard args.count == 3 else { throw CommandError("usage: mem balloon <vm> <size>") }
            let vm = try Self.runningVM(host, args[1])
            let bytes = try Self.size(args[2])
            guard bytes <= vm.configuration.memoryBytes else {
                throw CommandError("\(args[2]): more than \(args[1])'s memsize (\(vm.configuration.memoryMiB) MiB)")
            }
            balloon.setFloor(vm: vm, pages: Int(bytes / GuestMemory.pageSize))
            return "\(vm.name): balloon target \(bytes / GuestMemory.pageSize) pages (\(bytes >> 20) MiB)"
        case "swapout":
            guard args.count == 3 else { throw CommandError("usage: mem swapout <vm> <size>") }
            let vm = try Self.runningVM(host, args[1])
            let pages = try vm.swapOut(bytes: try Self.size(args[2]))
            return "\(vm.name): swapped out \(pages) pages"
        case "swapin":
            guard args.count == 3 else { throw CommandError("usage: mem swapin <vm> <size>") }
            let vm = try Self.runningVM(host, args[1])
            let pages = try vm.swapIn(bytes: try Self.size(args[2]))
            return "\(vm.name): swapped in \(pages) pages"
        case "swapins":
            // Latencies of the swap-ins since the previous `mem swapins` (for bench/).
            guard args.count == 2 else { throw CommandError("usage: mem swapins <vm>") }
            let vm = try Self.runningVM(host, args[1])
            let l = vm.takeSwapInLatencies().sorted()
            guard !l.isEmpty else { return "\(vm.name): 0 swap-ins" }
            func pct(_ p: Int) -> UInt32 { l[min(l.count - 1, l.count * p / 100)] }
            return "\(vm.name): \(l.count) swap-ins, p50 \(pct(50)) us, p99 \(pct(99)) us, max \(l.last!) us"
        case "reclaim":
            var lines = ["VM\tRESIDENT_KB\tMCTLSZ\tMCTLTGT\tSWCUR\tSWOUT\tSWIN\tZEROFILL\tBALLOON"]
            for vm in host.vms where !vm.isStopping {
                let u = vm.memoryUse
                let driver = u.balloon.started ? "guest type \(u.balloon.guestType ?? 0)" : "no driver"
                lines.append("\(vm.name)\t\(u.residentBytes >> 10)\t\(u.balloon.size)\t\(u.balloon.target)\t\(u.swap.swapped)\t\(u.swap.swappedOut)\t\(u.swap.swappedIn)\t\(u.swap.zeroFilled)\t\(driver)")
            }
            return lines.joined(separator: "\n")
        default:
            return nil
        }
    }

    private static func runningVM(_ host: VMHost, _ name: String) throws -> VirtualMachine {
        guard let vm = host.vm(named: name), !vm.isStopping else { throw CommandError("no running VM named '\(name)'") }
        return vm
    }

    /// Bytes from `N` (bytes), `Nk`, `Nm` or `Ng`, a whole number of pages.
    static func size(_ text: String) throws -> UInt64 {
        let lower = text.lowercased()
        let units: [Character: UInt64] = ["k": 1 << 10, "m": 1 << 20, "g": 1 << 30]
        let unit = lower.last.flatMap { units[$0] } ?? 1
        let digits = unit == 1 ? lower : String(lower.dropLast())
        guard let n = UInt64(digits), n.multipliedReportingOverflow(by: unit).overflow == false,
              (n * unit) % GuestMemory.pageSize == 0 else {
            throw CommandError("'\(text)': expected a size in bytes, k, m or g, a multiple of 4 KiB")
        }
        return n * unit
    }
}
